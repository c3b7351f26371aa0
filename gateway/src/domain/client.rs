//! Registered relying parties (OAuth clients) and their per-client policy.
use crate::domain::records::SigningAlg;
use crate::protocol::{ClientId, RedirectUri};
use serde::{Deserialize, Serialize};

/// How a client proves its identity at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// Public client (native or browser app): no secret, PKCE mandatory.
    None,
}

impl TokenAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// What kind of relying party this is. PSC gets its own profile (issue #5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Local,
    Psc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub auth_method: TokenAuthMethod,
    /// SHA-256 digest of the generated secret (see `crypto::secret_digest`).
    pub secret_digest: Option<String>,
    /// Public keys for `private_key_jwt` (a JWK Set, inline).
    pub jwks: Option<serde_json::Value>,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub id_token_alg: SigningAlg,
    /// `Some(alg)`: userinfo answers as a signed JWT (`application/jwt`).
    pub userinfo_signed_alg: Option<SigningAlg>,
    /// Lowest acr this client accepts (policy); `None` accepts any.
    pub min_acr: Option<String>,
    /// Re-authentication required when the login is older than this (seconds).
    pub max_auth_age: Option<i64>,
    pub allow_refresh: bool,
    /// May introspect tokens issued to other clients (resource servers).
    pub may_introspect: bool,
    pub enabled: bool,
    /// Roles (from directory groups, `[directories.roles]`) of which a person needs one to use
    /// this application; empty: anyone who logs in.
    pub required_roles: Vec<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth_method == TokenAuthMethod::None
    }
    /// Whether a person with `roles` may use this application.
    pub fn admits(&self, roles: &[String]) -> bool {
        self.required_roles.is_empty() || roles.iter().any(|r| self.required_roles.contains(r))
    }
    pub fn redirect_uri_registered(&self, uri: &RedirectUri) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }
}
