//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523) and public clients.
use super::{Params, Provider};
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::client::{Client, TokenAuthMethod};
use crate::domain::crypto::{ct_eq, secret_digest};
use crate::domain::ports::Namespace;
use crate::protocol::{ClientId, OAuthError};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use std::time::Duration;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Algorithms accepted for client assertions. No `none`, no HMAC: an HS256 assertion "signed"
/// with the client's public key must never verify.
const ASSERTION_ALGS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// What the client presented, however it presented it.
#[derive(Debug, Default, Clone)]
pub struct ClientCredentials {
    /// From `Authorization: Basic`, already form-url-decoded (RFC 6749 §2.3.1).
    pub basic: Option<(String, String)>,
}

impl Provider {
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_client(
        &self,
        creds: &ClientCredentials,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Result<Client, OAuthError>, DomainError> {
        let result = self.try_authenticate_client(creds, params).await?;
        if let Err((method, claimed, e)) = &result {
            self.audit_refusal(
                ctx,
                AuditEvent::ClientAuthFailed {
                    client_id: claimed.clone(),
                    method: method.to_string(),
                    reason: e.description.clone(),
                },
            )
            .await;
        }
        Ok(result.map_err(|(_, _, e)| e))
    }

    async fn try_authenticate_client(
        &self,
        creds: &ClientCredentials,
        params: &Params,
    ) -> Result<Result<Client, (&'static str, Option<String>, OAuthError)>, DomainError> {
        let form_id = params.get("client_id");
        let claimed = form_id
            .or(creds.basic.as_ref().map(|b| b.0.as_str()))
            .map(|c| c.chars().take(64).collect::<String>());
        let fail = |method: &'static str, why: &str| Ok(Err((method, claimed.clone(), OAuthError::invalid_client(why.to_owned()))));

        if let Some(kind) = params.get("client_assertion_type") {
            if creds.basic.is_some() || params.get("client_secret").is_some() {
                return fail("private_key_jwt", "use one client authentication method, not two");
            }
            if kind != JWT_BEARER {
                return fail("private_key_jwt", "unsupported client_assertion_type");
            }
            let Some(assertion) = params.get("client_assertion") else {
                return fail("private_key_jwt", "client_assertion is missing");
            };
            return Ok(self
                .check_assertion(assertion, form_id)
                .await?
                .map_err(|e| ("private_key_jwt", claimed.clone(), e)));
        }
        let (id, secret, method) = match (&creds.basic, params.get("client_secret")) {
            (Some(_), Some(_)) => return fail("client_secret", "use one client authentication method, not two"),
            (Some((id, secret)), None) => {
                if form_id.is_some_and(|f| f != id) {
                    return fail("client_secret_basic", "client_id does not match the Authorization header");
                }
                (id.as_str(), Some(secret.as_str()), TokenAuthMethod::ClientSecretBasic)
            }
            (None, Some(secret)) => match form_id {
                Some(id) => (id, Some(secret), TokenAuthMethod::ClientSecretPost),
                None => return fail("client_secret_post", "client_id is missing"),
            },
            (None, None) => match form_id {
                Some(id) => (id, None, TokenAuthMethod::None),
                None => return fail("none", "client authentication is missing"),
            },
        };
        let m = method.as_str();
        let Ok(client_id) = ClientId::parse(id) else {
            return fail(m, "client_id is malformed");
        };
        let Some(client) = self.storage.client(&client_id).await?.filter(|c| c.enabled) else {
            return fail(m, "unknown client or bad credentials");
        };
        if client.auth_method != method {
            return fail(m, "this client is registered for another authentication method");
        }
        if let Some(secret) = secret {
            let ok = client
                .secret_digest
                .as_ref()
                .is_some_and(|d| ct_eq(d.as_bytes(), secret_digest(secret).as_bytes()));
            if !ok {
                return fail(m, "unknown client or bad credentials");
            }
        }
        Ok(Ok(client))
    }

    /// RFC 7523 §3: signature by a registered key, iss = sub = client_id, aud = our token
    /// endpoint or issuer, a short lifetime and a `jti` never seen before.
    async fn check_assertion(&self, assertion: &str, form_id: Option<&str>) -> Result<Result<Client, OAuthError>, DomainError> {
        let bad = |why: &str| Ok(Err(OAuthError::invalid_client(format!("client assertion rejected: {why}"))));
        if assertion.len() > 8192 {
            return bad("too long");
        }
        // decode_header fails on alg "none" and on anything it does not know.
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return bad("malformed header or unsupported alg");
        };
        if !ASSERTION_ALGS.contains(&header.alg) {
            return bad("alg not allowed");
        }
        // The issuer names the client; read it unverified only to find the client's keys.
        let Some(iss) = unverified_claim(assertion, "iss") else {
            return bad("iss is missing");
        };
        if form_id.is_some_and(|f| f != iss) {
            return bad("client_id does not match the assertion issuer");
        }
        let Ok(client_id) = ClientId::parse(&iss) else {
            return bad("iss is malformed");
        };
        let Some(client) = self.storage.client(&client_id).await?.filter(|c| c.enabled) else {
            return bad("unknown client");
        };
        if client.auth_method != TokenAuthMethod::PrivateKeyJwt {
            return bad("this client is not registered for private_key_jwt");
        }
        let Some(jwks) = client.jwks.clone().and_then(|j| serde_json::from_value::<JwkSet>(j).ok()) else {
            return bad("the client has no usable registered keys");
        };
        let jwk = match &header.kid {
            Some(kid) => jwks.find(kid),
            None if jwks.keys.len() == 1 => jwks.keys.first(),
            None => None,
        };
        let Some(jwk) = jwk else {
            return bad("no registered key matches the kid");
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            return bad("registered key is unusable");
        };
        let mut v = Validation::new(header.alg);
        v.set_audience(&[self.settings.token_endpoint(), self.settings.issuer.clone()]);
        v.set_issuer(&[client_id.as_str()]);
        v.sub = Some(client_id.to_string());
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        v.leeway = 30;
        let data = match jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v) {
            Ok(d) => d,
            Err(e) => return bad(&format!("{:?}", e.kind())),
        };
        let now = self.clock.unix();
        let exp = data.claims.get("exp").and_then(|e| e.as_i64()).unwrap_or(0);
        if exp <= now - 30 {
            return bad("expired");
        }
        let iat = data.claims.get("iat").and_then(|e| e.as_i64()).unwrap_or(now);
        if exp - iat.min(now) > self.settings.max_assertion_lifetime_secs {
            return bad("lifetime too long");
        }
        let Some(jti) = data
            .claims
            .get("jti")
            .and_then(|j| j.as_str())
            .filter(|j| !j.is_empty() && j.len() <= 256)
        else {
            return bad("jti is missing");
        };
        let ttl = Duration::from_secs((exp - now + 60).max(60) as u64);
        let first_use = self
            .sessions
            .put_if_absent(Namespace::AssertionJti, &format!("{}:{}", client_id, secret_digest(jti)), b"1", ttl)
            .await?;
        if !first_use {
            return bad("jti replayed");
        }
        Ok(Ok(client))
    }
}

/// A string claim of a JWT payload, without verifying anything.
pub(super) fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = crate::domain::crypto::b64url_decode(payload)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get(name)?.as_str().map(str::to_owned)
}
