//! The admin web UI for the hospital's IT team: askama templates, one typed view per page
//! (`views`), their strings in French and English (`texts`) and the static assets, embedded
//! in the binary. The gateway's `adapters::http::admin` handlers fill the views and mount
//! everything under `/admin`; this crate knows nothing of the gateway.
pub mod texts;
pub mod views;

pub use askama::Template;

/// htmx, vendored as a file (no npm in the build): see static/htmx-LICENSE.
const HTMX: &[u8] = include_bytes!("../static/htmx-2.0.11.min.js");
const CSS: &[u8] = include_bytes!("../static/admin.css");
const LOGIN_JS: &[u8] = include_bytes!("../static/admin-login.js");
const ACCOUNT_KEYS_JS: &[u8] = include_bytes!("../static/account-keys.js");
/// The WebAuthn ceremonies shared by the admin login, /account and the gateway's key step.
pub const WEBAUTHN_COMMON_JS: &[u8] = include_bytes!("../static/webauthn-common.js");

/// A static asset by file name: (content type, bytes).
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    match name {
        "htmx.min.js" => Some(("text/javascript; charset=utf-8", HTMX)),
        "admin-login.js" => Some(("text/javascript; charset=utf-8", LOGIN_JS)),
        "account-keys.js" => Some(("text/javascript; charset=utf-8", ACCOUNT_KEYS_JS)),
        "webauthn-common.js" => Some(("text/javascript; charset=utf-8", WEBAUTHN_COMMON_JS)),
        "admin.css" => Some(("text/css; charset=utf-8", CSS)),
        _ => None,
    }
}
