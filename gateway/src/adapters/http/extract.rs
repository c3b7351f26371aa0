//! Reading what handlers need from a request: parameters, Basic credentials, bearer tokens,
//! cookies, and the audit context. Bounded everywhere: hostile input never grows memory.
use super::AppState;
use crate::domain::audit::RequestContext;
use crate::domain::oidc::{ClientCredentials, Params};
use crate::protocol::OAuthError;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, http::header, web};
use base64::Engine;
use futures_util::StreamExt;

pub const SSO_COOKIE: &str = "relais_sso";
pub const LOGIN_BINDING_COOKIE: &str = "relais_login";

#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// `false` only in dev mode (plain-HTTP localhost).
    pub secure: bool,
    pub sso_max_age_secs: i64,
}

impl CookieSettings {
    pub fn make(&self, name: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::seconds(max_age_secs))
            .finish()
    }

    pub fn removal(&self, name: &'static str) -> Cookie<'static> {
        let mut c = self.make(name, String::new(), 0);
        c.make_removal();
        c
    }
}

pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

pub fn query_params(req: &HttpRequest, max_len: usize) -> Params {
    let pairs = url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    Params::new(pairs, max_len)
}

/// Reads an `application/x-www-form-urlencoded` body of at most `limit` bytes.
pub async fn form_params(req: &HttpRequest, mut payload: web::Payload, state: &AppState) -> Result<Params, OAuthError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| OAuthError::invalid_request("the request body could not be read"))?;
        if body.len() + chunk.len() > state.max_body_bytes {
            return Err(OAuthError::invalid_request("the request body is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    let pairs = url::form_urlencoded::parse(&body).into_owned().collect();
    Ok(Params::new(pairs, state.provider.settings.max_param_len))
}

/// `Authorization: Basic` client credentials, form-url-decoded per RFC 6749 §2.3.1.
pub fn client_credentials(req: &HttpRequest) -> Result<ClientCredentials, OAuthError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(ClientCredentials::default());
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let Some(b64) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Err(OAuthError::invalid_client("only Basic authentication is accepted here"));
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
    let raw = String::from_utf8(raw).map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
    let (id, secret) = raw
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(ClientCredentials {
        basic: Some((dec(id), dec(secret))),
    })
}

pub fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|t| t.trim().to_owned())
}

/// The client's address: the TCP peer, or, when the peer is a trusted reverse proxy, the
/// last address that proxy appended to `X-Forwarded-For` (earlier entries are the client's
/// say-so and can be forged).
fn source_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| crate::protocol::in_ranges(&s.trusted_proxies, peer));
    if trusted {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .last();
        if let Some(ip) = forwarded.and_then(|f| f.parse::<std::net::IpAddr>().ok()) {
            return Some(ip.to_string());
        }
    }
    Some(peer.to_string())
}

pub fn context(req: &HttpRequest) -> RequestContext {
    let header = |name: &str, max: usize| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(max).collect::<String>())
    };
    RequestContext {
        source_ip: source_ip(req),
        user_agent: header("user-agent", 256),
        correlation_id: header("traceparent", 64).or_else(|| header("x-request-id", 64)),
    }
}
