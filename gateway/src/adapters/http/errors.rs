//! The one place where errors become HTTP: OAuth error JSON (RFC 6749 §5.2) for API
//! endpoints, a page for browsers. Never a stack trace, never a dependency's message.
use super::i18n::Lang;
use super::pages;
use crate::domain::DomainError;
use crate::protocol::{OAuthError, OAuthErrorCode};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, http::header};
use serde_json::json;

fn status_of(code: OAuthErrorCode) -> StatusCode {
    match code {
        OAuthErrorCode::InvalidClient | OAuthErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        OAuthErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn from_domain(e: DomainError) -> OAuthError {
    match e {
        DomainError::OAuth(o) => o,
        DomainError::Unavailable(m) => {
            tracing::warn!(error = %m, "dependency unavailable");
            OAuthError::unavailable("a dependency of the server is unavailable; try again shortly")
        }
        DomainError::Internal(m) => {
            tracing::error!(error = %m, "internal error");
            OAuthError::server_error("internal error")
        }
    }
}

/// JSON error for API endpoints (token, revocation, introspection, userinfo).
pub fn oauth_json(e: &OAuthError, basic_was_used: bool) -> HttpResponse {
    let mut b = HttpResponse::build(status_of(e.code));
    b.insert_header((header::CACHE_CONTROL, "no-store"));
    if e.code == OAuthErrorCode::InvalidClient && basic_was_used {
        b.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"relais\""));
    }
    if e.code == OAuthErrorCode::InvalidToken {
        b.insert_header((
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                e.description.replace('"', "'")
            ),
        ));
    }
    b.json(json!({"error": e.code.as_str(), "error_description": e.description}))
}

pub fn domain_json(e: DomainError) -> HttpResponse {
    oauth_json(&from_domain(e), false)
}

/// Error page for browser endpoints (authorize, login, logout).
pub fn page(e: &OAuthError, lang: Lang) -> HttpResponse {
    pages::error_page(status_of(e.code), e, lang)
}

pub fn domain_page(e: DomainError, lang: Lang) -> HttpResponse {
    page(&from_domain(e), lang)
}
