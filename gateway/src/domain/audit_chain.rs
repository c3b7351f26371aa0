//! The tamper-evident form of the audit trail: a hash chain of records plus signed checkpoints.
//!
//! Each stored record carries its `seq`, the hash of its predecessor (`prev_hash`) and its own
//! hash, SHA-256 over a canonical serialisation of every stored column including `prev_hash`.
//! Altering a record changes its hash; deleting or inserting one breaks the link or the
//! numbering. Someone who can write to the database can recompute hashes, so every
//! `checkpoint_every` records the chain head is signed with Relais' ES256 key, whose private part
//! never sits in the database in clear (it is sealed under the KEK).
//!
//! The store appends (`Storage::append_audit`) and assigns `seq` inside one database
//! transaction, so replicas sharing a database keep one gap-free chain.
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContextRecord};
use crate::domain::crypto::sha256;
use crate::domain::ports::{KeyError, Signer, StoreError};
use crate::domain::records::SigningAlg;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `prev_hash` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The JOSE `typ` of a checkpoint, so a checkpoint can never pass for a token and vice versa.
pub const CHECKPOINT_TYP: &str = "relais-audit-checkpoint+jwt";

/// One record as stored: the columns that are hashed, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    /// The event as JSON text, exactly as stored (hashed as text, never re-serialised, so a
    /// later release that adds an optional field does not invalidate old records).
    pub event: String,
    pub prev_hash: String,
    pub hash: String,
}

impl ChainedRecord {
    /// The record that follows `prev_hash` at position `seq`.
    pub fn new(seq: i64, r: &AuditRecord, prev_hash: &str) -> Self {
        let mut rec = Self {
            seq,
            // Both databases keep microseconds: hash what will be read back.
            at: r.at.trunc_subsecs(6),
            event_type: r.event.kind().to_owned(),
            outcome: r.event.outcome().as_str().to_owned(),
            source_ip: r.context.source_ip.clone(),
            user_agent: r.context.user_agent.clone(),
            correlation_id: r.context.correlation_id.clone(),
            account_id: r.event.account_id().map(str::to_owned),
            client_id: r.event.client_id().map(str::to_owned),
            event: serde_json::to_string(&r.event).expect("events serialise"),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        rec
    }

    /// SHA-256 (hex) of a JSON array of every column but `hash`, in a fixed order. A JSON
    /// array of strings, numbers and nulls has one serialisation, and it keeps `None` apart
    /// from `""` and field boundaries unambiguous.
    pub fn compute_hash(&self) -> String {
        let canonical = json!([
            "relais-audit-v1",
            self.seq,
            self.at.timestamp_micros(),
            self.event_type,
            self.outcome,
            self.source_ip,
            self.user_agent,
            self.correlation_id,
            self.account_id,
            self.client_id,
            self.event,
            self.prev_hash,
        ]);
        hex(&sha256(canonical.to_string().as_bytes()))
    }

    pub fn record(&self) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            at: self.at,
            event: self.parsed_event()?,
            context: RequestContextRecord {
                source_ip: self.source_ip.clone(),
                user_agent: self.user_agent.clone(),
                correlation_id: self.correlation_id.clone(),
            },
        })
    }

    pub fn parsed_event(&self) -> Result<AuditEvent, StoreError> {
        serde_json::from_str(&self.event).map_err(|e| StoreError::Corrupt(format!("audit event {}: {e}", self.seq)))
    }

    /// One line of `relais audit export`: the stored columns, the event as a JSON object.
    pub fn export_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "event_type": self.event_type,
            "outcome": self.outcome,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "correlation_id": self.correlation_id,
            "account_id": self.account_id,
            "client_id": self.client_id,
            "event": serde_json::from_str::<Value>(&self.event).unwrap_or(Value::String(self.event.clone())),
            // The event exactly as stored and hashed: what `relais audit verify-export` checks
            // (re-serialising the object above could order its keys differently).
            "event_text": self.event,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies a compact JWS under a public JWK; returns the header `typ` and the claims.
pub type JwkVerifier<'a> = dyn Fn(&Value, &str) -> Result<(Option<String>, Value), KeyError> + 'a;

