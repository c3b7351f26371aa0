//! The terms-of-use step before a person is relayed to Pro Santé Connect.
use super::AppState;
use super::errors;
use super::extract::{self, LOGIN_BINDING_COOKIE};
use super::i18n::Lang;
use super::pages::{TermsView, html};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};

#[tracing::instrument(skip_all)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    match state.provider.terms_page(params.get("id").unwrap_or(""), binding.as_deref()).await {
        Ok(Ok(p)) => {
            let lang = Lang::pick(p.ui_locales.as_deref(), &req);
            let view = TermsView {
                lang: lang.code(),
                t: lang.text(),
                client_name: &p.client_name,
                pending_id: &p.pending_id,
                csrf: &p.csrf,
                version: &p.version,
                url: p.url.as_deref(),
            };
            html(StatusCode::OK, &view)
        }
        Ok(Err(e)) => errors::page(&e, Lang::pick(None, &req)),
        Err(e) => errors::domain_page(e, Lang::pick(None, &req)),
    }
}

#[tracing::instrument(skip_all)]
pub async fn submit(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    let params = match extract::form_params(&req, payload, &state).await {
        Ok(p) => p,
        Err(e) => return errors::page(&e, lang),
    };
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    let accept = params.get("answer") == Some("accept");
    let ctx = extract::context(&req);
    match state
        .provider
        .answer_terms(
            params.get("terms_id").unwrap_or(""),
            params.get("csrf").unwrap_or(""),
            accept,
            binding.as_deref(),
            &ctx,
        )
        .await
    {
        Ok(Ok(to)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .cookie(state.cookies.removal(LOGIN_BINDING_COOKIE))
            .finish(),
        Ok(Err(e)) => errors::page(&e, lang),
        Err(e) => errors::domain_page(e, lang),
    }
}
