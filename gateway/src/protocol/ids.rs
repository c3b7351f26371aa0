//! Newtypes for values that cross the trust boundary. `parse` is the only way in.
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct ParseError {
    pub what: &'static str,
    pub why: String,
}

fn err(what: &'static str, why: impl Into<String>) -> ParseError {
    ParseError { what, why: why.into() }
}

/// Longest identifier-like value we accept anywhere; longer input is hostile or broken.
pub const MAX_ID_LEN: usize = 255;

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// A registered client's identifier: 1–255 printable ASCII characters, no spaces or colons
/// (a colon would break HTTP Basic authentication).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);
string_newtype!(ClientId);

impl ClientId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > MAX_ID_LEN {
            return Err(err("client_id", "must be 1 to 255 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(err("client_id", "only printable ASCII without ':' is allowed"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A redirect URI: absolute, no fragment, `https` (or `http` on a loopback host for native
/// apps and development). Registered and requested values are compared as exact strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(String);
string_newtype!(RedirectUri);

impl RedirectUri {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() > 2048 {
            return Err(err("redirect_uri", "longer than 2048 characters"));
        }
        let url = url::Url::parse(s).map_err(|e| err("redirect_uri", e.to_string()))?;
        if url.fragment().is_some() {
            return Err(err("redirect_uri", "must not contain a fragment"));
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                if !loopback {
                    return Err(err("redirect_uri", "http is only allowed on a loopback host"));
                }
            }
            other => return Err(err("redirect_uri", format!("scheme {other} is not allowed"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("redirect_uri", "must not carry credentials"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The URI with the given parameters appended to its query string.
    pub fn with_params(&self, params: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.0).expect("parsed at construction");
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        url.to_string()
    }
}

/// An Authentication Context Class Reference value (OIDC Core §2). Which values exist and how
/// they rank is policy (config), not protocol; here we only check the shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acr(String);
string_newtype!(Acr);

impl Acr {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err("acr", "must be 1 to 128 printable ASCII characters"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A set of scope tokens (RFC 6749 §3.3), kept in request order without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut out: Vec<String> = Vec::new();
        for tok in s.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if tok.len() > 128
                || !tok
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(err("scope", "contains an invalid scope token"));
            }
            if !out.iter().any(|t| t == tok) {
                out.push(tok.to_owned());
            }
        }
        if out.len() > 32 {
            return Err(err("scope", "too many scope tokens"));
        }
        Ok(Self(out))
    }
    pub fn contains(&self, s: &str) -> bool {
        self.0.iter().any(|t| t == s)
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    /// Keeps only the scopes `allowed` accepts.
    pub fn retain(&mut self, allowed: impl Fn(&str) -> bool) {
        self.0.retain(|s| allowed(s));
    }
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// PKCE code challenge (RFC 7636): only the S256 method is supported; `plain` is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, ParseError> {
        match method {
            Some("S256") => {}
            None => return Err(err("code_challenge_method", "must be S256 (plain is not supported)")),
            Some(_) => return Err(err("code_challenge_method", "only S256 is supported")),
        }
        // BASE64URL(SHA256(verifier)) without padding is always 43 characters.
        if challenge.len() != 43 || !challenge.bytes().all(is_unreserved) {
            return Err(err("code_challenge", "must be a 43-character base64url S256 value"));
        }
        Ok(Self(challenge.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// PKCE code verifier: 43–128 unreserved characters (RFC 7636 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if !(43..=128).contains(&s.len()) || !s.bytes().all(is_unreserved) {
            return Err(err("code_verifier", "must be 43 to 128 unreserved characters"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The OIDC `prompt` parameter. `none` cannot be combined with anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

impl Prompt {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut p = Prompt::default();
        for tok in s.split(' ').filter(|t| !t.is_empty()) {
            match tok {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => p.select_account = true,
                other => return Err(err("prompt", format!("unknown value {other:?}"))),
            }
        }
        if p.none && (p.login || p.consent || p.select_account) {
            return Err(err("prompt", "none cannot be combined with other values"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        assert!(RedirectUri::parse("https://rp.example/cb").is_ok());
        assert!(RedirectUri::parse("http://localhost:9000/cb").is_ok());
        assert!(RedirectUri::parse("http://evil.example/cb").is_err());
        assert!(RedirectUri::parse("https://rp.example/cb#x").is_err());
        assert!(RedirectUri::parse("javascript:alert(1)").is_err());
        assert!(RedirectUri::parse("https://u:p@rp.example/cb").is_err());
    }

    #[test]
    fn client_id_rejects_colon_and_controls() {
        assert!(ClientId::parse("psc").is_ok());
        assert!(ClientId::parse("a:b").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse(&"x".repeat(256)).is_err());
    }

    #[test]
    fn pkce_only_s256() {
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(CodeChallenge::parse(c, Some("S256")).is_ok());
        assert!(CodeChallenge::parse(c, Some("plain")).is_err());
        assert!(CodeChallenge::parse(c, None).is_err());
        assert!(CodeChallenge::parse("short", Some("S256")).is_err());
    }

    #[test]
    fn prompt_none_is_exclusive() {
        assert!(Prompt::parse("none").unwrap().none);
        assert!(Prompt::parse("none login").is_err());
        assert!(Prompt::parse("bogus").is_err());
    }

    #[test]
    fn scopes_dedupe_and_reject_bad_chars() {
        let s = Scopes::parse("openid  profile openid").unwrap();
        assert_eq!(s.to_string(), "openid profile");
        assert!(Scopes::parse("open\"id").is_err());
    }
}
