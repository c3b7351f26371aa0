//! Checking an export file offline (`relais audit verify-export`): no database, no key. Each
//! line must hash to its `hash`, follow the line before it (`seq` + 1, `prev_hash` = its hash),
//! and show the event it hashes (`event` equal to `event_text`). An export shows that its
//! records are unaltered and gap-free between its first and last; that its first record
//! follows the trail before it, and its last one is the one Relais holds, is checked against
//! Relais (`relais audit verify`, a signed checkpoint) or a SIEM copy by their hashes, which the
//! report prints.
use crate::domain::audit_chain::ChainedRecord;
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
}

/// Checks the export's lines (JSON objects as `relais audit export` writes them).
pub fn check_export<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> ExportReport {
    let mut report = ExportReport::default();
    let mut prev: Option<(i64, String)> = None;
    for (i, text) in lines.into_iter().enumerate() {
        let line = i as u64 + 1;
        let text = text.as_ref();
        if text.trim().is_empty() {
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
