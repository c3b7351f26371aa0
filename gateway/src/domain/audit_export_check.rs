//! Checking an export file offline (`relais audit verify-export`): no database, no key ring.
//! Each line must hash to its `hash`, follow the line before it (`seq` + 1, `prev_hash` = its
//! hash), and show the event it hashes (`event` equal to `event_text`). An export shows that its
//! records are unaltered and gap-free between its first and last.
//!
//! `relais audit export` ends the file with a checkpoint: Relais' ES256 signature, made at
//! export time, over the last record's seq and hash. Since each hash covers the one before, it
//! vouches for every record of the file: someone who can write to the database or to the file,
//! but does not hold Relais' key, cannot produce it. The signature is checked with the JWK the
//! line carries; whether that key is Relais' is the auditor's comparison with the published
//! JWKS (`--jwks`, or the key's RFC 7638 thumbprint, which the report prints).
use crate::domain::audit_chain::{ChainedRecord, Checkpoint, JwkVerifier};
use crate::domain::crypto::ec_jwk_thumbprint;
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportProblem {
    #[error("line {line}: not an audit record ({reason})")]
    Malformed { line: u64, reason: String },
    #[error("line {line}: record {seq} was altered: its content does not match its hash")]
    Altered { line: u64, seq: i64 },
    #[error("line {line}: record {seq} shows an event that is not the one hashed (event and event_text differ)")]
    EventMismatch { line: u64, seq: i64 },
    #[error("line {line}: record {seq} does not follow record {prev} (records are missing or were reordered)")]
    Gap { line: u64, seq: i64, prev: i64 },
    #[error("line {line}: record {seq} does not follow its predecessor (its prev_hash is not that record's hash)")]
    Unlinked { line: u64, seq: i64 },
    #[error("line {line}: the checkpoint for record {seq} does not follow that record (it names another seq or hash)")]
    CheckpointMisplaced { line: u64, seq: i64 },
    #[error("line {line}: the checkpoint for record {seq} is invalid: {reason}")]
    CheckpointInvalid { line: u64, seq: i64, reason: String },
}

/// A checkpoint of the export whose signature verified under the JWK it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kid: String,
    /// RFC 7638 thumbprint of the JWK the checkpoint carries: the key, for comparison.
    pub thumbprint: String,
}

/// Why an export's signature does not tie it to the keys an auditor trusts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("the export carries no signed checkpoint over its last record (it was cut, or made by a Relais older than signed exports)")]
    Unsigned,
    #[error("the checkpoint over the last record is signed by key {kid} (thumbprint {thumbprint}), which is not in the given JWKS")]
    UnknownKey { kid: String, thumbprint: String },
}

/// What an export holds, and the first problem found (the check stops there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub records: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// The `prev_hash` of the first record: the hash of the record before the export.
    pub anchor: Option<String>,
    /// The hash of the last record.
    pub last_hash: Option<String>,
    pub problem: Option<ExportProblem>,
    /// The checkpoints found, in file order, each after the record it signs.
    pub checkpoints: Vec<SignedCheckpoint>,
}

impl ExportReport {
    /// The checkpoint over the last record, if the file ends with one: it vouches for the
    /// whole file.
    pub fn final_checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.checkpoints.last().filter(|c| Some(c.seq) == self.last_seq)
    }

    /// Ties the export to a JWK Set the auditor trusts (Relais' published `/jwks`, saved while
    /// the key was current): the checkpoint over the last record must be signed by one of its
    /// keys.
    pub fn signed_by(&self, jwks: &Value) -> Result<&SignedCheckpoint, SignatureProblem> {
        let last = self.final_checkpoint().ok_or(SignatureProblem::Unsigned)?;
        let known = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| ec_jwk_thumbprint(k).as_deref() == Some(last.thumbprint.as_str()));
        if known {
            Ok(last)
        } else {
            Err(SignatureProblem::UnknownKey {
                kid: last.kid.clone(),
                thumbprint: last.thumbprint.clone(),
            })
        }
    }
}

