//! Walking the audit chain (`relais audit verify`) and purging its old part
//! (`relais audit purge`) without losing verifiability.
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::audit_chain::{AuditQuery, ChainedRecord, Checkpoint, GENESIS, Order};
use crate::domain::ports::{AuditSink, Signer, Storage, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

const PAGE: u64 = 2000;

/// The first thing found wrong in the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    #[error("record {seq} was altered: its content does not match its hash")]
    Altered { seq: i64 },
    #[error("record {seq} does not follow its predecessor (a record was inserted, replaced or reordered)")]
    Unlinked { seq: i64 },
    #[error("record {seq} is missing (deleted)")]
    Missing { seq: i64 },
    #[error("record {seq} lies beyond the chain head (inserted)")]
    BeyondHead { seq: i64 },
    #[error("records before {seq} are gone and no signed checkpoint anchors the chain there")]
    NoAnchor { seq: i64 },
    #[error("checkpoint {seq} is invalid: {reason}")]
    BadCheckpoint { seq: i64, reason: String },
    #[error("the newest checkpoint ({seq}) is signed by key {kid}, which Relais does not hold")]
    UntrustedCheckpoint { seq: i64, kid: String },
}

impl ChainProblem {
    /// The seq the problem is about.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Altered { seq }
            | Self::Unlinked { seq }
            | Self::Missing { seq }
            | Self::BeyondHead { seq }
            | Self::NoAnchor { seq }
            | Self::BadCheckpoint { seq, .. }
            | Self::UntrustedCheckpoint { seq, .. } => *seq,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub checkpoints: u64,
    /// `None`: the chain (or range) is intact.
    pub problem: Option<ChainProblem>,
}

/// Walks the records with `from <= seq <= to` (the whole chain by default) and the checkpoints
/// that fall in that range. Stops at the first problem.
pub async fn verify(storage: &dyn Storage, signer: &dyn Signer, from: Option<i64>, to: Option<i64>) -> Result<VerifyReport, StoreError> {
    let checkpoints: BTreeMap<i64, Checkpoint> = storage.audit_checkpoints().await?.into_iter().map(|c| (c.seq, c)).collect();
    let mut report = VerifyReport::default();
    let problem = walk(storage, signer, &checkpoints, from, to, &mut report).await?;
    report.problem = problem;
    Ok(report)
}

