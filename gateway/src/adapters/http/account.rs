//! Staff self-service at `/account`: opened by the SSO session cookie (never the admin
//! cookie), French by default. Forms carry a CSRF token bound to the cookie. The rules are in
//! `domain::oidc::self_service` and `domain::oidc::sessions`.
#![allow(clippy::result_large_err)]
use super::AppState;
use super::admin::{AdminState, Form, date, form, lang, see_other, session_rows};
use super::errors;
use super::extract::{self, SSO_COOKIE};
use super::i18n::Lang;
use super::pages::html;
use crate::domain::oidc::{KeyAddError, KeyRemovalError, SELF_ACTOR, SignedIn};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::texts::texts;
use relais_admin_ui::views::{AccountView, KeyRow, LoginRow, MessageView};

/// Logins listed on the page.
const RECENT_LOGINS: usize = 20;

fn not_signed_in(lang: Lang) -> HttpResponse {
    let t = texts(lang.code());
    html(
        StatusCode::UNAUTHORIZED,
        &MessageView {
            lang: lang.code(),
            t,
            title: t.account_title.into(),
            message: t.not_signed_in.into(),
        },
    )
}

/// The person behind the SSO cookie; otherwise the response to send.
async fn me(req: &HttpRequest, state: &AppState) -> Result<(SignedIn, String), HttpResponse> {
    let lang = lang(req);
    let Some(cookie) = extract::cookie(req, SSO_COOKIE) else {
        return Err(not_signed_in(lang));
    };
    match state.provider.signed_in(&cookie).await {
        Ok(Some(me)) => Ok((me, cookie)),
        Ok(None) => Err(not_signed_in(lang)),
        Err(e) => Err(errors::domain_page(e, lang)),
    }
}

/// A signed-in person posting a form with the right CSRF token (field or `X-CSRF-Token`).
async fn poster(req: &HttpRequest, state: &AppState, f: &Form) -> Result<(SignedIn, String), HttpResponse> {
    let (me, cookie) = me(req, state).await?;
    let header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !me.csrf_ok(f.get("csrf").or(header)) {
        return Err(super::admin::forbidden(
            lang(req),
            "the form is stale or forged (CSRF check failed)",
        ));
    }
    Ok((me, cookie))
}

async fn render(req: &HttpRequest, state: &AppState, me: &SignedIn, notice: Option<String>, error: Option<String>) -> HttpResponse {
    let lang = lang(req);
    let t = texts(lang.code());
    let p = &state.provider;
    let id = me.account.id;
    let logins = match p.recent_logins(id, RECENT_LOGINS).await {
        Ok(r) => r,
        Err(e) => return errors::domain_page(e, lang),
    };
    let sessions = match p.sso_sessions_of(id).await {
        Ok(s) => s,
        Err(e) => return errors::domain_page(e, lang),
    };
    let keys = match p.key_store.security_keys(id).await {
        Ok(k) => k,
        Err(e) => return errors::domain_page(e.into(), lang),
    };
    html(
        StatusCode::OK,
        &AccountView {
            lang: lang.code(),
            t,
            csrf: me.csrf.clone(),
            display_name: me.account.display_name.clone(),
            username: me.account.username.clone(),
            logins: logins
                .iter()
                .map(|r| LoginRow {
                    at: r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    method: match r.event_type.as_str() {
                        "login_password" => t.via_password.to_owned(),
                        "fido2_authentication" => t.via_key.to_owned(),
                        "card_login" => t.via_card.to_owned(),
                        "admin_login" => t.via_admin.to_owned(),
                        other => other.to_owned(),
                    },
                    outcome: if r.outcome == "success" { t.login_ok } else { t.login_failed }.to_owned(),
                    ip: r.source_ip.clone().unwrap_or_else(|| "—".into()),
                })
                .collect(),
            sessions: session_rows(&sessions, Some(&me.session_id)),
            keys: keys
                .iter()
                .map(|k| KeyRow {
                    id: k.id.to_string(),
                    name: k.name.clone(),
                    aaguid: k.aaguid.to_string(),
                    created: date(k.created_at),
                    last_used: k.last_used_at.map(date).unwrap_or_else(|| "—".into()),
                    revoked: k.revoked_at.map(date),
                })
                .collect(),
            has_active_key: keys.iter().any(|k| k.active()),
            notice,
            error,
        },
    )
}

#[tracing::instrument(skip_all)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (me, _) = match me(&req, &state).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let notice = super::admin::query(&req)
        .get("done")
        .map(|_| texts(lang(&req).code()).done.to_owned());
    render(&req, &state, &me, notice, None).await
}

