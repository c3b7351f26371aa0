//! FIDO2 security keys as the domain sees them: stored keys, enrolment codes and the outcome of
//! a ceremony. The WebAuthn protocol itself (webauthn-rs) stays in `adapters::webauthn`; the
//! credential is an opaque JSON string here.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A person's registered security key (table `security_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityKeyRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    /// The WebAuthn credential id, base64url. Unique across all accounts.
    pub credential_id: String,
    /// The adapter's serialised credential (public key, sign counter, attestation).
    pub credential: String,
    /// The authenticator model, as attested at registration.
    pub aaguid: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SecurityKeyRecord {
    pub fn active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A one-time code an admin hands to a person so they can enrol their first key. Only the
/// digest is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    pub digest: String,
    pub account_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// Options for the browser (JSON for `navigator.credentials`) and the state to keep on the
/// server until the answer comes back.
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub options: serde_json::Value,
    pub state: String,
}

/// Who a key is registered for.
#[derive(Debug, Clone)]
pub struct KeyHolder {
    pub account_id: Uuid,
    pub username: String,
    pub display_name: String,
}

/// A key that passed registration: attestation trusted, user verification done.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub credential_id: String,
    pub credential: String,
    pub aaguid: Uuid,
}

/// A successful assertion by one of the person's keys.
#[derive(Debug, Clone)]
pub struct KeyAssertion {
    /// `SecurityKeyRecord::id` of the key that signed.
    pub key_id: Uuid,
    /// The credential with its new sign counter, to store.
    pub credential: String,
    pub user_verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Fido2Error {
    /// The key's attestation is not in the trust policy (unknown CA, AAGUID not allowed, no
    /// attestation, synced passkey).
    #[error("this security key model is not allowed: {0}")]
    NotAllowed(String),
    /// The sign counter went backwards: the key may have been cloned.
    #[error("the security key's signature counter went backwards")]
    CounterRegression,
    /// Anything else wrong with the browser's answer (wrong key, bad signature, no UV).
    #[error("the security key's answer was refused: {0}")]
    Rejected(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the session store keeps between `options` and `finish` (namespace `webauthn`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCeremony {
    pub register: bool,
    pub state: String,
    /// Digest of the enrolment code checked when the registration started; consumed at finish.
    pub enrolment_code_digest: Option<String>,
}

/// Normalises a typed enrolment code: case, spaces and dashes do not matter.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Letters and digits that cannot be confused when read aloud or typed (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Formats random bytes as a code of 16 characters in groups of four (about 79 bits).
pub fn format_code(random: &[u8; 16]) -> String {
    let chars: Vec<char> = random
        .iter()
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_and_normalise_back() {
        let c = format_code(&[7u8; 16]);
        assert_eq!(c.len(), 19);
        assert_eq!(normalise_code(&c.to_lowercase().replace('-', " ")), c.replace('-', ""));
    }
}
