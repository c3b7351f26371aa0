//! Local accounts (sites without a directory) and their argon2id password hashes.
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordVerifier, Version, password_hash::PasswordHasher};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Immutable, never reused: the `sub` of every token.
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub disabled: bool,
    /// `<directory name>:<stable id>` for an account that lives in a directory (LDAP/AD).
    pub directory_id: Option<String>,
}

/// What tokens say about a person (OIDC `profile` and `email` claims), as read from the account
/// when the person logged in. It travels with the login (second-factor stage, SSO session, code
/// grant) so that issuing a code or redeeming one needs no account read: the claims are those
/// of the authentication, as OIDC Core §2 describes the ID Token. Whether the account is still
/// active is checked at the code exchange all the same (in the audit record's transaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountClaims {
    pub username: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl From<&Account> for AccountClaims {
    fn from(a: &Account) -> Self {
        Self {
            username: a.username.clone(),
            display_name: a.display_name.clone(),
            given_name: a.given_name.clone(),
            family_name: a.family_name.clone(),
            email: a.email.clone(),
        }
    }
}

/// Whether the people search's `q` (lower-cased) is in the account's username, display name
/// or email, case-insensitively.
pub fn matches(a: &Account, q: &str) -> bool {
    a.username.contains(q) || a.display_name.to_lowercase().contains(q) || a.email.as_deref().is_some_and(|e| e.to_lowercase().contains(q))
}

/// Normalises a typed username: trimmed and lower-cased, 1–128 characters, no controls.
pub fn normalise_username(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 128 || t.chars().any(char::is_control) {
        return None;
    }
    Some(t.to_lowercase())
}

/// argon2id cost parameters (config `[passwords]`). Defaults follow OWASP's 2024 advice.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub min_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            min_length: 12,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {0} characters")]
    TooShort(usize),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl PasswordPolicy {
    fn hasher(&self) -> Result<Argon2<'static>, PasswordError> {
        let params =
            Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks that argon2 accepts the cost parameters.
    pub fn check(&self) -> Result<(), PasswordError> {
        self.hasher().map(|_| ())
    }

    /// Hashes `password` with the given 16 random bytes of salt (randomness is an input).
    pub fn hash(&self, password: &str, salt: &[u8; 16]) -> Result<String, PasswordError> {
        if password.chars().count() < self.min_length {
            return Err(PasswordError::TooShort(self.min_length));
        }
        self.hash_unchecked(password, salt)
    }

    fn hash_unchecked(&self, password: &str, salt: &[u8; 16]) -> Result<String, PasswordError> {
        let h: PasswordHash = self
            .hasher()?
            .hash_password_with_salt(password.as_bytes(), salt)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(h.to_string())
    }

    /// Checks a password against a stored PHC string. The cost parameters come from the
    /// stored hash, so old hashes keep verifying after the policy changes.
    pub fn verify(password: &str, phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
            Err(_) => false,
        }
    }

    /// A hash of a random password: verified against when the account is unknown, so that
    /// "no such user" costs the same time as "wrong password".
    /// Same cost parameters as real hashes; fails only if the parameters are invalid (which
    /// `Config::check` refuses at start).
    pub fn dummy_hash(&self) -> Result<String, PasswordError> {
        self.hash_unchecked("relais-timing-equaliser-not-a-password", &[7u8; 16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hash_and_verify() {
        let p = PasswordPolicy {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            min_length: 4,
        };
        let h = p.hash("correct horse", &[1; 16]).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(PasswordPolicy::verify("correct horse", &h));
        assert!(!PasswordPolicy::verify("wrong horse", &h));
        assert!(matches!(p.hash("abc", &[1; 16]), Err(PasswordError::TooShort(4))));
    }
    #[test]
    fn usernames_are_normalised() {
        assert_eq!(normalise_username("  Alice "), Some("alice".into()));
        assert_eq!(normalise_username("a\u{0}b"), None);
        assert_eq!(normalise_username(""), None);
    }
}
