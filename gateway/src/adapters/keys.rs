//! Signing keys: generated here, sealed under the key-encryption key (AES-256-GCM) in SQL,
//! published in the JWKS, rotated with an overlap window. Implements the `Signer` port.
//!
//! Signing uses aws-lc-rs directly (one parsed key pair kept in memory) rather than
//! jsonwebtoken, which re-parses the PKCS#8 document on every signature.
use crate::domain::crypto::{b64url, b64url_decode, sha256};
use crate::domain::ports::{KeyError, Signer, Storage, StoreError};
use crate::domain::records::{SigningAlg, StoredSigningKey};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key-encryption key: {0}")]
    Kek(String),
    #[error("cannot unseal signing key {0}: wrong key-encryption key or corrupted row")]
    Unseal(String),
    #[error("key generation failed")]
    Generate,
}

/// The key-encryption key (32 bytes) that seals private keys at rest.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(***)")
    }
}

impl Kek {
    /// From base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, KeyStoreError> {
        use base64::Engine;
        let s = s.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
            .ok()
            .or_else(|| b64url_decode(s.trim_end_matches('=')))
            .ok_or_else(|| KeyStoreError::Kek("not valid base64".into()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyStoreError::Kek("must decode to exactly 32 bytes".into()))?;
        Ok(Self(arr))
    }

    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        aws_lc_rs::rand::fill(&mut b).expect("system randomness");
        Self(b)
    }

    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte key"))
    }

    /// nonce || ciphertext || tag; the kid and alg are bound as associated data so a sealed
    /// key cannot be moved to another row.
    fn seal(&self, kid: &str, alg: SigningAlg, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
        let mut buf = plaintext.to_vec();
        let aad = format!("{kid}|{}", alg.as_str());
        self.aead()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
            .expect("seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    fn open(&self, kid: &str, alg: SigningAlg, sealed: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyStoreError::Unseal(kid.into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyStoreError::Unseal(kid.into()))?;
        let mut buf = ct.to_vec();
        let aad = format!("{kid}|{}", alg.as_str());
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| KeyStoreError::Unseal(kid.into()))?;
        Ok(plain.to_vec())
    }
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct LoadedKey {
    kid: String,
    alg: SigningAlg,
    pair: Pair,
    public_jwk: Value,
    signs: bool,
}

impl LoadedKey {
    fn from_pkcs8(kid: String, alg: SigningAlg, pkcs8: &[u8], signs: bool) -> Result<Self, KeyStoreError> {
        let bad = || KeyStoreError::Unseal(kid.clone());
        let (pair, mut jwk) = match alg {
            SigningAlg::ES256 => {
                let p = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| bad())?;
                let pt = p.public_key().as_ref().to_vec(); // 0x04 || x || y
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64url(&pt[1..33]), "y": b64url(&pt[33..65])});
                (Pair::Ec(p), jwk)
            }
            SigningAlg::RS256 => {
                let p = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| bad())?;
                let pk = p.public_key();
                let jwk = json!({"kty": "RSA", "n": b64url(pk.modulus().big_endian_without_leading_zero()), "e": b64url(pk.exponent().big_endian_without_leading_zero())});
                (Pair::Rsa(p), jwk)
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(alg.as_str());
        Ok(Self {
            kid,
            alg,
            pair,
            public_jwk: jwk,
            signs,
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.pair {
            Pair::Ec(p) => p
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign("ecdsa".into())),
            Pair::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign("rsa".into()))?;
                Ok(sig)
            }
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.pair {
            Pair::Ec(p) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p.public_key().as_ref())
                .verify(msg, sig)
                .is_ok(),
            Pair::Rsa(p) => UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, p.public_key().as_ref())
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

/// Generates a new private key of `alg` as PKCS#8 DER.
fn generate_pkcs8(alg: SigningAlg) -> Result<Vec<u8>, KeyStoreError> {
    match alg {
        SigningAlg::ES256 => {
            let p = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyStoreError::Generate)?;
            Ok(p.to_pkcs8v1().map_err(|_| KeyStoreError::Generate)?.as_ref().to_vec())
        }
        SigningAlg::RS256 => {
            let p = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyStoreError::Generate)?;
            Ok(p.as_der().map_err(|_| KeyStoreError::Generate)?.as_ref().to_vec())
        }
    }
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<LoadedKey>>,
    active: HashMap<SigningAlg, Arc<LoadedKey>>,
    jwks: Value,
}