async fn walk(
    storage: &dyn Storage,
    signer: &dyn Signer,
    checkpoints: &BTreeMap<i64, Checkpoint>,
    from: Option<i64>,
    to: Option<i64>,
    report: &mut VerifyReport,
) -> Result<Option<ChainProblem>, StoreError> {
    let lo = from.unwrap_or(1).max(1);
    let mut prev: Option<(i64, String)> = None;
    let mut cursor = None;
    loop {
        let page = storage
            .audit_query(&AuditQuery {
                min_seq: Some(lo),
                max_seq: to,
                cursor,
                order: Order::Ascending,
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        for r in &page.records {
            if let Some(p) = check_record(storage, checkpoints, r, prev.as_ref()).await? {
                return Ok(Some(p));
            }
            report.records += 1;
            report.first_seq.get_or_insert(r.seq);
            report.last_seq = Some(r.seq);
            prev = Some((r.seq, r.hash.clone()));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None if to.is_some() => break,
            None => {
                // Read the head after the records: whatever it names was committed with it.
                let (head_seq, head_hash) = storage.audit_head().await?;
                // Nothing read yet: the walk stands just before `from`.
                let last = prev.as_ref().map_or(lo - 1, |p| p.0);
                if prev.is_none() && last >= head_seq {
                    // A range that starts beyond the head holds nothing to check.
                    break;
                }
                if last > head_seq {
                    return Ok(Some(ChainProblem::BeyondHead { seq: head_seq + 1 }));
                }
                if last == head_seq {
                    if prev.as_ref().is_some_and(|p| p.1 != head_hash) {
                        return Ok(Some(ChainProblem::Unlinked { seq: last }));
                    }
                    break;
                }
                // Appends that committed while we walked: read on, unless nothing is there.
                let more = storage
                    .audit_query(&AuditQuery {
                        min_seq: Some(last + 1),
                        order: Order::Ascending,
                        limit: 1,
                        ..Default::default()
                    })
                    .await?;
                if more.records.is_empty() {
                    return Ok(Some(ChainProblem::Missing { seq: last + 1 }));
                }
                cursor = Some(last);
            }
        }
    }
    // Checkpoints: each one in range must carry a valid signature.
    let hi = to.unwrap_or(i64::MAX);
    let first = report.first_seq.unwrap_or(lo);
    for cp in checkpoints.range(first - 1..).take_while(|(s, _)| **s <= hi).map(|(_, c)| c) {
        report.checkpoints += 1;
        if let Err(reason) = cp.check_signature(signer) {
            return Ok(Some(ChainProblem::BadCheckpoint { seq: cp.seq, reason }));
        }
        if let Some(last) = report.last_seq
            && cp.seq > last
        {
            return Ok(Some(ChainProblem::Missing { seq: last + 1 }));
        }
    }
    // The newest checkpoint vouches for everything before it: its key must be Relais' own.
    if to.is_none()
        && let Some((_, cp)) = checkpoints.last_key_value()
        && !cp.by_current_key(signer)
    {
        return Ok(Some(ChainProblem::UntrustedCheckpoint {
            seq: cp.seq,
            kid: cp.kid.clone(),
        }));
    }
    Ok(None)
}

/// One record against its own hash, its predecessor and any checkpoint at its seq.
async fn check_record(
    storage: &dyn Storage,
    checkpoints: &BTreeMap<i64, Checkpoint>,
    r: &ChainedRecord,
    prev: Option<&(i64, String)>,
) -> Result<Option<ChainProblem>, StoreError> {
    if r.compute_hash() != r.hash {
        return Ok(Some(ChainProblem::Altered { seq: r.seq }));
    }
    let expected_prev = match prev {
        Some((seq, hash)) => {
            if r.seq != seq + 1 {
                return Ok(Some(ChainProblem::Missing { seq: seq + 1 }));
            }
            hash.clone()
        }
        None if r.seq == 1 => GENESIS.to_owned(),
        None => match predecessor(storage, r.seq - 1).await? {
            // A range that starts mid-chain: link to the record before it.
            Some(p) => p.hash,
            // Nothing before: purged, so a signed checkpoint must anchor the chain there.
            None => match checkpoints.get(&(r.seq - 1)) {
                Some(anchor) => anchor.hash.clone(),
                None => return Ok(Some(ChainProblem::NoAnchor { seq: r.seq })),
            },
        },
    };
    if r.prev_hash != expected_prev {
        return Ok(Some(ChainProblem::Unlinked { seq: r.seq }));
    }
    if let Some(cp) = checkpoints.get(&r.seq)
        && cp.hash != r.hash
    {
        return Ok(Some(ChainProblem::BadCheckpoint {
            seq: r.seq,
            reason: "it names another hash than the record's".into(),
        }));
    }
    Ok(None)
}

async fn predecessor(storage: &dyn Storage, seq: i64) -> Result<Option<ChainedRecord>, StoreError> {
    let page = storage
        .audit_query(&AuditQuery {
            min_seq: Some(seq),
            max_seq: Some(seq),
            limit: 1,
            ..Default::default()
        })
        .await?;
    Ok(page.records.into_iter().next())
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("the chain does not verify, nothing was purged: {0}")]
    Broken(ChainProblem),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot sign the anchor checkpoint: {0}")]
    Sign(#[from] crate::domain::ports::KeyError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub through_seq: Option<i64>,
    pub deleted: u64,
}

/// Deletes the records older than `before`. The chain is verified first (a purge must not hide
/// tampering), the last purged record's hash is kept in a signed checkpoint that anchors what
/// remains, and the purge is itself audited.
///
/// `forwarded_through`: with SIEM forwarding configured, the lowest cursor among the
/// destinations. Records the SIEM has not received yet are kept whatever their age, so a SIEM
/// that is down during a purge still gets everything when it comes back.
pub async fn purge(
    storage: &dyn Storage,
    signer: &dyn Signer,
    audit: &dyn AuditSink,
    before: DateTime<Utc>,
    forwarded_through: Option<i64>,
    now: DateTime<Utc>,
) -> Result<PurgeOutcome, PurgeError> {
    if let Some(p) = verify(storage, signer, None, None).await?.problem {
        return Err(PurgeError::Broken(p));
    }
    let newest_old = storage
        .audit_query(&AuditQuery {
            until: Some(before),
            max_seq: forwarded_through,
            order: Order::Descending,
            limit: 1,
            ..Default::default()
        })
        .await?;
    let Some(last) = newest_old.records.into_iter().next() else {
        return Ok(PurgeOutcome {
            through_seq: None,
            deleted: 0,
        });
    };
    if !storage.audit_checkpoints().await?.iter().any(|c| c.seq == last.seq) {
        storage.insert_audit_checkpoint(&Checkpoint::sign(signer, &last, now)?).await?;
    }
    let deleted = storage.purge_audit(last.seq).await?;
    audit
        .record(AuditRecord {
            at: now,
            event: AuditEvent::AuditPurged {
                before: before.to_rfc3339(),
                through_seq: last.seq,
                deleted,
            },
            context: Default::default(),
        })
        .await?;
    Ok(PurgeOutcome {
        through_seq: Some(last.seq),
        deleted,
    })
}

/// Writes the records with `since <= at < until` as JSON lines, oldest first, then a
/// checkpoint signed now over the last one (which, through the chain, vouches for the whole
/// file; `audit_export_check` checks it offline), and audits the export. Returns how many
/// records were written.
pub async fn export_jsonl(
    storage: &dyn Storage,
    audit: &dyn AuditSink,
    signer: &dyn Signer,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    out: &mut dyn std::io::Write,
) -> Result<u64, ExportError> {
    let mut cursor = None;
    let mut count = 0u64;
    let mut last: Option<ChainedRecord> = None;
    loop {
        let page = storage
            .audit_query(&AuditQuery {
                since: Some(since),
                until,
                cursor,
                order: Order::Ascending,
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        for r in &page.records {
            writeln!(out, "{}", r.export_json())?;
            count += 1;
        }
        if let Some(r) = page.records.last() {
            last = Some(r.clone());
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if let Some(last) = &last {
        // Not stored: it signs the record the file ends with, not the chain head.
        let checkpoint = Checkpoint::sign(signer, last, now)?;
        writeln!(out, "{}", checkpoint.export_json())?;
    }
    out.flush()?;
    audit
        .record(AuditRecord {
            at: now,
            event: AuditEvent::AuditExported {
                since: Some(since.to_rfc3339()),
                until: until.map(|u| u.to_rfc3339()),
                records: count,
            },
            context: Default::default(),
        })
        .await?;
    Ok(count)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot sign the export: {0}")]
    Sign(#[from] crate::domain::ports::KeyError),
}
