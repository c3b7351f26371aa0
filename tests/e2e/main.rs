//! End-to-end tests: each boots the real Relais server in-process on port 0 with its own state
//! (a fresh SQLite file or PostgreSQL schema, its own Redis key prefix) and drives it over real
//! HTTP, as a browser (reqwest with cookies) and as a relying party (the `openidconnect` crate).
mod account;
mod admin;
mod admin_directory;
mod admin_sessions;
mod audit;
mod audit_forward;
mod browser;
mod cards;
mod faults;
mod fido2;
mod flows;
mod harness;
mod hostile;
mod identity;
mod keys;
mod ldap;
mod policy;
mod process;
mod psc;
mod psc_op;
mod replicas;
mod rp;
mod sessions;
mod slapd;
mod storage;
mod telemetry;
mod webdriver;
