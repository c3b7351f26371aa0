//! Small pure helpers: hashing and comparison of secrets, base64url.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The storage key of a bearer secret (code, refresh token, client secret). Relais generates
/// these with 256 bits of entropy, so one SHA-256 is enough: a slow password hash would only
/// cost latency on the token endpoint without adding security.
pub fn secret_digest(secret: &str) -> String {
    b64url(&sha256(secret.as_bytes()))
}

/// Constant-time equality, for comparing secrets and their digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// PKCE S256: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    ct_eq(b64url(&sha256(verifier.as_bytes())).as_bytes(), challenge.as_bytes())
}

/// OIDC `at_hash`/`c_hash` for SHA-256 based algorithms: left half of the digest.
pub fn half_hash(value: &str) -> String {
    b64url(&sha256(value.as_bytes())[..16])
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK: what an auditor compares
/// with the key published in Relais' JWKS. `None` for another kind of key.
pub fn ec_jwk_thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let member = |k: &str| jwk.get(k).and_then(serde_json::Value::as_str);
    if member("kty") != Some("EC") {
        return None;
    }
    // The required members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = format!(
        r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
        serde_json::Value::from(member("crv")?),
        serde_json::Value::from(member("x")?),
        serde_json::Value::from(member("y")?)
    );
    Some(b64url(&sha256(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pkce_rfc7636_appendix_b() {
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    /// RFC 7517 appendix A.1's EC key; the value is SHA-256 over RFC 7638's canonical form,
    /// computed apart (Python hashlib).
    #[test]
    fn ec_thumbprint_of_rfc7517_a1() {
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "1", "use": "enc",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YilurN5ZGQuJz9xFaZ-6CMHLQUhRUyXIVjc"});
        assert_eq!(
            ec_jwk_thumbprint(&jwk).as_deref(),
            Some("FD9n4_weCGzkr_ehT4bdvSFL3N7yvgPWi7qdnoEYFRg")
        );
        assert_eq!(ec_jwk_thumbprint(&serde_json::json!({"kty": "RSA", "n": "x", "e": "AQAB"})), None);
    }
}
