//! Adapters: the domain's ports implemented on real components.
pub mod audit;
pub mod http;
pub mod keys;
pub mod local_accounts;
pub mod sessions;
pub mod store;
pub mod webauthn;
