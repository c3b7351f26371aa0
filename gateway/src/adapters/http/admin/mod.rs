//! The admin web UI's handlers, mounted under `/admin`. They check the admin session (its own
//! cookie, path `/admin`), the CSRF token of every change and the role, call the domain, and
//! fill the typed views of the `relais-admin-ui` crate. The rules of the admin login are in
//! `domain::admin`.
// Helpers return `Err(response)` for the handler to send as is (login page, 403): one
// response per request, so its size does not matter.
#![allow(clippy::result_large_err)]
mod audit;
mod clients;
mod dashboard;
mod login;
mod mappings;
mod people;
mod settings;

use super::AppState;
use super::errors;
use super::extract;
use super::i18n::Lang;
use super::pages::html;
use crate::domain::DomainError;
use crate::domain::admin::{AdminAccess, AdminRoleStore, AdminSession, AdminSessionPolicy, DirectoryAdminRoles};
use crate::domain::audit_chain::ChainedRecord;
use crate::domain::management::ManagementError;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use relais_admin_ui::views::{AuditRow, Chrome, MessageView};
use std::collections::HashMap;
use std::sync::Arc;

/// Serves the admin UI's static files (also under `/account/static`).
pub(in crate::adapters::http) async fn static_asset(path: web::Path<String>) -> HttpResponse {
    asset(path).await
}

/// The admin session cookie (path `/admin`): never sent to the OpenID endpoints.
pub const ADMIN_COOKIE: &str = "relais_admin";
/// Binds a pending admin login (password checked, key not yet) to the browser.
pub const ADMIN_LOGIN_COOKIE: &str = "relais_admin_login";
/// Largest admin form (a mapping file fits).
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

/// What the admin handlers need besides `AppState`.
pub struct AdminState {
    pub roles: Arc<dyn AdminRoleStore>,
    pub policy: AdminSessionPolicy,
    /// Directory roles that grant an admin UI role (config `[admin]`).
    pub directory_roles: DirectoryAdminRoles,
    /// The effective configuration as shown on the settings page (secrets print as `***`).
    pub settings_text: String,
    pub secure_cookies: bool,
    /// `[fido2] enrolment_code_ttl_secs`.
    pub enrolment_code_ttl_secs: i64,
    /// The FIDO MDS3 blob in use (the dashboard shows its number and freshness).
    pub mds_blob: Option<crate::adapters::webauthn::MdsBlobInUse>,
}

impl AdminState {
    pub fn access<'a>(&'a self, state: &'a AppState) -> AdminAccess<'a> {
        AdminAccess {
            provider: &state.provider,
            roles: self.roles.as_ref(),
            policy: self.policy,
            directory_roles: &self.directory_roles,
        }
    }

    fn cookie(&self, name: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/admin")
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Strict)
            .max_age(CookieDuration::seconds(max_age_secs))
            .finish()
    }

    fn removal(&self, name: &'static str) -> Cookie<'static> {
        let mut c = self.cookie(name, String::new(), 0);
        c.make_removal();
        c
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(dashboard::page))
        .route("/", web::get().to(dashboard::page))
        .route("/static/{name}", web::get().to(asset))
        .route("/login", web::get().to(login::page))
        .route("/login", web::post().to(login::submit))
        .route("/login/key", web::get().to(login::key_page))
        .route("/login/key/options", web::post().to(login::key_options))
        .route("/login/key/finish", web::post().to(login::key_finish))
        .route("/logout", web::post().to(login::logout))
        .route("/people", web::get().to(people::search))
        .route("/people/results", web::get().to(people::results))
        .route("/people/{username}", web::get().to(people::person))
        .route("/people/{username}/link", web::post().to(people::link))
        .route("/people/{username}/unlink", web::post().to(people::unlink))
        .route("/people/{username}/disabled", web::post().to(people::set_disabled))
        .route("/people/{username}/enrolment-code", web::post().to(people::enrolment_code))
        .route("/people/{username}/keys/{key}/revoke", web::post().to(people::revoke_key))
        .route("/people/{username}/sessions/revoke", web::post().to(people::revoke_session))
        .route(
            "/people/{username}/sessions/revoke-all",
            web::post().to(people::revoke_all_sessions),
        )
        .route("/mappings/import", web::get().to(mappings::page))
        .route("/mappings/import", web::post().to(mappings::import))
        .route("/mappings/review/{id}", web::post().to(mappings::decide))
        .route("/clients", web::get().to(clients::page))
        .route("/clients", web::post().to(clients::register))
        .route("/clients/{id}/rotate", web::post().to(clients::rotate))
        .route("/audit", web::get().to(audit::page))
        .route("/audit/export", web::get().to(audit::export))
        .route("/audit/verify", web::post().to(audit::verify))
        .route("/settings", web::get().to(settings::page));
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    match relais_admin_ui::asset(&path) {
        Some((ct, bytes)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, ct))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(bytes),
        None => HttpResponse::NotFound().finish(),
    }
}