/// Ends one of the person's sessions (this browser's included: then the cookie goes too).
#[tracing::instrument(skip_all)]
pub async fn revoke_session(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let f = match form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (me, _) = match poster(&req, &state, &f).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let sid = f.get("session").unwrap_or("");
    let ctx = extract::context(&req);
    match state.provider.revoke_sso_session(me.account.id, sid, SELF_ACTOR, &ctx).await {
        Ok(true) if sid == me.session_id => {
            let mut r = see_other("/account");
            let _ = r.add_cookie(&state.cookies.removal(SSO_COOKIE));
            r
        }
        Ok(true) => see_other("/account?done=1"),
        Ok(false) => {
            let mut r = render(&req, &state, &me, None, Some(texts(lang(&req).code()).no_session.into())).await;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        Err(e) => errors::domain_page(e, lang(&req)),
    }
}

/// Removes one of the person's keys, unless it is the last phishing-resistant factor and the
/// policy requires one (an admin must always have a key; a client may refuse passwords alone).
#[tracing::instrument(skip_all)]
pub async fn remove_key(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<uuid::Uuid>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let f = match form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (me, _) = match poster(&req, &state, &f).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let lang = lang(&req);
    let must_keep_one = match (
        admin_state.roles.admin_role(me.account.id).await,
        state.provider.phishing_resistant_required().await,
    ) {
        (Ok(role), Ok(required)) => role.is_some() || required,
        (Err(e), _) => return errors::domain_page(e.into(), lang),
        (_, Err(e)) => return errors::domain_page(e, lang),
    };
    let ctx = extract::context(&req);
    match state
        .provider
        .remove_own_security_key(me.account.id, path.into_inner(), must_keep_one, &ctx)
        .await
    {
        Ok(Ok(())) => see_other("/account?done=1"),
        Ok(Err(e)) => {
            let t = texts(lang.code());
            let (status, msg) = match e {
                KeyRemovalError::LastFactor => (StatusCode::CONFLICT, t.last_key_kept.to_owned()),
                KeyRemovalError::NoSuchKey => (StatusCode::BAD_REQUEST, e.to_string()),
            };
            let mut r = render(&req, &state, &me, None, Some(msg)).await;
            *r.status_mut() = status;
            r
        }
        Err(e) => errors::domain_page(e, lang),
    }
}

#[derive(serde::Deserialize)]
pub struct AddKeyRequest {
    csrf: String,
    #[serde(default)]
    enrolment_code: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    credential: serde_json::Value,
}

fn key_error(e: &KeyAddError, lang: Lang) -> HttpResponse {
    let status = match e {
        KeyAddError::NotEnabled => StatusCode::NOT_FOUND,
        KeyAddError::Expired => StatusCode::BAD_REQUEST,
        KeyAddError::AlreadyRegistered => StatusCode::CONFLICT,
        _ => StatusCode::FORBIDDEN,
    };
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "error": lang.key_add_error(e) }))
}

/// The signed-in person behind a JSON step, with the page's CSRF token.
async fn json_poster(req: &HttpRequest, state: &AppState, csrf: &str) -> Result<SignedIn, HttpResponse> {
    let (me, _) = me(req, state).await?;
    if !me.csrf_ok(Some(csrf)) {
        return Err(HttpResponse::Forbidden().json(serde_json::json!({"error": "the page is stale or forged (CSRF check failed)"})));
    }
    Ok(me)
}

/// Starts adding a key (JSON): a first key needs the enrolment code, another one a session
/// opened with a key or a card.
#[tracing::instrument(skip_all)]
pub async fn add_key_options(req: HttpRequest, body: web::Json<AddKeyRequest>, state: web::Data<AppState>) -> HttpResponse {
    let me = match json_poster(&req, &state, &body.csrf).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ctx = extract::context(&req);
    match state.provider.own_key_options(&me, body.enrolment_code.as_deref(), &ctx).await {
        Ok(Ok(options)) => HttpResponse::Ok()
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .json(options),
        Ok(Err(e)) => key_error(&e, lang(&req)),
        Err(e) => errors::domain_page(e, lang(&req)),
    }
}

/// The authenticator's answer (JSON): checked against the attestation policy, stored.
#[tracing::instrument(skip_all)]
pub async fn add_key_finish(req: HttpRequest, body: web::Json<AddKeyRequest>, state: web::Data<AppState>) -> HttpResponse {
    let me = match json_poster(&req, &state, &body.csrf).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let ctx = extract::context(&req);
    match state
        .provider
        .own_key_finish(&me, &body.credential, body.name.as_deref(), &ctx)
        .await
    {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({"ok": true})),
        Ok(Err(e)) => key_error(&e, lang(&req)),
        Err(e) => errors::domain_page(e, lang(&req)),
    }
}
