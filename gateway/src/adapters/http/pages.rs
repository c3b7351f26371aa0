//! Server-rendered pages (askama), one typed view per page.
use super::i18n::{Lang, Texts};
use crate::protocol::OAuthError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header};
use askama::Template;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginView<'a> {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub client_name: &'a str,
    pub pending_id: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub failed: bool,
    /// The card login (card alone), when offered.
    pub card_url: Option<&'a str>,
    pub card_label: &'static str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorView<'a> {
    lang: &'static str,
    t: &'static Texts,
    code: &'a str,
    description: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessageView<'a> {
    lang: &'static str,
    title: &'a str,
    body: &'a str,
}

#[derive(Template)]
#[template(path = "logout_confirm.html")]
pub struct LogoutConfirmView<'a> {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub csrf: &'a str,
    /// Logout parameters carried through the confirmation.
    pub carried: Vec<(&'static str, &'a str)>,
}

#[derive(Template)]
#[template(path = "terms.html")]
pub struct TermsView<'a> {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub client_name: &'a str,
    pub pending_id: &'a str,
    pub csrf: &'a str,
    pub version: &'a str,
    pub url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "webauthn.html")]
pub struct KeyView<'a> {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub client_name: &'a str,
    pub username: &'a str,
    pub pending_id: &'a str,
    pub csrf: &'a str,
    pub has_keys: bool,
    /// The authentication ceremony's options as JSON, when the person has keys (the script
    /// reads them from the page).
    pub options: Option<&'a str>,
    /// The card as the other second factor, when cards are configured.
    pub card_url: Option<&'a str>,
    pub card_label: &'static str,
}

pub fn not_eligible(lang: Lang) -> HttpResponse {
    message(
        StatusCode::FORBIDDEN,
        lang,
        lang.text().not_eligible_title,
        lang.text().not_eligible_body,
    )
}

/// Renders a page with the headers every page carries: no caching, no framing.
pub fn html(status: StatusCode, t: &impl Template) -> HttpResponse {
    match t.render() {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error")
        }
    }
}

pub fn error_page(status: StatusCode, e: &OAuthError, lang: Lang) -> HttpResponse {
    html(
        status,
        &ErrorView {
            lang: lang.code(),
            t: lang.text(),
            code: e.code.as_str(),
            description: &e.description,
        },
    )
}

pub fn message(status: StatusCode, lang: Lang, title: &str, body: &str) -> HttpResponse {
    html(
        status,
        &MessageView {
            lang: lang.code(),
            title,
            body,
        },
    )
}

pub async fn home(req: HttpRequest) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    message(StatusCode::OK, lang, lang.text().home_title, lang.text().home_body)
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    message(StatusCode::NOT_FOUND, lang, lang.text().not_found, req.path())
}
