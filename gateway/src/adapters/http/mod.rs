//! The HTTP layer (actix-web): the only code that knows HTTP. Handlers turn requests into the
//! domain's inputs and the domain's outcomes into responses; errors become HTTP in one place
//! (`errors`).
mod account;
pub mod admin;
mod card;
pub mod discovery;
mod errors;
mod extract;
mod health;
mod i18n;
mod login;
pub mod metrics;
mod oidc;
mod pages;
mod terms;
mod verify;
mod webauthn;

use crate::domain::oidc::Provider;
use crate::domain::ports::{SessionStore, Storage};
use actix_web::web;
use std::sync::Arc;
use std::time::Duration;

pub use card::CardHttp;
pub use extract::CookieSettings;
pub use health::Readiness;

/// Shared state of every handler.
pub struct AppState {
    pub provider: Arc<Provider>,
    pub cookies: CookieSettings,
    pub storage: Arc<dyn Storage>,
    pub sessions: Arc<dyn SessionStore>,
    /// Cut for the readiness probe's dependency checks.
    pub probe_timeout: Duration,
    /// Checked by `/readyz`: with directories configured, at least one must answer.
    pub directories: Vec<Arc<crate::adapters::directory::Directory>>,
    /// Largest accepted form body.
    pub max_body_bytes: usize,
    /// Relais as a PSC client, when configured (identity verification).
    pub psc_verifier: Option<Arc<crate::adapters::psc_client::PscVerifier>>,
    /// The discovery document, built once at start.
    pub discovery: serde_json::Value,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<crate::protocol::IpRange>,
    /// SIEM forwarders' health, shown by `/readyz` (never makes it fail: records wait in SQL).
    pub audit_forward: Arc<crate::adapters::audit_forward::ForwardStatus>,
    /// CPS/CPx card logins, when `[cards]` is configured.
    pub cards: Option<CardHttp>,
}

/// Mounts every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/openid-configuration", web::get().to(oidc::discovery))
        .route("/jwks", web::get().to(oidc::jwks))
        .route("/authorize", web::get().to(oidc::authorize_get))
        .route("/authorize", web::post().to(oidc::authorize_post))
        .route("/token", web::post().to(oidc::token))
        .route("/userinfo", web::get().to(oidc::userinfo_get))
        .route("/userinfo", web::post().to(oidc::userinfo_post))
        .route("/revoke", web::post().to(oidc::revoke))
        .route("/introspect", web::post().to(oidc::introspect))
        .route("/logout", web::get().to(oidc::logout_get))
        .route("/logout", web::post().to(oidc::logout_post))
        .route("/login", web::get().to(login::page))
        .route("/login", web::post().to(login::submit))
        .route("/login/webauthn", web::get().to(webauthn::page))
        .route("/login/webauthn/options", web::post().to(webauthn::options))
        .route("/login/webauthn/finish", web::post().to(webauthn::finish))
        .route("/static/webauthn.js", web::get().to(webauthn::script))
        .route("/static/webauthn-common.js", web::get().to(webauthn::common_script))
        .route("/login/card", web::get().to(card::present))
        .route("/login/card/start", web::get().to(card::start))
        .route("/login/card/complete", web::get().to(card::complete))
        .route("/terms", web::get().to(terms::page))
        .route("/terms", web::post().to(terms::submit))
        .route("/verify/psc", web::get().to(verify::start))
        .route("/verify/psc/callback", web::get().to(verify::callback))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/", web::get().to(pages::home))
        .route("/account", web::get().to(account::page))
        .route("/account/sessions/revoke", web::post().to(account::revoke_session))
        .route("/account/keys/options", web::post().to(account::add_key_options))
        .route("/account/keys/finish", web::post().to(account::add_key_finish))
        .route("/account/keys/{key}/remove", web::post().to(account::remove_key))
        .route("/account/static/{name}", web::get().to(admin::static_asset))
        .service(web::scope("/admin").configure(admin::routes))
        .default_service(web::to(pages::not_found));
}
