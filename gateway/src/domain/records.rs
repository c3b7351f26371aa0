//! Short-lived state kept in the session store (SSO sessions, pending logins, codes) and the
//! durable records kept in SQL (refresh tokens, signing keys).
use crate::domain::account::AccountClaims;
use crate::domain::audit::AuditRecord;
use crate::protocol::{ClientId, CodeChallenge, Prompt, RedirectUri, Scopes};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A browser's single sign-on session: who logged in, when and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SsoSession {
    pub id: String,
    pub account_id: Uuid,
    pub auth_time: i64,
    /// RFC 8176 method references of the factors checked at `auth_time`.
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// Relais roles granted at login (directory groups mapped by `[directories.roles]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// When the session was opened (unix seconds); 0 for sessions stored before this field.
    #[serde(default)]
    pub created_at: i64,
    /// The address the login came from, when known (shown on the sessions lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The person's claims as read at login; `None` in sessions stored by versions before
    /// 2026-11-27 (their codes carry none, and the account is read at the code exchange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<AccountClaims>,
}

/// A validated authorization request, parked while the user logs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub acr_values: Vec<String>,
    pub ui_locales: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub id: String,
    pub request: AuthorizationRequest,
    /// Form token: the login form must echo it (CSRF).
    pub csrf: String,
    /// Digest of the value of the browser-binding cookie set with the login page, so that a
    /// login started in one browser cannot be finished in another (login CSRF).
    pub browser_binding_digest: String,
    pub failed_attempts: u32,
    pub expires_at: i64,
    /// Set once the password is checked (or for a step-up of a live session) when a security
    /// key must follow. Absent in logins parked by older versions.
    #[serde(default)]
    pub second_factor: Option<SecondFactorStage>,
    /// Roles the first factor granted (or the stepped-up session had), for the new session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A login past its first factor, waiting for a security key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondFactorStage {
    pub account_id: Uuid,
    /// Flattened: `username` and `display_name` keep their place in stages stored before the
    /// other claims were added.
    #[serde(flatten)]
    pub claims: AccountClaims,
    /// The SSO session being stepped up (no password asked again), if any.
    pub step_up_of: Option<String>,
    /// A key of the person was verified in this login: another key may now be enrolled.
    #[serde(default)]
    pub key_verified: bool,
}

/// An authorization code's grant, stored under the code's digest and consumed exactly once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Scopes,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub account_id: Uuid,
    pub session_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The person's claims for the tokens; `None` in codes issued by versions before 2026-11-27
    /// (the account is then read at the exchange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<AccountClaims>,
}

/// Left behind when a code is redeemed, so a replay can be told from a typo and the tokens
/// issued from the code revoked (RFC 6749 §4.1.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedeemedCode {
    pub client_id: ClientId,
    pub refresh_family: Option<Uuid>,
    pub access_jti: String,
    pub access_expires_at: i64,
}

/// A write that belongs with an audit record and is committed in the same transaction: the
/// state change exists exactly when the record of it does, and the pair costs one durable
/// commit (group-committed with other records) instead of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditedWrite {
    /// The refresh token issued with `token_issued`.
    RefreshToken(RefreshTokenRecord),
    /// A security key's updated credential (sign counter) and last use, with `fido2_authentication`.
    SecurityKeyUse {
        key_id: Uuid,
        credential: String,
        at: DateTime<Utc>,
    },
}

/// One record for the audit chain's next group commit, with the writes it is about and,
/// maybe, the account that must still be active for either to be made.
#[derive(Debug, Clone)]
pub struct AuditAppend {
    pub record: AuditRecord,
    pub writes: Vec<AuditedWrite>,
    /// Checked in the commit's own transaction: if this account is disabled or gone, neither
    /// the record nor the writes are made. The code exchange uses it, so that tokens are not
    /// issued to a person disabled since the login without an account read per request.
    pub only_if_active: Option<Uuid>,
}

/// A refresh token as stored (by digest). Tokens of one login form a family; reuse of a
/// rotated-out token revokes the whole family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_digest: String,
    pub family_id: Uuid,
    pub client_id: ClientId,
    pub account_id: Uuid,
    pub session_id: String,
    pub scopes: Scopes,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshConsume {
    /// This call marked the token used; it is the one that may rotate it.
    Consumed(RefreshTokenRecord),
    /// The token had already been used: someone replays it.
    Reused(RefreshTokenRecord),
    /// Revoked or expired.
    Invalid,
    NotFound,
}

/// Signing algorithms Relais signs with. ES256 by default; RS256 only for clients that ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlg {
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// A signing key as stored: the private key is sealed (AES-256-GCM) under the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub sealed_private_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// When set, the key no longer signs; it is published until `retire_at`.
    pub rotated_at: Option<DateTime<Utc>>,
    pub retire_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What versions before 2026-11-27 stored (in Redis, during a rolling upgrade) still reads:
    /// a session and a code without claims, a key stage with only a username and display name.
    #[test]
    fn state_stored_before_the_claims_still_reads() {
        let session: SsoSession = serde_json::from_str(
            r#"{"id":"s","account_id":"6f1c5b1e-2d7a-4c1e-9a57-1b1f0f7d2c11","auth_time":1,"amr":["pwd"],"acr":"loa1","expires_at":2}"#,
        )
        .unwrap();
        assert_eq!(session.claims, None);
        let stage: SecondFactorStage = serde_json::from_str(
            r#"{"account_id":"6f1c5b1e-2d7a-4c1e-9a57-1b1f0f7d2c11","username":"alice","display_name":"Alice Martin","step_up_of":null}"#,
        )
        .unwrap();
        assert_eq!(
            (stage.claims.username.as_str(), stage.claims.display_name.as_str()),
            ("alice", "Alice Martin")
        );
        assert_eq!(stage.claims.email, None);
        let grant: CodeGrant = serde_json::from_str(
            r#"{"client_id":"web","redirect_uri":"https://app.example/cb","scopes":["openid"],"nonce":null,"code_challenge":null,
                "account_id":"6f1c5b1e-2d7a-4c1e-9a57-1b1f0f7d2c11","session_id":"s","auth_time":1,"amr":["pwd"],"acr":"loa1","expires_at":2}"#,
        )
        .unwrap();
        assert_eq!(grant.claims, None);
        // And the new form round-trips, flattened in the stage as before.
        let json = serde_json::to_value(&stage).unwrap();
        assert_eq!(json["username"], "alice");
        let back: SecondFactorStage = serde_json::from_value(json).unwrap();
        assert_eq!(back.claims, stage.claims);
    }
}
