//! The login form: shown for a pending authorization request, submitted with username and
//! password.
use super::AppState;
use super::errors;
use super::extract::{self, LOGIN_BINDING_COOKIE, SSO_COOKIE};
use super::i18n::Lang;
use super::pages::{self, LoginView, html};
use crate::domain::oidc::{LoginForm, LoginOutcome, LoginPage};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};

fn render(req: &HttpRequest, state: &AppState, page: &LoginPage, username: &str, failed: bool) -> HttpResponse {
    let lang = Lang::pick(page.ui_locales.as_deref(), req);
    let card_url = state.cards.as_ref().filter(|c| c.card_alone).map(|c| c.url(&page.pending_id));
    let view = LoginView {
        lang: lang.code(),
        t: lang.text(),
        client_name: &page.client_name,
        pending_id: &page.pending_id,
        csrf: &page.csrf,
        username,
        failed,
        card_url: card_url.as_deref(),
        card_label: super::card::texts(lang).button,
    };
    html(if failed { StatusCode::UNAUTHORIZED } else { StatusCode::OK }, &view)
}

#[tracing::instrument(skip_all)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    let lang = Lang::pick(None, &req);
    let id = params.get("id").unwrap_or("");
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    match state.provider.login_page(id, binding.as_deref()).await {
        Ok(Ok(p)) => {
            let hint = p.login_hint.clone().unwrap_or_default();
            render(&req, &state, &p, &hint, false)
        }
        Ok(Err(e)) => errors::page(&e, lang),
        Err(e) => errors::domain_page(e, lang),
    }
}

#[tracing::instrument(skip_all)]
pub async fn submit(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    let params = match extract::form_params(&req, payload, &state).await {
        Ok(p) => p,
        Err(e) => return errors::page(&e, lang),
    };
    let form = LoginForm {
        pending_id: params.get("login_id").unwrap_or("").to_owned(),
        csrf: params.get("csrf").unwrap_or("").to_owned(),
        username: params.get("username").unwrap_or("").to_owned(),
        password: params.get("password").unwrap_or("").to_owned(),
    };
    let username = form.username.chars().take(128).collect::<String>();
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    let previous = extract::cookie(&req, SSO_COOKIE);
    let ctx = extract::context(&req);
    match state.provider.login(form, binding.as_deref(), previous.as_deref(), &ctx).await {
        Ok(Ok(LoginOutcome::Rejected(p))) => render(&req, &state, &p, &username, true),
        Ok(Ok(outcome)) => respond(&state, lang, outcome),
        Ok(Err(e)) => errors::page(&e, lang),
        Err(e) => errors::domain_page(e, lang),
    }
}

/// The response to a finished login step (password or card): cookies and where to go next.
pub(super) fn respond(state: &AppState, lang: Lang, outcome: LoginOutcome) -> HttpResponse {
    match outcome {
        LoginOutcome::Done {
            redirect, cookie_secret, ..
        } => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, redirect))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(state.cookies.make(SSO_COOKIE, cookie_secret, state.cookies.sso_max_age_secs))
            .cookie(state.cookies.removal(LOGIN_BINDING_COOKIE))
            .finish(),
        LoginOutcome::SecondFactor { pending_id } => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, second_factor_location(state, &pending_id)))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        LoginOutcome::Refused { redirect, cookie_secret } => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, redirect))
            .cookie(state.cookies.make(SSO_COOKIE, cookie_secret, state.cookies.sso_max_age_secs))
            .cookie(state.cookies.removal(LOGIN_BINDING_COOKIE))
            .finish(),
        LoginOutcome::NotEligible { cookie_secret } => {
            let mut r = pages::not_eligible(lang);
            let _ = r.add_cookie(&state.cookies.make(SSO_COOKIE, cookie_secret, state.cookies.sso_max_age_secs));
            let _ = r.add_cookie(&state.cookies.removal(LOGIN_BINDING_COOKIE));
            r
        }
        LoginOutcome::Terms {
            pending_id,
            browser_binding,
            cookie_secret,
        } => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/terms?id={pending_id}")))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(state.cookies.make(SSO_COOKIE, cookie_secret, state.cookies.sso_max_age_secs))
            .cookie(state.cookies.make(
                LOGIN_BINDING_COOKIE,
                browser_binding,
                state.provider.settings.pending_login_ttl_secs,
            ))
            .finish(),
        LoginOutcome::Rejected(_) => {
            tracing::error!("a rejected login reached respond()");
            errors::page(&crate::protocol::OAuthError::server_error("internal error"), lang)
        }
    }
}

/// The second factor page: the security key page (which also offers the card), or the card
/// page when only cards are configured.
fn second_factor_location(state: &AppState, pending_id: &str) -> String {
    if state.provider.security_keys.is_none() && state.cards.is_some() {
        format!("/login/card/start?id={pending_id}")
    } else {
        super::webauthn::location(pending_id)
    }
}
