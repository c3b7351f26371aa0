//! The security key step: the page, its script, and the two JSON endpoints of each WebAuthn
//! ceremony (options, finish). The ceremony rules are in `domain::oidc::second_factor`.
use super::AppState;
use super::errors;
use super::extract::{self, LOGIN_BINDING_COOKIE, SSO_COOKIE};
use super::i18n::Lang;
use super::pages::{KeyView, html};
use crate::domain::oidc::{KeyCeremony, KeyFinish, KeyStepError, LoginOutcome};
use crate::protocol::OAuthError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

const SCRIPT: &str = include_str!("../../../static/webauthn.js");

#[tracing::instrument(skip_all)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    match state
        .provider
        .second_factor_page(params.get("id").unwrap_or(""), binding.as_deref())
        .await
    {
        Ok(Ok(p)) => {
            let lang = Lang::pick(p.ui_locales.as_deref(), &req);
            let card_url = state.cards.as_ref().map(|c| c.url(&p.pending_id));
            let options = p.authentication_options.as_ref().map(|o| o.to_string());
            let view = KeyView {
                lang: lang.code(),
                t: lang.text(),
                client_name: &p.client_name,
                username: &p.username,
                pending_id: &p.pending_id,
                csrf: &p.csrf,
                has_keys: p.has_keys,
                options: options.as_deref(),
                card_url: card_url.as_deref(),
                card_label: super::card::texts(lang).button,
            };
            html(StatusCode::OK, &view)
        }
        Ok(Err(e)) => errors::page(&e, Lang::pick(None, &req)),
        Err(e) => errors::domain_page(e, Lang::pick(None, &req)),
    }
}

pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SCRIPT)
}

/// The ceremonies every WebAuthn page shares (kept with the admin UI's assets).
pub async fn common_script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(relais_admin_ui::WEBAUTHN_COMMON_JS)
}

/// A JSON body, size-bounded like forms.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
) -> Result<T, OAuthError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(OAuthError::invalid_request("the body must be application/json"));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| OAuthError::invalid_request("the request body could not be read"))?;
        if body.len() + chunk.len() > state.max_body_bytes {
            return Err(OAuthError::invalid_request("the request body is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| OAuthError::invalid_request("the request body is not the expected JSON"))
}

#[derive(Deserialize)]
struct OptionsRequest {
    login_id: String,
    csrf: String,
    /// `register` or `authenticate`.
    ceremony: String,
    enrolment_code: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn options(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let body: OptionsRequest = match json_body(&req, payload, &state).await {
        Ok(b) => b,
        Err(e) => return errors::oauth_json(&e, false),
    };
    let ceremony = match body.ceremony.as_str() {
        "register" => KeyCeremony::Register {
            enrolment_code: body.enrolment_code,
        },
        "authenticate" => KeyCeremony::Authenticate,
        _ => return errors::oauth_json(&OAuthError::invalid_request("unknown ceremony"), false),
    };
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    let ctx = extract::context(&req);
    match state
        .provider
        .key_options(&body.login_id, &body.csrf, binding.as_deref(), ceremony, &ctx)
        .await
    {
        Ok(Ok(o)) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(o),
        Ok(Err(e)) => refusal(e, &req),
        Err(e) => errors::domain_json(e),
    }
}

/// An error of the key step as JSON; a refusal the page explains comes in the page's language
/// (the script sends it as `Accept-Language`).
fn refusal(e: KeyStepError, req: &HttpRequest) -> HttpResponse {
    let mut oauth = e.oauth();
    if let KeyStepError::Refused(r) = e {
        oauth.description = Lang::pick(None, req).key_step_refusal(r).into_owned();
    }
    errors::oauth_json(&oauth, false)
}

#[derive(Deserialize)]
struct FinishRequest {
    login_id: String,
    csrf: String,
    credential: serde_json::Value,
    name: Option<String>,
    #[serde(default)]
    then_enrol: bool,
}

#[tracing::instrument(skip_all)]
pub async fn finish(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let body: FinishRequest = match json_body(&req, payload, &state).await {
        Ok(b) => b,
        Err(e) => return errors::oauth_json(&e, false),
    };
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    let previous = extract::cookie(&req, SSO_COOKIE);
    let ctx = extract::context(&req);
    let outcome = state
        .provider
        .key_finish(
            &body.login_id,
            &body.csrf,
            binding.as_deref(),
            &body.credential,
            body.name.as_deref(),
            body.then_enrol,
            previous.as_deref(),
            &ctx,
        )
        .await;
    let sso = |secret: String| state.cookies.make(SSO_COOKIE, secret, state.cookies.sso_max_age_secs);
    match outcome {
        Ok(Ok(KeyFinish::Registered)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"next": "authenticate"})),
        Ok(Ok(KeyFinish::MayEnrol)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"next": "register"})),
        Ok(Ok(KeyFinish::Login(LoginOutcome::Done {
            redirect, cookie_secret, ..
        })))
        | Ok(Ok(KeyFinish::Login(LoginOutcome::Refused { redirect, cookie_secret }))) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(sso(cookie_secret))
            .cookie(state.cookies.removal(LOGIN_BINDING_COOKIE))
            .json(json!({ "redirect": redirect })),
        Ok(Ok(KeyFinish::Login(LoginOutcome::Terms {
            pending_id,
            browser_binding,
            cookie_secret,
        }))) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(sso(cookie_secret))
            .cookie(state.cookies.make(
                LOGIN_BINDING_COOKIE,
                browser_binding,
                state.provider.settings.pending_login_ttl_secs,
            ))
            .json(json!({ "redirect": format!("/terms?id={pending_id}") })),
        Ok(Ok(KeyFinish::Login(LoginOutcome::NotEligible { cookie_secret }))) => {
            let lang = Lang::pick(None, &req);
            HttpResponse::Forbidden()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(sso(cookie_secret))
                .cookie(state.cookies.removal(LOGIN_BINDING_COOKIE))
                .json(json!({"error": "access_denied", "error_description": lang.text().not_eligible_body}))
        }
        Ok(Ok(KeyFinish::Login(other))) => {
            tracing::error!(outcome = ?other, "unexpected outcome after a security key");
            errors::oauth_json(&OAuthError::server_error("internal error"), false)
        }
        Ok(Err(e)) => refusal(e, &req),
        Err(e) => errors::domain_json(e),
    }
}

/// Where the browser goes for the key step.
pub fn location(pending_id: &str) -> String {
    format!("/login/webauthn?id={pending_id}")
}
