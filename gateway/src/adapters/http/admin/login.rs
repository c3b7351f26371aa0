//! The admin login: password form, then the security key step (JSON endpoints driven by
//! `admin-login.js`), then the admin session cookie. Logout ends it.
use super::{ADMIN_COOKIE, ADMIN_LOGIN_COOKIE, AdminState, form, lang, see_other};
use crate::adapters::http::AppState;
use crate::adapters::http::extract;
use crate::adapters::http::pages::html;
use crate::domain::admin::AdminLoginError;
use crate::domain::crypto::ct_eq;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::texts::texts;
use relais_admin_ui::views::{KeyView, LoginView};
use serde::Deserialize;
use serde_json::json;

/// The pending login lives 5 minutes; its cookie no longer.
const LOGIN_COOKIE_SECS: i64 = 300;

fn login_form(req: &HttpRequest, admin: &AdminState, state: &AppState, status: StatusCode, error: Option<String>) -> HttpResponse {
    let lang = lang(req);
    // Double-submit token: the form's hidden field must match this cookie.
    let token = state.provider.random.token();
    let mut r = html(
        status,
        &LoginView {
            lang: lang.code(),
            t: texts(lang.code()),
            csrf: token.clone(),
            error,
        },
    );
    let _ = r.add_cookie(&admin.cookie(ADMIN_LOGIN_COOKIE, token, LOGIN_COOKIE_SECS));
    r
}

pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin: web::Data<AdminState>) -> HttpResponse {
    login_form(&req, &admin, &state, StatusCode::OK, None)
}

#[tracing::instrument(skip_all)]
pub async fn submit(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>, admin: web::Data<AdminState>) -> HttpResponse {
    let f = match form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let lang = lang(&req);
    let bound = extract::cookie(&req, ADMIN_LOGIN_COOKIE);
    let csrf_ok = matches!((f.get("csrf"), bound.as_deref()), (Some(a), Some(b)) if ct_eq(a.as_bytes(), b.as_bytes()));
    if !csrf_ok {
        admin
            .access(&state)
            .refused(&extract::context(&req), f.get("username").unwrap_or(""), "login", "csrf")
            .await;
        return super::forbidden(lang, "the form is stale or forged (CSRF check failed)");
    }
    let (Some(username), Some(password)) = (f.get("username"), f.get("password")) else {
        return login_form(
            &req,
            &admin,
            &state,
            StatusCode::BAD_REQUEST,
            Some(lang.admin_login_error(&AdminLoginError::Refused).into_owned()),
        );
    };
    match admin.access(&state).password(username, password, &extract::context(&req)).await {
        Ok(Ok((pending_id, _csrf))) => {
            let mut r = see_other("/admin/login/key");
            let _ = r.add_cookie(&admin.cookie(ADMIN_LOGIN_COOKIE, pending_id, LOGIN_COOKIE_SECS));
            r
        }
        Ok(Err(e @ AdminLoginError::Throttled)) => login_form(
            &req,
            &admin,
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some(lang.admin_login_error(&e).into_owned()),
        ),
        Ok(Err(e)) => login_form(
            &req,
            &admin,
            &state,
            StatusCode::UNAUTHORIZED,
            Some(lang.admin_login_error(&e).into_owned()),
        ),
        Err(e) => super::domain_error(e, lang),
    }
}

pub async fn key_page(req: HttpRequest, state: web::Data<AppState>, admin: web::Data<AdminState>) -> HttpResponse {
    let lang = lang(&req);
    let Some(pending_id) = extract::cookie(&req, ADMIN_LOGIN_COOKIE) else {
        return see_other("/admin/login");
    };
    match admin.access(&state).pending_csrf(&pending_id).await {
        Ok(Some(csrf)) => html(
            StatusCode::OK,
            &KeyView {
                lang: lang.code(),
                t: texts(lang.code()),
                pending_id,
                csrf,
            },
        ),
        Ok(None) => see_other("/admin/login"),
        Err(e) => super::domain_error(e, lang),
    }
}

#[derive(Deserialize)]
pub struct KeyRequest {
    pending_id: String,
    csrf: String,
    #[serde(default)]
    credential: serde_json::Value,
}

fn json_error(req: &HttpRequest, status: StatusCode, e: &AdminLoginError) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": lang(req).admin_login_error(e) }))
}

/// The key step belongs to the browser that passed the password step.
fn bound(req: &HttpRequest, body: &KeyRequest) -> bool {
    extract::cookie(req, ADMIN_LOGIN_COOKIE).is_some_and(|c| ct_eq(c.as_bytes(), body.pending_id.as_bytes()))
}

pub async fn key_options(
    req: HttpRequest,
    body: web::Json<KeyRequest>,
    state: web::Data<AppState>,
    admin: web::Data<AdminState>,
) -> HttpResponse {
    if !bound(&req, &body) {
        return json_error(&req, StatusCode::FORBIDDEN, &AdminLoginError::Expired);
    }
    match admin.access(&state).key_options(&body.pending_id, &body.csrf).await {
        Ok(Ok(options)) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(options),
        Ok(Err(e)) => json_error(&req, StatusCode::FORBIDDEN, &e),
        Err(e) => crate::adapters::http::errors::domain_json(e),
    }
}

#[tracing::instrument(skip_all)]
pub async fn key_finish(
    req: HttpRequest,
    body: web::Json<KeyRequest>,
    state: web::Data<AppState>,
    admin: web::Data<AdminState>,
) -> HttpResponse {
    if !bound(&req, &body) {
        return json_error(&req, StatusCode::FORBIDDEN, &AdminLoginError::Expired);
    }
    let ctx = extract::context(&req);
    match admin
        .access(&state)
        .key_finish(&body.pending_id, &body.csrf, &body.credential, &ctx)
        .await
    {
        Ok(Ok((secret, _session))) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(admin.cookie(ADMIN_COOKIE, secret, admin.policy.max_secs))
            .cookie(admin.removal(ADMIN_LOGIN_COOKIE))
            .json(json!({ "redirect": "/admin" })),
        Ok(Err(e)) => json_error(&req, StatusCode::FORBIDDEN, &e),
        Err(e) => crate::adapters::http::errors::domain_json(e),
    }
}

pub async fn logout(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>, admin: web::Data<AdminState>) -> HttpResponse {
    let f = match form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = super::reader_posting(&req, &state, &admin, &f, "logout").await {
        return r;
    }
    if let Some(secret) = extract::cookie(&req, ADMIN_COOKIE)
        && let Err(e) = admin.access(&state).logout(&secret).await
    {
        return super::domain_error(e, lang(&req));
    }
    let mut r = see_other("/admin/login");
    let _ = r.add_cookie(&admin.removal(ADMIN_COOKIE));
    r
}
