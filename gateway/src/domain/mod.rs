//! The rules of Relais, free of HTTP, SQL and sockets. Everything with side effects is reached
//! through the narrow traits in [`ports`]; time and randomness are passed in.
pub mod account;
pub mod admin;
pub mod annuaire;
pub mod audit;
pub mod audit_chain;
pub mod audit_export_check;
pub mod audit_selection;
pub mod audit_verify;
pub mod card;
pub mod client;
pub mod crypto;
pub mod error;
pub mod fido2;
mod fido2_admin;
pub mod identity;
pub mod identity_import;
pub mod management;
pub mod oidc;
pub mod ports;
pub mod records;

pub use error::DomainError;
