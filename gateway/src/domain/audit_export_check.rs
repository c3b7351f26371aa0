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
//!
//! The admin UI's filtered export is not contiguous: it ends with a selection seal instead
//! (`audit_selection`), Relais' signature over the filter and the records' hashes in order.
//! Such a file is checked record by record (content against hash), and the seal against
//! every record of the file; gaps between records are expected there.
use crate::domain::audit_chain::{ChainedRecord, Checkpoint, JwkVerifier};
use crate::domain::audit_selection::{SelectionDigest, SelectionSeal};
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
    #[error("line {line}: a selection seal must be the file's last line")]
    SelectionMisplaced { line: u64 },
    #[error("line {line}: the selection seal does not match the records of the file: {reason}")]
    SelectionMismatch { line: u64, reason: String },
    #[error("line {line}: the selection seal is invalid: {reason}")]
    SelectionInvalid { line: u64, reason: String },
}

/// The seal of a filtered export whose signature verified and which matches the file's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSelection {
    pub filter: Value,
    pub records: u64,
    pub at: DateTime<Utc>,
    pub kid: String,
    /// RFC 7638 thumbprint of the JWK the seal carries.
    pub thumbprint: String,
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
    #[error(
        "the export carries no signed checkpoint over its last record nor a selection seal (it was cut, or made by a Relais older than signed exports)"
    )]
    Unsigned,
    #[error("the export is signed by key {kid} (thumbprint {thumbprint}), which is not in the given JWKS")]
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
    /// The seal of a filtered export (its last line); its records need not be contiguous.
    pub selection: Option<SignedSelection>,
}

impl ExportReport {
    /// The checkpoint over the last record, if the file ends with one: it vouches for the
    /// whole file.
    pub fn final_checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.checkpoints.last().filter(|c| Some(c.seq) == self.last_seq)
    }

    /// The key that vouches for the whole file, `(kid, thumbprint)`: the selection seal's, or
    /// the checkpoint's over the last record.
    pub fn whole_file_signer(&self) -> Option<(&str, &str)> {
        match (&self.selection, self.final_checkpoint()) {
            (Some(s), _) => Some((&s.kid, &s.thumbprint)),
            (None, Some(c)) => Some((&c.kid, &c.thumbprint)),
            (None, None) => None,
        }
    }

    /// Ties the export to a JWK Set the auditor trusts (Relais' published `/jwks`, saved while
    /// the key was current): the signature over the whole file must be by one of its keys.
    pub fn signed_by(&self, jwks: &Value) -> Result<(), SignatureProblem> {
        let (kid, thumbprint) = self.whole_file_signer().ok_or(SignatureProblem::Unsigned)?;
        let known = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| ec_jwk_thumbprint(k).as_deref() == Some(thumbprint));
        if known {
            Ok(())
        } else {
            Err(SignatureProblem::UnknownKey {
                kid: kid.to_owned(),
                thumbprint: thumbprint.to_owned(),
            })
        }
    }
}

/// Checks the export's lines (JSON objects as `relais audit export` or the admin UI's export
/// write them); `verify` checks a checkpoint's or a seal's JWS under the JWK it carries. The
/// check stops at the first problem, except that a gap is known to be one only at the end (a
/// sealed file may have gaps): a file with a gap and, further on, an altered record reports the
/// altered record.
pub fn check_export<S: AsRef<str>>(lines: impl IntoIterator<Item = S>, verify: &JwkVerifier<'_>) -> ExportReport {
    let mut report = ExportReport::default();
    let mut prev: Option<(i64, String)> = None;
    let mut digest = SelectionDigest::default();
    // A gap or a broken link is fatal unless the file turns out to be a filtered export
    // (sealed): the report as it stood at the first one, kept until the end says which.
    let mut unlinked: Option<ExportReport> = None;
    for (i, text) in lines.into_iter().enumerate() {
        let line = i as u64 + 1;
        let text = text.as_ref();
        if text.trim().is_empty() {
            continue;
        }
        if report.selection.is_some() {
            report.problem = Some(ExportProblem::SelectionMisplaced { line });
            return report;
        }
        if let Some(seal) = special_line(text, "selection") {
            match check_selection(line, seal, &digest, report.checkpoints.len(), verify) {
                Ok(s) => report.selection = Some(s),
                Err(p) => {
                    report.problem = Some(p);
                    return report;
                }
            }
            continue;
        }
        if let Some(cp) = special_line(text, "checkpoint") {
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
        if rec.compute_hash() != rec.hash {
            report.problem = Some(ExportProblem::Altered { line, seq });
            return report;
        }
        if serde_json::from_str::<Value>(&rec.event).ok().as_ref() != Some(&shown) {
            report.problem = Some(ExportProblem::EventMismatch { line, seq });
            return report;
        }
        let link = match &prev {
            Some((p, _)) if seq != p + 1 => Some(ExportProblem::Gap { line, seq, prev: *p }),
            Some((_, h)) if *h != rec.prev_hash => Some(ExportProblem::Unlinked { line, seq }),
            _ => None,
        };
        if let Some(p) = link
            && unlinked.is_none()
        {
            unlinked = Some(ExportReport {
                problem: Some(p),
                ..report.clone()
            });
        }
        report.records += 1;
        report.first_seq.get_or_insert(seq);
        report.anchor.get_or_insert_with(|| rec.prev_hash.clone());
        report.last_seq = Some(seq);
        report.last_hash = Some(rec.hash.clone());
        digest.add(&rec.hash);
        prev = Some((seq, rec.hash));
    }
    match unlinked {
        Some(broken) if report.selection.is_none() => broken,
        _ => report,
    }
}

/// The seal must count and hash exactly the records before it, with a valid signature.
fn check_selection(
    line: u64,
    seal: Value,
    digest: &SelectionDigest,
    checkpoints: usize,
    verify: &JwkVerifier<'_>,
) -> Result<SignedSelection, ExportProblem> {
    let invalid = |reason: String| ExportProblem::SelectionInvalid { line, reason };
    // Not covered by the digest, so they could come and go unseen: a filtered export has none.
    if checkpoints > 0 {
        return Err(invalid("a filtered export carries no checkpoint, and this file does".into()));
    }
    let seal = SelectionSeal::from_export(&seal).map_err(invalid)?;
    seal.check_signature_with(verify).map_err(invalid)?;
    if seal.records != digest.records() {
        return Err(ExportProblem::SelectionMismatch {
            line,
            reason: format!("it counts {} records, the file has {}", seal.records, digest.records()),
        });
    }
    if seal.digest != digest.hex() {
        return Err(ExportProblem::SelectionMismatch {
            line,
            reason: "the records' hashes are not the ones it signed (a record was replaced, rehashed or moved)".into(),
        });
    }
    let thumbprint = ec_jwk_thumbprint(&seal.jwk).ok_or_else(|| invalid("its key is not an EC key".into()))?;
    Ok(SignedSelection {
        filter: seal.filter,
        records: seal.records,
        at: seal.at,
        kid: seal.kid,
        thumbprint,
    })
}

/// The `checkpoint` (or `selection`) object of such a line; `None` for any other line.
fn special_line(text: &str, key: &str) -> Option<Value> {
    // Records never have a top-level `checkpoint` or `selection` key; a cheap test first, most
    // lines are records.
    if !text.contains(&format!("\"{key}\"")) {
        return None;
    }
    serde_json::from_str::<Value>(text).ok()?.get_mut(key).map(Value::take)
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