/// French unless `?lang=en` or the browser prefers English.
pub(in crate::adapters::http) fn lang(req: &HttpRequest) -> Lang {
    let q = url::form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == "lang");
    Lang::pick(q.as_ref().map(|(_, v)| v.as_ref()), req)
}

/// A logged-in admin and the request's language.
pub(super) struct Admin {
    pub session: AdminSession,
    pub lang: Lang,
}

impl Admin {
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        let t = relais_admin_ui::texts::texts(self.lang.code());
        Chrome {
            lang: self.lang.code(),
            t,
            csrf: self.session.csrf.clone(),
            admin_name: self.session.display_name.clone(),
            role: if self.session.may_change() { t.role_admin } else { t.role_auditor },
            may_change: self.session.may_change(),
            nav,
        }
    }
    pub fn actor(&self) -> String {
        self.session.actor()
    }
}

/// The admin behind the request's cookie; otherwise the response to send (the login page).
pub(super) async fn admin(req: &HttpRequest, state: &AppState, admin: &AdminState) -> Result<Admin, HttpResponse> {
    let lang = lang(req);
    let Some(secret) = extract::cookie(req, ADMIN_COOKIE) else {
        return Err(to_login(req));
    };
    match admin.access(state).session(&secret).await {
        Ok(Some(session)) => Ok(Admin { session, lang }),
        Ok(None) => Err(to_login(req)),
        Err(e) => Err(errors::domain_page(e, lang)),
    }
}