/// Checks the export's lines (JSON objects as `relais audit export` writes them); `verify`
/// checks a checkpoint's JWS under the JWK it carries.
pub fn check_export<S: AsRef<str>>(lines: impl IntoIterator<Item = S>, verify: &JwkVerifier<'_>) -> ExportReport {
    let mut report = ExportReport::default();
    let mut prev: Option<(i64, String)> = None;
    for (i, text) in lines.into_iter().enumerate() {
        let line = i as u64 + 1;
        let text = text.as_ref();
        if text.trim().is_empty() {
            continue;
        }
        if let Some(cp) = checkpoint_line(text) {
            match check_checkpoint(line, cp, prev.as_ref(), verify) {
                Ok(c) => report.checkpoints.push(c),
                Err(p) => {
                    report.problem = Some(p);
                    return report;
                }
            }
            continue;
        }
        let (rec, shown) = match parse(text) {
            Ok(x) => x,
            Err(reason) => {
                report.problem = Some(ExportProblem::Malformed { line, reason });
                return report;
            }
        };
        let seq = rec.seq;
        let problem = if rec.compute_hash() != rec.hash {
            Some(ExportProblem::Altered { line, seq })
        } else if serde_json::from_str::<Value>(&rec.event).ok().as_ref() != Some(&shown) {
            Some(ExportProblem::EventMismatch { line, seq })
        } else {
            match &prev {
                Some((p, _)) if seq != p + 1 => Some(ExportProblem::Gap { line, seq, prev: *p }),
                Some((_, h)) if *h != rec.prev_hash => Some(ExportProblem::Unlinked { line, seq }),
                _ => None,
            }
        };
        if problem.is_some() {
            report.problem = problem;
            return report;
        }
        report.records += 1;
        report.first_seq.get_or_insert(seq);
        report.anchor.get_or_insert_with(|| rec.prev_hash.clone());
        report.last_seq = Some(seq);
        report.last_hash = Some(rec.hash.clone());
        prev = Some((seq, rec.hash));
    }
    report
}

/// The `checkpoint` object of a checkpoint line; `None` for any other line.
fn checkpoint_line(text: &str) -> Option<Value> {
    // Records never have a top-level `checkpoint` key; a cheap test first, most lines are records.
    if !text.contains(r#""checkpoint""#) {
        return None;
    }
    serde_json::from_str::<Value>(text).ok()?.get_mut("checkpoint").map(Value::take)
}

/// A checkpoint must sign the record just before it, with a valid signature.
fn check_checkpoint(
    line: u64,
    cp: Value,
    prev: Option<&(i64, String)>,
    verify: &JwkVerifier<'_>,
) -> Result<SignedCheckpoint, ExportProblem> {
    let seq = cp.get("seq").and_then(Value::as_i64).unwrap_or_default();
    let invalid = |reason: String| ExportProblem::CheckpointInvalid { line, seq, reason };
    let cp = Checkpoint::from_export(&cp).map_err(invalid)?;
    if prev.is_none_or(|(s, h)| *s != cp.seq || *h != cp.hash) {
        return Err(ExportProblem::CheckpointMisplaced { line, seq });
    }
    cp.check_signature_with(verify).map_err(invalid)?;
    let thumbprint = ec_jwk_thumbprint(&cp.jwk).ok_or_else(|| invalid("its key is not an EC key".into()))?;
    Ok(SignedCheckpoint {
        seq: cp.seq,
        at: cp.at,
        kid: cp.kid,
        thumbprint,
    })
}

/// One line back into the record it was made from, and the event object it shows.
fn parse(text: &str) -> Result<(ChainedRecord, Value), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let s = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{k} is missing"))
    };
    let opt = |k: &str| -> Result<Option<String>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(x)) => Ok(Some(x.clone())),
            Some(_) => Err(format!("{k} is not a string")),
        }
    };
    let event = v
        .get("event_text")
        .and_then(Value::as_str)
        .ok_or("event_text is missing (an export made before Relais wrote it cannot be checked offline)")?
        .to_owned();
    let at = DateTime::parse_from_rfc3339(&s("at")?).map_err(|e| format!("at: {e}"))?;
    let rec = ChainedRecord {
        seq: v.get("seq").and_then(Value::as_i64).ok_or("seq is missing")?,
        at: at.with_timezone(&Utc),
        event_type: s("event_type")?,
        outcome: s("outcome")?,
        source_ip: opt("source_ip")?,
        user_agent: opt("user_agent")?,
        correlation_id: opt("correlation_id")?,
        account_id: opt("account_id")?,
        client_id: opt("client_id")?,
        event,
        prev_hash: s("prev_hash")?,
        hash: s("hash")?,
    };
    Ok((rec, v.get("event").cloned().unwrap_or(Value::Null)))
}
