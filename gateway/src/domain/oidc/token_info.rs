//! Reading tokens back: userinfo, introspection (RFC 7662) and revocation (RFC 7009).
use super::token::profile_claims;
use super::{ClientCredentials, Params, Provider};
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::crypto::secret_digest;
use crate::domain::ports::Namespace;
use crate::protocol::{OAuthError, OAuthErrorCode, Scopes};
use serde_json::{Map, Value, json};
use uuid::Uuid;

#[derive(Debug)]
pub enum UserinfoResponse {
    Json(Value),
    /// A signed JWT, served as `application/jwt`.
    Jwt(String),
}

/// RFC 7662 response: `{"active": false}` or the token's metadata.
#[derive(Debug)]
pub struct Introspection(pub Value);

/// The claims of one of our access tokens that is valid now.
pub(super) struct LiveAccessToken {
    pub claims: Value,
}

impl LiveAccessToken {
    fn str(&self, k: &str) -> Option<&str> {
        self.claims.get(k).and_then(Value::as_str)
    }
}

impl Provider {
    /// Verifies one of our access tokens: signature, type, issuer, expiry, revocation, and that
    /// its SSO session is still open.
    pub(super) async fn live_access_token(&self, token: &str) -> Result<Option<LiveAccessToken>, DomainError> {
        if token.len() > 4096 {
            return Ok(None);
        }
        let Ok((typ, claims)) = self.signer.verify(token) else {
            return Ok(None);
        };
        if typ.as_deref() != Some("at+jwt") || claims.get("iss").and_then(Value::as_str) != Some(&self.settings.issuer) {
            return Ok(None);
        }
        if claims.get("exp").and_then(Value::as_i64).is_none_or(|e| e <= self.clock.unix()) {
            return Ok(None);
        }
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return Ok(None);
        };
        if self.sessions.get(Namespace::RevokedAccessToken, jti).await?.is_some() {
            return Ok(None);
        }
        // An access token lives no longer than the login it came from: once that SSO session
        // is ended (logout, an admin or the person ending it, expiry), its tokens stop working
        // here too instead of lasting until `exp`.
        if let Some(sid) = claims.get("sid").and_then(Value::as_str)
            && self.sessions.get(Namespace::Sso, sid).await?.is_none()
        {
            return Ok(None);
        }
        Ok(Some(LiveAccessToken { claims }))
    }

    #[tracing::instrument(skip_all)]
    pub async fn userinfo(&self, bearer: Option<&str>) -> Result<Result<UserinfoResponse, OAuthError>, DomainError> {
        let Some(bearer) = bearer else {
            return Ok(Err(OAuthError::invalid_request("a bearer access token is required")));
        };
        let Some(at) = self.live_access_token(bearer).await? else {
            return Ok(Err(OAuthError::invalid_token("the access token is invalid, expired or revoked")));
        };
        let scopes = Scopes::parse(at.str("scope").unwrap_or("")).unwrap_or_default();
        if !scopes.contains("openid") {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::InvalidToken,
                "the access token was not issued for openid",
            )));
        }
        let Some(account_id) = at.str("sub").and_then(|s| Uuid::parse_str(s).ok()) else {
            return Ok(Err(OAuthError::invalid_token("bad subject")));
        };
        let Some(account) = self.storage.account(account_id).await?.filter(|a| !a.disabled) else {
            return Ok(Err(OAuthError::invalid_token("the account is no longer active")));
        };
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(account.id.to_string()));
        profile_claims(&mut claims, &(&account).into(), &scopes);
        // Minted into the access token only when this client may have them.
        if let Some(r) = at.claims.get("roles").filter(|_| scopes.contains("roles")) {
            claims.insert("roles".into(), r.clone());
        }
        let client = match at.str("client_id").and_then(|c| crate::protocol::ClientId::parse(c).ok()) {
            Some(id) => self.storage.client(&id).await?,
            None => None,
        };
        if let Some(client) = &client {
            self.national_claims(client, account.id, &scopes, &mut claims).await?;
        }
        if let Some(client) = client
            && let Some(alg) = client.userinfo_signed_alg
        {
            claims.insert("iss".into(), json!(self.settings.issuer));
            claims.insert("aud".into(), json!(client.id.as_str()));
            claims.insert("iat".into(), json!(self.clock.unix()));
            return Ok(Ok(UserinfoResponse::Jwt(self.signer.sign(alg, "JWT", &Value::Object(claims))?)));
        }
        Ok(Ok(UserinfoResponse::Json(Value::Object(claims))))
    }

    #[tracing::instrument(skip_all)]
    pub async fn introspect(
        &self,
        creds: &ClientCredentials,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Result<Introspection, OAuthError>, DomainError> {
        let caller = match self.authenticate_client(creds, params, ctx).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if caller.is_public() {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "public clients may not introspect",
            )));
        }
        let token = match params.required("token") {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let inactive = Ok(Ok(Introspection(json!({"active": false}))));
        let may_see = |owner: &str| caller.may_introspect || owner == caller.id.as_str();
        if let Some(at) = self.live_access_token(token).await? {
            if !may_see(at.str("client_id").unwrap_or("")) {
                return inactive;
            }
            let mut v = at.claims.clone();
            v["active"] = json!(true);
            v["token_type"] = json!("Bearer");
            return Ok(Ok(Introspection(v)));
        }
        if token.len() <= 128
            && let Some(r) = self.storage.refresh_token(&secret_digest(token)).await?
        {
            let now = self.clock.now();
            let live = r.used_at.is_none() && r.revoked_at.is_none() && r.expires_at > now;
            if !live || !may_see(r.client_id.as_str()) {
                return inactive;
            }
            return Ok(Ok(Introspection(json!({
                "active": true, "token_type": "refresh_token", "client_id": r.client_id.as_str(),
                "sub": r.account_id.to_string(), "scope": r.scopes.to_string(), "iss": self.settings.issuer,
                "exp": r.expires_at.timestamp(), "iat": r.created_at.timestamp(), "sid": r.session_id,
            }))));
        }
        inactive
    }

    #[tracing::instrument(skip_all)]
    pub async fn revoke(
        &self,
        creds: &ClientCredentials,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Result<(), OAuthError>, DomainError> {
        let caller = match self.authenticate_client(creds, params, ctx).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let token = match params.required("token") {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let not_yours = || {
            Ok(Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            )))
        };
        if token.len() <= 128
            && let Some(r) = self.storage.refresh_token(&secret_digest(token)).await?
        {
            if r.client_id != caller.id {
                return not_yours();
            }
            self.storage.revoke_refresh_family(r.family_id, self.clock.now()).await?;
            self.audit(
                ctx,
                AuditEvent::TokenRevoked {
                    client_id: caller.id.to_string(),
                    token_type: "refresh_token".into(),
                },
            )
            .await?;
            return Ok(Ok(()));
        }
        if let Some(at) = self.live_access_token(token).await? {
            if at.str("client_id") != Some(caller.id.as_str()) {
                return not_yours();
            }
            let exp = at.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
            self.deny_access_token(at.str("jti").unwrap_or_default(), exp).await?;
            self.audit(
                ctx,
                AuditEvent::TokenRevoked {
                    client_id: caller.id.to_string(),
                    token_type: "access_token".into(),
                },
            )
            .await?;
        }
        // RFC 7009 §2.2: an unknown or already invalid token is not an error.
        Ok(Ok(()))
    }
}
