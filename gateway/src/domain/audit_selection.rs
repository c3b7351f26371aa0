//! The seal of a filtered export (the admin UI's "export" of a search): Relais' signature over
//! exactly the records it selected, in order, and the filter that selected them.
//!
//! A filtered export is not a stretch of the chain (the records between two selected ones are
//! left out), so no checkpoint can vouch for it through the chain. Instead its last line is a
//! seal: ES256 over the filter, the number of records and SHA-256 over their hashes in file
//! order. Each record's hash covers its content, so the seal vouches for every record of the
//! file and for their number and order: a record altered (even with its hash recomputed),
//! removed, added or moved breaks it. What it cannot show is that the filter was applied
//! honestly: that is Relais' word, signed.
use crate::domain::audit_chain::{ExportFields, JwkVerifier, sign_with_published_key};
use crate::domain::ports::{KeyError, Signer};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

/// The JOSE `typ` of a seal, so it can never pass for a checkpoint or a token.
pub const SELECTION_TYP: &str = "relais-audit-selection+jwt";

/// SHA-256 over the selected records' hashes, each followed by a newline, in file order.
#[derive(Clone)]
pub struct SelectionDigest {
    context: aws_lc_rs::digest::Context,
    records: u64,
}

impl Default for SelectionDigest {
    fn default() -> Self {
        Self {
            context: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            records: 0,
        }
    }
}

impl SelectionDigest {
    /// Adds the next record, by its hash (hex, as stored).
    pub fn add(&mut self, record_hash: &str) {
        self.context.update(record_hash.as_bytes());
        self.context.update(b"\n");
        self.records += 1;
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// The digest so far, hex; the digest stays usable.
    pub fn hex(&self) -> String {
        self.context.clone().finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A signed statement "these `records` records, with these hashes in this order, are what
/// `filter` selected at `at`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionSeal {
    /// The filter as the admin gave it (only the fields that were set), plus the account it
    /// resolved to when a person was named.
    pub filter: Value,
    pub records: u64,
    pub digest: String,
    pub at: DateTime<Utc>,
    pub kid: String,
    pub jwk: Value,
    /// Compact JWS (ES256) over `{"filter", "records", "digest", "at"}`.
    pub signature: String,
}

impl SelectionSeal {
    pub fn sign(signer: &dyn Signer, filter: Value, digest: &SelectionDigest, now: DateTime<Utc>) -> Result<Self, KeyError> {
        let at = now.trunc_subsecs(6);
        let digest_hex = digest.hex();
        let claims = json!({"filter": filter, "records": digest.records(), "digest": digest_hex, "at": at.timestamp()});
        let (signature, kid, jwk) = sign_with_published_key(signer, SELECTION_TYP, &claims)?;
        Ok(Self {
            filter,
            records: digest.records(),
            digest: digest_hex,
            at,
            kid,
            jwk,
            signature,
        })
    }

    /// Checks the signature under the JWK the seal carries, and that it covers this seal's
    /// filter, count and digest.
    pub fn check_signature_with(&self, verify: &JwkVerifier<'_>) -> Result<(), String> {
        if self.jwk.get("kid").and_then(Value::as_str) != Some(self.kid.as_str()) {
            return Err("the key it carries is not the one named by kid".into());
        }
        let (typ, claims) = verify(&self.jwk, &self.signature).map_err(|e| e.to_string())?;
        if typ.as_deref() != Some(SELECTION_TYP) {
            return Err("not a selection seal JWS".into());
        }
        if claims["records"].as_u64() != Some(self.records)
            || claims["digest"].as_str() != Some(self.digest.as_str())
            || claims["filter"] != self.filter
            || claims["at"].as_i64() != Some(self.at.timestamp())
        {
            return Err("the signature covers another filter, count, digest or time".into());
        }
        Ok(())
    }

    /// The export's last line: `{"selection": {filter, records, digest, at, kid, jwk, signature}}`.
    pub fn export_json(&self) -> Value {
        json!({"selection": {
            "filter": self.filter,
            "records": self.records,
            "digest": self.digest,
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "kid": self.kid,
            "jwk": self.jwk,
            "signature": self.signature,
        }})
    }

    /// The seal of an export line's `selection` object.
    pub fn from_export(v: &Value) -> Result<Self, String> {
        let f = ExportFields { v, what: "selection" };
        Ok(Self {
            filter: f.object("filter")?,
            records: v.get("records").and_then(Value::as_u64).ok_or("selection: records is missing")?,
            digest: f.text("digest")?,
            at: f.at()?,
            kid: f.text("kid")?,
            jwk: f.object("jwk")?,
            signature: f.text("signature")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_each_hash_and_their_order() {
        let mut ab = SelectionDigest::default();
        ab.add("aa");
        ab.add("bb");
        // sha256("aa\nbb\n"), computed independently (`printf 'aa\nbb\n' | sha256sum`).
        assert_eq!(ab.hex(), "329d670e59ead1543a2d36865895972560bc434204c5f4a0c8219005dd312719");
        assert_eq!(ab.records(), 2);
        let mut ba = SelectionDigest::default();
        ba.add("bb");
        ba.add("aa");
        assert_ne!(ab.hex(), ba.hex());
    }
}
