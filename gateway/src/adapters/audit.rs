//! The audit sink on SQL. Every record goes to the hash chain and to the structured log; every
//! `checkpoint_every` records the chain head is signed.
//!
//! Group commit: appends are serialised on one database row (that is what keeps one gap-free
//! chain across replicas), so one transaction per record would cap the whole server at the
//! database's commit rate. Callers hand their record to one writer task, which appends every
//! record waiting at that moment in a single transaction; each caller is released only after
//! that commit, so the trail still fails closed. The write a record is about (a refresh token,
//! a security key's new sign counter: `AuditedWrite`) rides in the same transaction, and so does
//! the check that its account is still active where the caller asks for one (`record_if_active`:
//! one query per batch instead of one account read per request).
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::audit_chain::{ChainedRecord, Checkpoint};
use crate::domain::ports::{AuditSink, Clock, Signer, Storage, StoreError};
use crate::domain::records::{AuditAppend, AuditedWrite};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most records written in one transaction.
const MAX_BATCH: usize = 512;

struct Job {
    /// The record, the write made in its transaction, and the account that must be active.
    append: AuditAppend,
    /// The record's seq once committed; `None` if its account was not active.
    done: oneshot::Sender<Result<Option<i64>, String>>,
}

pub struct SqlAuditSink {
    jobs: mpsc::Sender<Job>,
}

struct Writer {
    storage: Arc<dyn Storage>,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    checkpoint_every: i64,
}

impl SqlAuditSink {
    /// Starts the writer task (needs a tokio runtime).
    pub fn new(storage: Arc<dyn Storage>, signer: Arc<dyn Signer>, clock: Arc<dyn Clock>, checkpoint_every: u64) -> Self {
        let (jobs, rx) = mpsc::channel(8 * MAX_BATCH);
        let writer = Writer {
            storage,
            signer,
            clock,
            checkpoint_every: checkpoint_every.clamp(1, i64::MAX as u64) as i64,
        };
        tokio::spawn(writer.run(rx));
        Self { jobs }
    }
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let appends: Vec<AuditAppend> = batch.iter().map(|j| j.append.clone()).collect();
            match self.storage.append_audit_batch_checked(&appends).await {
                Ok(chained) => {
                    // Callers are released first (they log their own record, in parallel);
                    // only checkpoints stay on this task, between two commits.
                    let mut to_sign = None;
                    for (job, rec) in batch.drain(..).zip(chained.iter()) {
                        if let Some(rec) = rec
                            && self.needs_checkpoint(&job.append.record, rec)
                        {
                            to_sign = Some(rec);
                        }
                        let _ = job.done.send(Ok(rec.as_ref().map(|r| r.seq)));
                    }
                    if let Some(rec) = to_sign {
                        self.checkpoint(rec).await;
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for job in batch.drain(..) {
                        let _ = job.done.send(Err(msg.clone()));
                    }
                }
            }
        }
    }

    /// Every `checkpoint_every` records, and at once after a key rotation or a purge (the
    /// newest checkpoint must be by a key Relais holds, and a purge anchor must not wait for
    /// traffic). One batch gets at most one checkpoint, on its newest record that needs one:
    /// a checkpoint covers everything before it.
    fn needs_checkpoint(&self, record: &AuditRecord, rec: &ChainedRecord) -> bool {
        let now_signed = matches!(record.event, AuditEvent::SigningKeyRotated { .. } | AuditEvent::AuditPurged { .. });
        rec.seq % self.checkpoint_every == 0 || now_signed
    }

    async fn checkpoint(&self, rec: &ChainedRecord) {
        // The record is already in the chain; a missed checkpoint is covered by the next.
        match Checkpoint::sign(self.signer.as_ref(), rec, self.clock.now()) {
            Ok(cp) => {
                if let Err(e) = self.storage.insert_audit_checkpoint(&cp).await {
                    tracing::warn!(seq = rec.seq, error = %e, "could not store an audit checkpoint");
                }
            }
            Err(e) => tracing::warn!(seq = rec.seq, error = %e, "could not sign an audit checkpoint"),
        }
    }
}

impl SqlAuditSink {
    /// Hands the append to the writer and waits for its commit. `Ok(false)`: left out, its
    /// account was not active.
    async fn append(&self, append: AuditAppend) -> Result<bool, StoreError> {
        let (done, wait) = oneshot::channel();
        let event_type = append.record.event.kind();
        let outcome = append.record.event.outcome();
        let source_ip = append.record.context.source_ip.clone();
        // Formatted only if the log line is enabled; never holds a secret (events carry none).
        let detail = tracing::enabled!(target: "relais::audit", tracing::Level::INFO)
            .then(|| serde_json::to_string(&append.record.event).unwrap_or_default());
        self.jobs
            .send(Job { append, done })
            .await
            .map_err(|_| StoreError::Unavailable("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(Some(seq))) => {
                if let Some(detail) = detail {
                    tracing::info!(target: "relais::audit", seq, event = event_type, outcome = outcome.as_str(), source_ip = source_ip.as_deref().unwrap_or("-"), detail = %detail, "audit");
                }
                Ok(true)
            }
            Ok(Ok(None)) => Ok(false),
            Ok(Err(e)) => Err(StoreError::Unavailable(e)),
            Err(_) => Err(StoreError::Unavailable("the audit writer has stopped".into())),
        }
    }
}

#[async_trait]
impl AuditSink for SqlAuditSink {
    async fn record_with(&self, record: AuditRecord, write: Option<AuditedWrite>) -> Result<(), StoreError> {
        let append = AuditAppend {
            record,
            writes: write.into_iter().collect(),
            only_if_active: None,
        };
        self.append(append).await.map(|_| ())
    }

    async fn record_if_active(&self, account_id: Uuid, record: AuditRecord, write: Option<AuditedWrite>) -> Result<bool, StoreError> {
        let append = AuditAppend {
            record,
            writes: write.into_iter().collect(),
            only_if_active: Some(account_id),
        };
        self.append(append).await
    }
}
