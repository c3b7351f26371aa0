//! The token endpoint: `authorization_code` and `refresh_token` grants, token minting.
use super::{ClientCredentials, Params, Provider};
use crate::domain::DomainError;
use crate::domain::account::AccountClaims;
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContext};
use crate::domain::client::{Client, ClientKind};
use crate::domain::crypto::{half_hash, pkce_s256_matches, secret_digest};
use crate::domain::ports::Namespace;
use crate::domain::records::{AuditedWrite, CodeGrant, RedeemedCode, RefreshConsume, RefreshTokenRecord, SigningAlg};
use crate::protocol::{CodeVerifier, OAuthError, OAuthErrorCode, Scopes};
use chrono::{DateTime, Duration as ChronoDuration};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// What a token is issued for: the login and the grant's scope.
pub(super) struct Authentication<'a> {
    pub account_id: Uuid,
    /// The person's claims: as read at login for a code, as read now for a refresh.
    pub claims: &'a AccountClaims,
    /// Whether the account was read active by this request. If not (a code exchange), the
    /// tokens are handed out only if it still is when their issuance is committed.
    pub account_read: bool,
    pub session_id: &'a str,
    pub auth_time: i64,
    pub amr: &'a [String],
    pub acr: &'a str,
    pub scopes: &'a Scopes,
    pub nonce: Option<&'a str>,
    /// The login's roles; released only as `roles_claim` allows.
    pub roles: &'a [String],
}