fn to_login(req: &HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::GET && req.headers().get("hx-request").is_none() {
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/admin/login"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()
    } else {
        // htmx or a form post without a session: no redirect into a fragment.
        HttpResponse::Unauthorized()
            .insert_header(("HX-Redirect", "/admin/login"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()
    }
}

/// An admin allowed to change things: the CSRF token (form field `csrf` or header
/// `X-CSRF-Token`) matches the session and the role is `admin`. Refusals are audited.
/// The posted form and the admin allowed to make the change `action` (`changer`): what every
/// change handler starts with.
pub(super) async fn posted_change(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    admin_state: &AdminState,
    action: &str,
) -> Result<(Form, Admin), HttpResponse> {
    let f = form(req, payload).await?;
    let a = changer(req, state, admin_state, &f, action).await?;
    Ok((f, a))
}

pub(super) async fn changer(
    req: &HttpRequest,
    state: &AppState,
    admin_state: &AdminState,
    form: &Form,
    action: &str,
) -> Result<Admin, HttpResponse> {
    let a = reader_posting(req, state, admin_state, form, action).await?;
    if !a.session.may_change() {
        admin_state
            .access(state)
            .refused(&extract::context(req), &a.actor(), action, "read_only_role")
            .await;
        return Err(forbidden(a.lang, "read-only role: changes are refused"));
    }
    Ok(a)
}

/// Any admin (auditors included) posting a form that changes nothing (audit verification):
/// the CSRF token is still required.
pub(super) async fn reader_posting(
    req: &HttpRequest,
    state: &AppState,
    admin_state: &AdminState,
    form: &Form,
    action: &str,
) -> Result<Admin, HttpResponse> {
    let a = admin(req, state, admin_state).await?;
    let header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !a.session.csrf_ok(form.get("csrf").or(header)) {
        admin_state
            .access(state)
            .refused(&extract::context(req), &a.actor(), action, "csrf")
            .await;
        return Err(forbidden(a.lang, "the form is stale or forged (CSRF check failed)"));
    }
    Ok(a)
}

pub(in crate::adapters::http) fn forbidden(lang: Lang, message: &str) -> HttpResponse {
    let t = relais_admin_ui::texts::texts(lang.code());
    html(
        StatusCode::FORBIDDEN,
        &MessageView {
            lang: lang.code(),
            t,
            title: t.forbidden_title.into(),
            message: message.into(),
        },
    )
}

/// A management error: the admin's input is shown back (`Invalid`), the rest is an error page.
pub(super) fn management_error(e: ManagementError, lang: Lang) -> Result<String, HttpResponse> {
    match e {
        ManagementError::Invalid(m) => Ok(m),
        ManagementError::Domain(d) => Err(errors::domain_page(d, lang)),
    }
}

pub(super) fn domain_error(e: impl Into<DomainError>, lang: Lang) -> HttpResponse {
    errors::domain_page(e.into(), lang)
}

/// After a change, back to a page (POST-redirect-GET), with an optional notice in the query.
pub(in crate::adapters::http) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A url-encoded form, size-bounded. Repeated fields keep their first value.
pub(in crate::adapters::http) struct Form(HashMap<String, String>);

impl Form {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "on" | "1"))
    }
}

pub(in crate::adapters::http) async fn form(req: &HttpRequest, mut payload: web::Payload) -> Result<Form, HttpResponse> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(HttpResponse::UnsupportedMediaType().body("the body must be application/x-www-form-urlencoded"));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return Err(HttpResponse::BadRequest().body("the request body could not be read"));
        };
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(HttpResponse::PayloadTooLarge().body("the form is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(&body).into_owned() {
        map.entry(k).or_insert(v);
    }
    Ok(Form(map))
}

pub(in crate::adapters::http) fn query(req: &HttpRequest) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned() {
        map.entry(k).or_insert(v);
    }
    map
}

pub(super) fn audit_row(r: &ChainedRecord) -> AuditRow {
    AuditRow {
        seq: r.seq,
        at: r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        kind: r.event_type.clone(),
        outcome: r.outcome.clone(),
        account: r.account_id.clone().unwrap_or_default(),
        client: r.client_id.clone().unwrap_or_default(),
        ip: r.source_ip.clone().unwrap_or_default(),
        details: r.event.chars().take(400).collect(),
    }
}

pub(in crate::adapters::http) fn date(d: chrono::DateTime<chrono::Utc>) -> String {
    d.format("%Y-%m-%d %H:%M").to_string()
}

fn unix_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map(date).unwrap_or_else(|| "—".into())
}

/// A person's live sessions as table rows; `current` is the session of the browser asking.
pub(in crate::adapters::http) fn session_rows(
    sessions: &[crate::domain::oidc::SessionInfo],
    current: Option<&str>,
) -> Vec<relais_admin_ui::views::SessionRow> {
    sessions
        .iter()
        .map(|s| relais_admin_ui::views::SessionRow {
            id: s.id.clone(),
            short_id: s.id.chars().take(8).collect(),
            created: unix_date(s.created_at),
            last_auth: unix_date(s.auth_time),
            amr: s.amr.join(" "),
            acr: s.acr.clone(),
            clients: if s.clients.is_empty() { "—".into() } else { s.clients.join(", ") },
            ip: s.source_ip.clone().unwrap_or_else(|| "—".into()),
            expires: unix_date(s.expires_at),
            current: current == Some(s.id.as_str()),
        })
        .collect()
}
