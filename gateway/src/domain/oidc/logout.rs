//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
use super::{Params, Provider};
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::crypto::{b64url, ct_eq, secret_digest, sha256};
use crate::domain::ports::Namespace;
use crate::protocol::{ClientId, OAuthError, RedirectUri};
use serde_json::Value;

pub struct LogoutRequest<'a> {
    pub params: &'a Params,
    /// The browser's SSO session cookie.
    pub sso_cookie: Option<&'a str>,
}

#[derive(Debug)]
pub enum LogoutOutcome {
    /// Logged out; go to the client's registered post-logout URI.
    Redirect(String),
    /// Logged out; show the "you are logged out" page.
    Done,
    /// No proof the client asked: ask the user, with this form token.
    Confirm { csrf: String },
    /// Bad `id_token_hint` or unregistered `post_logout_redirect_uri`: error page, no redirect.
    ErrorPage(OAuthError),
}

impl Provider {
    /// The logout confirmation form's token: derived from the session id, which only the
    /// browser holds (HttpOnly cookie), so another site cannot forge the confirmation.
    fn logout_csrf(cookie: &str) -> String {
        b64url(&sha256(format!("relais-logout:{cookie}").as_bytes()))
    }

    #[tracing::instrument(skip_all)]
    pub async fn end_session(&self, req: LogoutRequest<'_>, ctx: &RequestContext) -> Result<LogoutOutcome, DomainError> {
        let p = req.params;
        if let Err(e) = p.check_well_formed() {
            return Ok(LogoutOutcome::ErrorPage(e));
        }
        let mut hinted_client: Option<String> = None;
        let mut hinted_sid: Option<String> = None;
        if let Some(hint) = p.get("id_token_hint") {
            // Expired ID tokens are fine here (the spec says so): only signature and issuer count.
            let claims = match self.signer.verify(hint) {
                Ok((typ, c)) if typ.as_deref() == Some("JWT") && c.get("iss").and_then(Value::as_str) == Some(&self.settings.issuer) => c,
                _ => {
                    return Ok(LogoutOutcome::ErrorPage(OAuthError::invalid_request(
                        "id_token_hint is not a valid ID token from this server",
                    )));
                }
            };
            hinted_client = claims
                .get("aud")
                .and_then(|a| a.as_str().map(str::to_owned).or_else(|| a.get(0)?.as_str().map(str::to_owned)));
            hinted_sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        }
        let client_id = match (p.get("client_id"), hinted_client.as_deref()) {
            (Some(c), Some(h)) if c != h => {
                return Ok(LogoutOutcome::ErrorPage(OAuthError::invalid_request(
                    "client_id does not match id_token_hint",
                )));
            }
            (c, h) => c.or(h).map(str::to_owned),
        };
        let redirect = match p.get("post_logout_redirect_uri") {
            None => None,
            Some(raw) => {
                let client = match client_id.as_deref().and_then(|c| ClientId::parse(c).ok()) {
                    Some(id) => self.storage.client(&id).await?,
                    None => None,
                };
                let uri = RedirectUri::parse(raw)
                    .ok()
                    .filter(|u| client.as_ref().is_some_and(|c| c.post_logout_redirect_uris.contains(u)));
                match uri {
                    Some(u) => Some(u),
                    None => {
                        return Ok(LogoutOutcome::ErrorPage(OAuthError::invalid_request(
                            "post_logout_redirect_uri is not registered for this client",
                        )));
                    }
                }
            }
        };
        let cookie = req.sso_cookie.filter(|s| s.len() <= 64);
        let sid = cookie.map(secret_digest);
        // Without an ID token naming this session, the user confirms (the request may be forged).
        let proven = hinted_sid.is_some() && hinted_sid == sid;
        let confirmed = match (cookie, p.get("confirm_csrf")) {
            (Some(s), Some(c)) => ct_eq(c.as_bytes(), Self::logout_csrf(s).as_bytes()),
            _ => false,
        };
        if let Some(s) = cookie
            && !proven
            && !confirmed
            && hinted_sid.is_none()
        {
            return Ok(LogoutOutcome::Confirm {
                csrf: Self::logout_csrf(s),
            });
        }
        // End the browser's session (its cookie is cleared in any case) and the one the ID
        // token names (they differ if the browser logged in again since).
        let mut ended = Vec::new();
        for s in [sid.filter(|_| proven || confirmed || hinted_sid.is_some()), hinted_sid]
            .into_iter()
            .flatten()
        {
            if !ended.contains(&s) {
                self.end_sso_session(&s, client_id.clone(), ctx).await?;
                ended.push(s);
            }
        }
        Ok(match redirect {
            Some(u) => {
                let state = p.get("state");
                let params: Vec<(&str, &str)> = state.map(|s| vec![("state", s)]).unwrap_or_default();
                LogoutOutcome::Redirect(u.with_params(&params))
            }
            None => LogoutOutcome::Done,
        })
    }

    async fn end_sso_session(&self, sid: &str, client_id: Option<String>, ctx: &RequestContext) -> Result<(), DomainError> {
        let Some(bytes) = self.sessions.take(Namespace::Sso, sid).await? else {
            return Ok(());
        };
        let account_id = serde_json::from_slice::<crate::domain::records::SsoSession>(&bytes)
            .map(|s| s.account_id.to_string())
            .unwrap_or_default();
        self.storage.revoke_refresh_for_session(sid, self.clock.now()).await?;
        if let Ok(s) = serde_json::from_slice::<crate::domain::records::SsoSession>(&bytes) {
            self.unindex_sso_session(s.account_id, sid).await?;
        }
        self.audit(
            ctx,
            AuditEvent::Logout {
                account_id,
                session_id: sid.to_owned(),
                client_id,
            },
        )
        .await
    }
}