/// A signed statement "the record at `seq` has hash `hash`". The public JWK is stored beside
/// the signature so a checkpoint stays checkable after its key has left the key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    pub kid: String,
    pub jwk: Value,
    /// Compact JWS (ES256) over `{"seq", "hash", "at"}`.
    pub signature: String,
}

impl Checkpoint {
    /// Signs the chain head `rec` with the active ES256 key.
    pub fn sign(signer: &dyn Signer, rec: &ChainedRecord, now: DateTime<Utc>) -> Result<Self, KeyError> {
        let at = now.trunc_subsecs(6);
        let (jws, kid, jwk) = sign_with_published_key(
            signer,
            CHECKPOINT_TYP,
            &json!({"seq": rec.seq, "hash": rec.hash, "at": at.timestamp()}),
        )?;
        Ok(Self {
            seq: rec.seq,
            hash: rec.hash.clone(),
            at,
            kid,
            jwk,
            signature: jws,
        })
    }

    /// Checks the signature with the stored JWK and that it covers this row's seq and hash.
    pub fn check_signature(&self, signer: &dyn Signer) -> Result<(), String> {
        self.check_signature_with(&|jwk, jws| signer.verify_with_jwk(jwk, jws))
    }

    /// As `check_signature`, with any verifier of a JWS under a given JWK: an export is
    /// checked offline, without Relais' key ring.
    pub fn check_signature_with(&self, verify: &JwkVerifier<'_>) -> Result<(), String> {
        if self.jwk.get("kid").and_then(Value::as_str) != Some(self.kid.as_str()) {
            return Err("the stored key is not the one named by kid".into());
        }
        let (typ, claims) = verify(&self.jwk, &self.signature).map_err(|e| e.to_string())?;
        if typ.as_deref() != Some(CHECKPOINT_TYP) {
            return Err("not a checkpoint JWS".into());
        }
        if claims["seq"].as_i64() != Some(self.seq)
            || claims["hash"].as_str() != Some(self.hash.as_str())
            || claims["at"].as_i64() != Some(self.at.timestamp())
        {
            return Err("the signature covers another seq, hash or time".into());
        }
        Ok(())
    }

    /// The line of an export that carries this checkpoint (`relais audit export` ends with one
    /// over its last record): `{"checkpoint": {seq, hash, at, kid, jwk, signature}}`.
    pub fn export_json(&self) -> Value {
        json!({"checkpoint": {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "kid": self.kid,
            "jwk": self.jwk,
            "signature": self.signature,
        }})
    }

    /// The checkpoint of an export line's `checkpoint` object.
    pub fn from_export(v: &Value) -> Result<Self, String> {
        let f = ExportFields { v, what: "checkpoint" };
        Ok(Self {
            seq: v.get("seq").and_then(Value::as_i64).ok_or("checkpoint: seq is missing")?,
            hash: f.text("hash")?,
            at: f.at()?,
            kid: f.text("kid")?,
            jwk: f.object("jwk")?,
            signature: f.text("signature")?,
        })
    }

    /// Whether Relais holds this key today: only then does a valid signature prove that
    /// Relais, and not whoever edited the database, made the checkpoint.
    pub fn by_current_key(&self, signer: &dyn Signer) -> bool {
        published_key(signer, &self.kid).is_some_and(|k| k == self.jwk)
    }
}

/// Signs `claims` (ES256) and returns the JWS with its key's `kid` and public JWK, to be kept
/// beside the signature: a statement stays checkable after its key has left the key ring.
pub(crate) fn sign_with_published_key(signer: &dyn Signer, typ: &str, claims: &Value) -> Result<(String, String, Value), KeyError> {
    let jws = signer.sign(SigningAlg::ES256, typ, claims)?;
    let header: Value = jws
        .split('.')
        .next()
        .and_then(crate::domain::crypto::b64url_decode)
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| KeyError::Sign("unreadable JWS header".into()))?;
    let kid = header["kid"].as_str().unwrap_or_default().to_owned();
    let jwk = published_key(signer, &kid).ok_or_else(|| KeyError::Sign(format!("key {kid} is not published")))?;
    Ok((jws, kid, jwk))
}