/// The keys this replica signs and verifies with. Reloaded from SQL on a schedule, so a
/// rotation done by `relais keys rotate` (or another replica) reaches every replica.
pub struct KeyRing {
    kek: Kek,
    set: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    /// Loads the keys, creating the first key of each algorithm if none exists.
    pub async fn load(storage: &dyn Storage, kek: Kek, now: DateTime<Utc>) -> Result<Self, KeyStoreError> {
        let ring = Self {
            kek,
            set: RwLock::new(Arc::new(KeySet::default())),
        };
        let stored = storage.signing_keys().await?;
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            if !stored.iter().any(|k| k.alg == alg && k.rotated_at.is_none()) {
                ring.create_key(storage, alg, now).await?;
            }
        }
        ring.reload(storage, now).await?;
        Ok(ring)
    }

    async fn create_key(&self, storage: &dyn Storage, alg: SigningAlg, now: DateTime<Utc>) -> Result<StoredSigningKey, KeyStoreError> {
        let pkcs8 = generate_pkcs8(alg)?;
        // kid: a digest of the key material, stable and meaningless.
        let kid = b64url(&sha256(&pkcs8)[..12]);
        let key = StoredSigningKey {
            sealed_private_key: self.kek.seal(&kid, alg, &pkcs8),
            kid,
            alg,
            created_at: now,
            rotated_at: None,
            retire_at: None,
        };
        storage.insert_signing_key(&key).await?;
        Ok(key)
    }

    /// Re-reads keys from storage and swaps the set in one step.
    pub async fn reload(&self, storage: &dyn Storage, now: DateTime<Utc>) -> Result<(), KeyStoreError> {
        let stored = storage.signing_keys().await?;
        let mut set = KeySet::default();
        let mut keys = Vec::new();
        for k in stored.into_iter().filter(|k| k.retire_at.is_none_or(|r| r > now)) {
            let pkcs8 = self.kek.open(&k.kid, k.alg, &k.sealed_private_key)?;
            let loaded = Arc::new(LoadedKey::from_pkcs8(k.kid.clone(), k.alg, &pkcs8, k.rotated_at.is_none())?);
            // Stored oldest first: the newest signing key of an algorithm wins.
            if loaded.signs {
                set.active.insert(k.alg, loaded.clone());
            }
            keys.push(loaded.public_jwk.clone());
            set.by_kid.insert(k.kid, loaded);
        }
        set.jwks = json!({ "keys": keys });
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes a new key of `alg` the signing key; the previous ones stay published for
    /// `overlap` so that tokens they signed still verify, then leave the JWKS.
    pub async fn rotate(
        &self,
        storage: &dyn Storage,
        alg: SigningAlg,
        overlap: ChronoDuration,
        now: DateTime<Utc>,
    ) -> Result<String, KeyStoreError> {
        let key = self.create_key(storage, alg, now).await?;
        storage.rotate_out_signing_keys(alg, &key.kid, now, now + overlap).await?;
        storage.delete_retired_signing_keys(now).await?;
        self.reload(storage, now).await?;
        Ok(key.kid)
    }

    /// (kid, alg, signing) of every published key, for `relais keys list`.
    pub fn describe(&self) -> Vec<(String, SigningAlg, bool)> {
        let set = self.current();
        let mut v: Vec<_> = set.by_kid.values().map(|k| (k.kid.clone(), k.alg, k.signs)).collect();
        v.sort();
        v
    }
}

/// The three parts of a compact JWS and its decoded header.
fn split_jws(jws: &str) -> Result<(&str, &str, &str, Value), KeyError> {
    let rej = |w: &str| KeyError::Rejected(w.to_owned());
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(rej("not a compact JWS"));
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| rej("bad header"))?;
    Ok((h, p, s, header))
}

fn claims_of(header: &Value, payload: &str) -> Result<(Option<String>, Value), KeyError> {
    let claims: Value = b64url_decode(payload)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| KeyError::Rejected("bad payload".into()))?;
    Ok((header.get("typ").and_then(Value::as_str).map(str::to_owned), claims))
}

impl Signer for KeyRing {
    fn sign(&self, alg: SigningAlg, typ: &str, claims: &Value) -> Result<String, KeyError> {
        let set = self.current();
        let key = set.active.get(&alg).ok_or(KeyError::NoKey(alg))?;
        let header = json!({"alg": alg.as_str(), "typ": typ, "kid": key.kid});
        let mut input = b64url(header.to_string().as_bytes());
        input.push('.');
        input.push_str(&b64url(claims.to_string().as_bytes()));
        let sig = key.sign(input.as_bytes())?;
        input.push('.');
        input.push_str(&b64url(&sig));
        Ok(input)
    }

    fn verify(&self, jwt: &str) -> Result<(Option<String>, Value), KeyError> {
        let rej = |w: &str| KeyError::Rejected(w.to_owned());
        let (h, p, s, header) = split_jws(jwt)?;
        let kid = header.get("kid").and_then(Value::as_str).ok_or_else(|| rej("no kid"))?;
        let set = self.current();
        let key = set.by_kid.get(kid).ok_or_else(|| rej("unknown kid"))?;
        // The algorithm is the key's, never the token's say-so.
        if header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
            return Err(rej("alg does not match the key"));
        }
        let sig = b64url_decode(s).ok_or_else(|| rej("bad signature encoding"))?;
        if !key.verify(&jwt.as_bytes()[..h.len() + 1 + p.len()], &sig) {
            return Err(rej("bad signature"));
        }
        claims_of(&header, p)
    }

    fn verify_with_jwk(&self, jwk: &Value, jws: &str) -> Result<(Option<String>, Value), KeyError> {
        verify_es256_with_jwk(jwk, jws)
    }

    fn jwks(&self) -> Value {
        self.current().jwks.clone()
    }
}

/// Verifies a compact JWS under a public JWK that the key ring need not hold (audit
/// checkpoints outlive key rotation, and `relais audit verify-export` runs without keys).
/// Only what Relais itself signs checkpoints with: ES256 on P-256. Returns the header `typ`
/// and the claims.
pub fn verify_es256_with_jwk(jwk: &Value, jws: &str) -> Result<(Option<String>, Value), KeyError> {
    let rej = |w: &str| KeyError::Rejected(w.to_owned());
    let (h, p, s, header) = split_jws(jws)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") || jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
        return Err(rej("not an ES256 signature with a P-256 key"));
    }
    let coord = |c: &str| {
        jwk[c]
            .as_str()
            .and_then(b64url_decode)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| rej("bad EC key"))
    };
    let mut point = vec![0x04];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    let sig = b64url_decode(s).ok_or_else(|| rej("bad signature encoding"))?;
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(&jws.as_bytes()[..h.len() + 1 + p.len()], &sig)
        .map_err(|_| rej("bad signature"))?;
    claims_of(&header, p)
}
