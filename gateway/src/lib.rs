//! Relais: the identity gateway a hospital runs to become an authorised identity provider
//! (FI habilité) of Pro Santé Connect.
//!
//! Layers, from the inside out (see docs/architecture.md):
//! - [`protocol`]: wire-level types of OAuth 2 / OpenID Connect, parsed into newtypes.
//! - [`domain`]: the rules (who may get which token, SSO decisions, PKCE, claims). No HTTP, no
//!   sockets, no clock: time and randomness come in as arguments or through narrow traits.
//! - [`adapters`]: SQL storage (sea-orm), session stores (memory, Redis), signing keys, HTTP.
//! - [`server`] and the `relais` binary wire them together.
pub mod adapters;
pub mod admin_bench;
pub mod audit_bench;
pub mod config;
pub mod domain;
pub mod memory;
pub mod protocol;
pub mod server;
pub mod telemetry;

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Must run before any TLS
/// config is built: with two providers compiled in, rustls panics otherwise.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