impl Provider {
    #[tracing::instrument(skip_all, fields(grant_type = params.get("grant_type").unwrap_or("-")))]
    pub async fn token(
        &self,
        creds: &ClientCredentials,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Result<TokenResponse, OAuthError>, DomainError> {
        let client = match self.authenticate_client(creds, params, ctx).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let grant_type = params.get("grant_type").map(|g| g.chars().take(64).collect::<String>());
        let result = match params.check_well_formed() {
            Err(e) => Err(e),
            Ok(()) => match grant_type.as_deref() {
                Some("authorization_code") => self.code_grant(&client, params, ctx).await?,
                Some("refresh_token") if client.allow_refresh => self.refresh_grant(&client, params, ctx).await?,
                Some("refresh_token") => Err(OAuthError::new(
                    OAuthErrorCode::UnauthorizedClient,
                    "this client may not use refresh tokens",
                )),
                Some(_) => Err(OAuthError::new(
                    OAuthErrorCode::UnsupportedGrantType,
                    "supported grant types: authorization_code, refresh_token",
                )),
                None => Err(OAuthError::invalid_request("grant_type is missing")),
            },
        };
        if let Err(e) = &result {
            self.audit_refusal(
                ctx,
                AuditEvent::TokenRefused {
                    client_id: Some(client.id.to_string()),
                    grant_type,
                    error: e.code.as_str().into(),
                    reason: e.description.clone(),
                },
            )
            .await;
        }
        Ok(result)
    }

    #[tracing::instrument(skip_all)]
    async fn code_grant(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Result<TokenResponse, OAuthError>, DomainError> {
        let code = match params.required("code") {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let digest = secret_digest(code);
        let now = self.clock.unix();
        // The grant is swapped for a marker naming the tokens it will yield, in one atomic
        // step before anything else: of two concurrent redemptions one gets the grant, and a
        // replay at any later moment finds the marker and revokes those tokens.
        let family = self.random.uuid();
        let access_jti = self.random.token();
        let redeemed = RedeemedCode {
            client_id: client.id.clone(),
            refresh_family: client.allow_refresh.then_some(family),
            access_jti: access_jti.clone(),
            access_expires_at: now + self.settings.access_token_ttl_secs,
        };
        let marker = serde_json::to_vec(&redeemed).map_err(|e| DomainError::Internal(e.to_string()))?;
        let keep = Duration::from_secs((self.settings.code_ttl_secs * 10).max(600) as u64);
        let Some(bytes) = self.sessions.replace(Namespace::Code, &digest, &marker, keep).await? else {
            return Ok(Err(OAuthError::invalid_grant("unknown or expired code")));
        };
        // A grant, or the marker of an earlier redemption (a replay). No grant parses as a
        // marker nor the reverse: each has required fields the other lacks.
        let grant: CodeGrant = match serde_json::from_slice(&bytes) {
            Ok(g) => g,
            Err(_) => {
                let earlier: RedeemedCode =
                    serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("stored code: {e}")))?;
                // Put the first redemption's marker back: it names the tokens actually issued.
                self.sessions.put(Namespace::Code, &digest, &bytes, keep).await?;
                return Ok(Err(self.code_replayed(client, earlier, ctx).await?));
            }
        };
        if grant.expires_at <= now {
            return Ok(Err(OAuthError::invalid_grant("the code has expired")));
        }
        if grant.client_id != client.id {
            return Ok(Err(OAuthError::invalid_grant("the code was issued to another client")));
        }
        if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Ok(Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            )));
        }
        match (&grant.code_challenge, params.get("code_verifier")) {
            (Some(challenge), Some(v)) => {
                let Ok(v) = CodeVerifier::parse(v) else {
                    return Ok(Err(OAuthError::invalid_grant("code_verifier is malformed")));
                };
                if !pkce_s256_matches(v.as_str(), challenge.as_str()) {
                    return Ok(Err(OAuthError::invalid_grant("PKCE verification failed")));
                }
            }
            (Some(_), None) => return Ok(Err(OAuthError::invalid_grant("code_verifier is missing"))),
            // A verifier without a challenge is a downgrade attempt (RFC 9700 §2.1.1).
            (None, Some(_)) => {
                return Ok(Err(OAuthError::invalid_grant(
                    "no PKCE challenge was sent with the authorization request",
                )));
            }
            (None, None) => {}
        }
        // The claims came with the login. A code issued by an earlier version has none: the
        // account is read, as it was then.
        let (claims, account_read) = match grant.claims {
            Some(c) => (c, false),
            None => match self.storage.account(grant.account_id).await?.filter(|a| !a.disabled) {
                Some(a) => (AccountClaims::from(&a), true),
                None => return Ok(Err(inactive_account())),
            },
        };
        let auth = Authentication {
            account_id: grant.account_id,
            claims: &claims,
            account_read,
            session_id: &grant.session_id,
            auth_time: grant.auth_time,
            amr: &grant.amr,
            acr: &grant.acr,
            scopes: &grant.scopes,
            nonce: grant.nonce.as_deref(),
            roles: &grant.roles,
        };
        self.mint(client, &auth, family, access_jti, ctx, "authorization_code").await
    }

    /// A code redeemed before: a replay. The tokens issued from it are revoked.
    async fn code_replayed(&self, client: &Client, redeemed: RedeemedCode, ctx: &RequestContext) -> Result<OAuthError, DomainError> {
        if let Some(family) = redeemed.refresh_family {
            self.storage.revoke_refresh_family(family, self.clock.now()).await?;
        }
        self.deny_access_token(&redeemed.access_jti, redeemed.access_expires_at).await?;
        self.audit_refusal(
            ctx,
            AuditEvent::CodeReplayed {
                client_id: client.id.to_string(),
            },
        )
        .await;
        Ok(OAuthError::invalid_grant(
            "the code was already used; the tokens issued from it are revoked",
        ))
    }

    async fn refresh_grant(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Result<TokenResponse, OAuthError>, DomainError> {
        let token = match params.required("refresh_token") {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let now = self.clock.now();
        let record = match self.storage.consume_refresh_token(&secret_digest(token), now).await? {
            RefreshConsume::Consumed(r) => r,
            RefreshConsume::Reused(r) => {
                self.storage.revoke_refresh_family(r.family_id, now).await?;
                self.audit_refusal(
                    ctx,
                    AuditEvent::RefreshReuseDetected {
                        client_id: r.client_id.to_string(),
                        account_id: r.account_id.to_string(),
                        family_id: r.family_id.to_string(),
                    },
                )
                .await;
                return Ok(Err(OAuthError::invalid_grant(
                    "refresh token reuse detected; the whole token family is revoked",
                )));
            }
            RefreshConsume::Invalid | RefreshConsume::NotFound => {
                return Ok(Err(OAuthError::invalid_grant("unknown, expired or revoked refresh token")));
            }
        };
        if record.client_id != client.id {
            self.storage.revoke_refresh_family(record.family_id, now).await?;
            return Ok(Err(OAuthError::invalid_grant("the refresh token was issued to another client")));
        }
        let scopes = match params.get("scope") {
            None => record.scopes.clone(),
            Some(s) => match Scopes::parse(s) {
                Ok(s) if s.is_subset_of(&record.scopes) => s,
                _ => {
                    return Ok(Err(OAuthError::new(
                        OAuthErrorCode::InvalidScope,
                        "the scope exceeds the original grant",
                    )));
                }
            },
        };
        // The client's policy holds for refreshes too: no renewal past its maximum login age
        // (e.g. PSC's 4 hours) or below its minimum acr.
        let age = self.clock.unix() - record.auth_time;
        if client.max_auth_age.is_some_and(|m| age > m) || !self.meets_client_minimum(client, &record.acr) {
            self.storage.revoke_refresh_family(record.family_id, now).await?;
            return Ok(Err(OAuthError::invalid_grant(
                "the login is too old or too weak for this client; log in again",
            )));
        }
        let Some(account) = self.storage.account(record.account_id).await?.filter(|a| !a.disabled) else {
            self.storage.revoke_refresh_family(record.family_id, now).await?;
            return Ok(Err(inactive_account()));
        };
        let claims = AccountClaims::from(&account);
        // Roles live with the login session: a refresh repeats them while it lasts. Logout
        // revokes the session's refresh tokens; any other refresh after the session is gone
        // carries no roles (fewer rights, never stale extra ones).
        let roles = if scopes.contains("roles") {
            match self.sessions.get(Namespace::Sso, &record.session_id).await? {
                Some(b) => serde_json::from_slice::<crate::domain::records::SsoSession>(&b)
                    .ok()
                    .filter(|s| s.account_id == record.account_id && s.expires_at > self.clock.unix())
                    .map(|s| s.roles)
                    .unwrap_or_default(),
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let auth = Authentication {
            account_id: account.id,
            claims: &claims,
            account_read: true,
            session_id: &record.session_id,
            auth_time: record.auth_time,
            amr: &record.amr,
            acr: &record.acr,
            scopes: &scopes,
            nonce: None,
            roles: &roles,
        };
        self.mint(client, &auth, record.family_id, self.random.token(), ctx, "refresh_token")
            .await
    }

    /// Signs the access and ID tokens, stores a refresh token, records the issuance.
    #[tracing::instrument(skip_all)]
    pub(super) async fn mint(
        &self,
        client: &Client,
        a: &Authentication<'_>,
        family: Uuid,
        access_jti: String,
        ctx: &RequestContext,
        grant_type: &str,
    ) -> Result<Result<TokenResponse, OAuthError>, DomainError> {
        let now = self.clock.now();
        let iat = now.timestamp();
        let s = &self.settings;
        let sub = a.account_id.to_string();
        let mut access = json!({
            "iss": s.issuer, "sub": sub, "aud": client.id.as_str(), "client_id": client.id.as_str(),
            "iat": iat, "exp": iat + s.access_token_ttl_secs, "jti": access_jti,
            "scope": a.scopes.to_string(), "sid": a.session_id, "auth_time": a.auth_time, "acr": a.acr,
        });
        let roles = self.roles_claim(client, a.scopes, a.roles);
        if let Some(r) = &roles {
            // In the access token too: resource servers read it, and userinfo repeats it.
            access["roles"] = r.clone();
        }
        // RFC 9068: access tokens are typed so they cannot pass for ID tokens.
        let access_token = self.signer.sign(SigningAlg::ES256, "at+jwt", &access)?;

        let mut id = Map::new();
        id.insert("iss".into(), json!(s.issuer));
        id.insert("sub".into(), json!(sub));
        id.insert("aud".into(), json!(client.id.as_str()));
        id.insert("iat".into(), json!(iat));
        id.insert("exp".into(), json!(iat + s.id_token_ttl_secs));
        id.insert("auth_time".into(), json!(a.auth_time));
        id.insert("acr".into(), json!(a.acr));
        id.insert("amr".into(), json!(a.amr));
        id.insert("sid".into(), json!(a.session_id));
        id.insert("at_hash".into(), json!(half_hash(&access_token)));
        if let Some(n) = a.nonce {
            id.insert("nonce".into(), json!(n));
        }
        profile_claims(&mut id, a.claims, a.scopes);
        if let Some(r) = roles {
            id.insert("roles".into(), r);
        }
        self.national_claims(client, a.account_id, a.scopes, &mut id).await?;
        let relayed_idnat = id.get("idnat").and_then(Value::as_str).map(str::to_owned);
        let id_token = self.signer.sign(client.id_token_alg, "JWT", &Value::Object(id))?;

        let refresh = client.allow_refresh.then(|| {
            let token = self.random.token();
            let record = RefreshTokenRecord {
                token_digest: secret_digest(&token),
                family_id: family,
                client_id: client.id.clone(),
                account_id: a.account_id,
                session_id: a.session_id.to_owned(),
                scopes: a.scopes.clone(),
                auth_time: a.auth_time,
                amr: a.amr.to_vec(),
                acr: a.acr.to_owned(),
                created_at: now,
                // Rotation never outlives the login: at most the SSO session's lifetime after auth_time.
                expires_at: (now + ChronoDuration::seconds(s.refresh_token_ttl_secs))
                    .min(DateTime::from_timestamp(a.auth_time + s.sso_session_ttl_secs, 0).unwrap_or(now)),
                used_at: None,
                revoked_at: None,
            };
            (token, record)
        });
        let (refresh_token, refresh_record) = refresh.unzip();
        // The refresh token is stored in the same commit as the record of its issuance (one
        // durable group commit). Nothing is handed out before that commit; if it fails the
        // client gets an error and neither the record nor the token exists.
        let issuance = AuditRecord {
            at: now,
            context: ctx.into(),
            event: AuditEvent::TokenIssued {
                account_id: sub,
                client_id: client.id.to_string(),
                grant_type: grant_type.into(),
                acr: a.acr.into(),
                amr: a.amr.to_vec(),
                auth_time: a.auth_time,
                session_id: a.session_id.into(),
                idnat: relayed_idnat,
            },
        };
        let write = refresh_record.map(AuditedWrite::RefreshToken);
        if a.account_read {
            self.audit.record_with(issuance, write).await?;
        } else if !self.audit.record_if_active(a.account_id, issuance, write).await? {
            // Disabled since the login: the signed tokens are dropped, nothing was stored.
            return Ok(Err(inactive_account()));
        }
        Ok(Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: s.access_token_ttl_secs,
            id_token,
            refresh_token,
            scope: a.scopes.to_string(),
        }))
    }

    /// The `roles` claim: asked for with the `roles` scope, released to local applications,
    /// and to PSC only when `[psc] release_roles` says so. Present (maybe empty) when released,
    /// so an application can tell "no role" from "not asked".
    fn roles_claim(&self, client: &Client, scopes: &Scopes, roles: &[String]) -> Option<Value> {
        let allowed = client.kind == ClientKind::Local || self.settings.psc.release_roles;
        (scopes.contains("roles") && allowed).then(|| json!(roles))
    }

    pub(super) async fn deny_access_token(&self, jti: &str, exp: i64) -> Result<(), DomainError> {
        let ttl = (exp - self.clock.unix()).max(1) as u64;
        self.sessions
            .put(Namespace::RevokedAccessToken, jti, b"1", Duration::from_secs(ttl))
            .await?;
        Ok(())
    }
}

fn inactive_account() -> OAuthError {
    OAuthError::invalid_grant("the account is no longer active")
}

/// Standard claims released by scope (OIDC Core §5.4).
pub(super) fn profile_claims(out: &mut Map<String, Value>, a: &AccountClaims, scopes: &Scopes) {
    if scopes.contains("profile") {
        out.insert("name".into(), json!(a.display_name));
        out.insert("preferred_username".into(), json!(a.username));
        if let Some(g) = &a.given_name {
            out.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &a.family_name {
            out.insert("family_name".into(), json!(f));
        }
    }
    if scopes.contains("email")
        && let Some(e) = &a.email
    {
        out.insert("email".into(), json!(e));
        // Local accounts' addresses are set by an admin, not proven by the user.
        out.insert("email_verified".into(), json!(false));
    }
}
