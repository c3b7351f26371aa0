//! Adapters: the domain's ports implemented on real components.
pub mod audit;
pub mod audit_forward;
pub mod cards;
pub mod crl;
pub mod directory;
pub mod fido_mds;
pub mod http;
pub mod keys;
pub mod local_accounts;
pub mod psc_client;
pub mod sessions;
pub mod store;
pub mod tls_client;
pub mod webauthn;
