//! OpenID Provider endpoints over HTTP.
use super::AppState;
use super::errors;
use super::extract::{self, LOGIN_BINDING_COOKIE, SSO_COOKIE};
use super::i18n::Lang;
use super::pages::{self, LogoutConfirmView};
use crate::domain::oidc::{AuthorizeOutcome, LogoutOutcome, LogoutRequest, Params, UserinfoResponse};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};

pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(&state.discovery)
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(state.provider.signer.jwks())
}

async fn authorize(req: HttpRequest, params: Params, state: &AppState) -> HttpResponse {
    let lang = Lang::pick(params.get("ui_locales"), &req);
    let sso = extract::cookie(&req, SSO_COOKIE);
    let ctx = extract::context(&req);
    match state.provider.authorize(&params, sso.as_deref(), &ctx).await {
        Ok(AuthorizeOutcome::Redirect(to)) => HttpResponse::Found()
            .insert_header((header::LOCATION, to))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Ok(AuthorizeOutcome::ErrorPage(e)) => errors::page(&e, lang),
        Ok(AuthorizeOutcome::NotEligible) => pages::not_eligible(lang),
        Ok(AuthorizeOutcome::Terms {
            pending_id,
            browser_binding,
        }) => HttpResponse::Found()
            .insert_header((header::LOCATION, format!("/terms?id={pending_id}")))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(state.cookies.make(
                LOGIN_BINDING_COOKIE,
                browser_binding,
                state.provider.settings.pending_login_ttl_secs,
            ))
            .finish(),
        Ok(AuthorizeOutcome::SecondFactor {
            pending_id,
            browser_binding,
        }) => {
            let ttl = state.provider.settings.pending_login_ttl_secs;
            HttpResponse::Found()
                .insert_header((header::LOCATION, super::webauthn::location(&pending_id)))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(state.cookies.make(LOGIN_BINDING_COOKIE, browser_binding, ttl))
                .finish()
        }
        Ok(AuthorizeOutcome::Login {
            pending_id,
            browser_binding,
        }) => {
            let ttl = state.provider.settings.pending_login_ttl_secs;
            HttpResponse::Found()
                .insert_header((header::LOCATION, format!("/login?id={pending_id}")))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(state.cookies.make(LOGIN_BINDING_COOKIE, browser_binding, ttl))
                .finish()
        }
        Err(e) => errors::domain_page(e, lang),
    }
}

#[tracing::instrument(skip_all)]
pub async fn authorize_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    authorize(req, params, &state).await
}

#[tracing::instrument(skip_all)]
pub async fn authorize_post(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    match extract::form_params(&req, payload, &state).await {
        Ok(params) => authorize(req, params, &state).await,
        Err(e) => errors::page(&e, Lang::pick(None, &req)),
    }
}

/// Reads a client-authenticated POST (token, revocation, introspection).
async fn client_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(crate::domain::oidc::ClientCredentials, Params), HttpResponse> {
    let creds = extract::client_credentials(req).map_err(|e| errors::oauth_json(&e, true))?;
    let params = extract::form_params(req, payload, state)
        .await
        .map_err(|e| errors::oauth_json(&e, false))?;
    Ok((creds, params))
}

#[tracing::instrument(skip_all)]
pub async fn token(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let (creds, params) = match client_request(&req, payload, &state).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let basic = creds.basic.is_some();
    match state.provider.token(&creds, &params, &extract::context(&req)).await {
        Ok(Ok(t)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(t),
        Ok(Err(e)) => errors::oauth_json(&e, basic),
        Err(e) => errors::domain_json(e),
    }
}

async fn userinfo(token: Option<String>, state: &AppState) -> HttpResponse {
    if token.is_none() {
        // RFC 6750 §3.1: no credentials, no error code, just the challenge.
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"relais\""))
            .finish();
    }
    match state.provider.userinfo(token.as_deref()).await {
        Ok(Ok(UserinfoResponse::Json(v))) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(v),
        Ok(Ok(UserinfoResponse::Jwt(jwt))) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/jwt")
            .body(jwt),
        Ok(Err(e)) => errors::oauth_json(&e, false),
        Err(e) => errors::domain_json(e),
    }
}

#[tracing::instrument(skip_all)]
pub async fn userinfo_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    userinfo(extract::bearer(&req), &state).await
}

#[tracing::instrument(skip_all)]
pub async fn userinfo_post(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    // RFC 6750 §2.2 also allows the token in a form body.
    let from_body = match extract::bearer(&req) {
        Some(t) => Some(t),
        None => match extract::form_params(&req, payload, &state).await {
            Ok(p) => p.get("access_token").map(str::to_owned),
            Err(e) => return errors::oauth_json(&e, false),
        },
    };
    userinfo(from_body, &state).await
}

#[tracing::instrument(skip_all)]
pub async fn revoke(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let (creds, params) = match client_request(&req, payload, &state).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.provider.revoke(&creds, &params, &extract::context(&req)).await {
        Ok(Ok(())) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish(),
        Ok(Err(e)) => errors::oauth_json(&e, creds.basic.is_some()),
        Err(e) => errors::domain_json(e),
    }
}

#[tracing::instrument(skip_all)]
pub async fn introspect(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let (creds, params) = match client_request(&req, payload, &state).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.provider.introspect(&creds, &params, &extract::context(&req)).await {
        Ok(Ok(i)) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(i.0),
        Ok(Err(e)) => errors::oauth_json(&e, creds.basic.is_some()),
        Err(e) => errors::domain_json(e),
    }
}

async fn logout(req: HttpRequest, params: Params, state: &AppState) -> HttpResponse {
    let lang = Lang::pick(params.get("ui_locales"), &req);
    let sso = extract::cookie(&req, SSO_COOKIE);
    let ctx = extract::context(&req);
    let outcome = state
        .provider
        .end_session(
            LogoutRequest {
                params: &params,
                sso_cookie: sso.as_deref(),
            },
            &ctx,
        )
        .await;
    let removal = state.cookies.removal(SSO_COOKIE);
    match outcome {
        Ok(LogoutOutcome::Redirect(to)) => HttpResponse::Found().insert_header((header::LOCATION, to)).cookie(removal).finish(),
        Ok(LogoutOutcome::Done) => {
            let mut r = pages::message(StatusCode::OK, lang, lang.text().logged_out_title, lang.text().logged_out_body);
            let _ = r.add_cookie(&removal);
            r
        }
        Ok(LogoutOutcome::Confirm { csrf }) => {
            let carried = ["client_id", "post_logout_redirect_uri", "state"]
                .into_iter()
                .filter_map(|k| params.get(k).map(|v| (k, v)))
                .collect();
            pages::html(
                StatusCode::OK,
                &LogoutConfirmView {
                    lang: lang.code(),
                    t: lang.text(),
                    csrf: &csrf,
                    carried,
                },
            )
        }
        Ok(LogoutOutcome::ErrorPage(e)) => errors::page(&e, lang),
        Err(e) => errors::domain_page(e, lang),
    }
}

#[tracing::instrument(skip_all)]
pub async fn logout_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = extract::query_params(&req, 8192);
    logout(req, params, &state).await
}

#[tracing::instrument(skip_all)]
pub async fn logout_post(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    match extract::form_params(&req, payload, &state).await {
        Ok(params) => logout(req, params, &state).await,
        Err(e) => errors::page(&e, Lang::pick(None, &req)),
    }
}