/// Reads the fields of a signed line of an export (`checkpoint`, `selection`), naming the
/// line's kind in errors.
pub(crate) struct ExportFields<'a> {
    pub v: &'a Value,
    pub what: &'static str,
}

impl ExportFields<'_> {
    pub fn text(&self, k: &str) -> Result<String, String> {
        self.v
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: {k} is missing", self.what))
    }

    pub fn object(&self, k: &str) -> Result<Value, String> {
        self.v
            .get(k)
            .filter(|o| o.is_object())
            .cloned()
            .ok_or_else(|| format!("{}: {k} is missing", self.what))
    }

    pub fn at(&self) -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(&self.text("at")?)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{}: at: {e}", self.what))
    }
}

fn published_key(signer: &dyn Signer, kid: &str) -> Option<Value> {
    signer.jwks()["keys"]
        .as_array()?
        .iter()
        .find(|k| k["kid"].as_str() == Some(kid))
        .cloned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first (export, verify).
    Ascending,
    /// Newest first (the admin UI's default).
    #[default]
    Descending,
}

/// A search of the audit trail. Every filter is optional; `cursor` is the last `seq` of the
/// previous page, which stays valid while records are appended (seq never changes).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    pub event_type: Option<String>,
    pub outcome: Option<String>,
    pub source_ip: Option<String>,
    /// Inclusive seq bounds.
    pub min_seq: Option<i64>,
    pub max_seq: Option<i64>,
    pub cursor: Option<i64>,
    pub order: Order,
    pub limit: u64,
}

/// How many records of one event type and outcome (the dashboard's counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCount {
    pub event_type: String,
    pub outcome: String,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<ChainedRecord>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<i64>,
}

/// The account id a "person" filter of the audit search names: a national identifier (an
/// idNat, or a bare 11-digit RPPS number) through its mapping; an account id as typed; else a
/// login name. `None` when it names nobody (the search then finds nothing, rightly).
pub async fn resolve_person(
    storage: &dyn crate::domain::ports::Storage,
    identities: &dyn crate::domain::ports::IdentityStore,
    text: &str,
) -> Result<Option<String>, StoreError> {
    let text = text.trim();
    // A PSI idNat is a UUID too: the national mapping is asked first.
    let as_idnat = crate::domain::identity::IdNat::parse(text).ok().or_else(|| {
        (text.len() == 11)
            .then(|| crate::domain::identity::IdNat::parse(&format!("8{text}")).ok())
            .flatten()
    });
    if let Some(idnat) = as_idnat
        && let Some(n) = identities.national_id(&idnat).await?
    {
        return Ok(Some(n.account_id.to_string()));
    }
    if uuid::Uuid::parse_str(text).is_ok() {
        return Ok(Some(text.to_ascii_lowercase()));
    }
    let Some(login) = crate::domain::account::normalise_username(text) else {
        return Ok(None);
    };
    Ok(storage.account_by_username(&login).await?.map(|a| a.id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::AuditEvent;

    fn rec() -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            event: AuditEvent::CodeReplayed { client_id: "web".into() },
            context: Default::default(),
        }
    }

    #[test]
    fn every_column_is_covered_by_the_hash() {
        let r = ChainedRecord::new(7, &rec(), GENESIS);
        assert_eq!(r.hash, r.compute_hash());
        let changes: [fn(&mut ChainedRecord); 11] = [
            |r| r.seq += 1,
            |r| r.at += chrono::Duration::microseconds(1),
            |r| r.event_type.push('x'),
            |r| r.outcome = "failure_".into(),
            |r| r.source_ip = Some(String::new()),
            |r| r.user_agent = Some("x".into()),
            |r| r.correlation_id = Some("x".into()),
            |r| r.account_id = Some("x".into()),
            |r| r.client_id = None,
            |r| r.event.push(' '),
            |r| r.prev_hash = "1".repeat(64),
        ];
        for change in changes {
            let mut m = r.clone();
            change(&mut m);
            assert_ne!(m.compute_hash(), r.hash);
        }
    }
}
