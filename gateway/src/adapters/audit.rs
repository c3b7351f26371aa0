//! The audit sink on SQL. Every record goes to the hash chain and to the structured log; every
//! `checkpoint_every` records the chain head is signed.
//!
//! Group commit: appends are serialised on one database row (that is what keeps one gap-free
//! chain across replicas), so one transaction per record would cap the whole server at the
//! database's commit rate. Callers hand their record to one writer task, which appends every
//! record waiting at that moment in a single transaction; each caller is released only after
//! that commit, so the trail still fails closed. The write a record is about (a refresh token,
//! a security key's new sign counter: `AuditedWrite`) rides in the same transaction.
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::audit_chain::{ChainedRecord, Checkpoint};
use crate::domain::ports::{AuditSink, Clock, Signer, Storage, StoreError};
use crate::domain::records::AuditedWrite;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most records written in one transaction.
const MAX_BATCH: usize = 512;

struct Job {
    record: AuditRecord,
    /// Made in the same transaction as the record.
    write: Option<AuditedWrite>,
    /// The record's seq once committed.
    done: oneshot::Sender<Result<i64, String>>,
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
            let records: Vec<AuditRecord> = batch.iter().map(|j| j.record.clone()).collect();
            let writes: Vec<AuditedWrite> = batch.iter().filter_map(|j| j.write.clone()).collect();
            match self.storage.append_audit_batch_with(&records, &writes).await {
                Ok(chained) => {
                    // Callers are released first (they log their own record, in parallel);
                    // only checkpoints stay on this task, between two commits.
                    let mut to_sign = None;
                    for (job, rec) in batch.drain(..).zip(chained.iter()) {
                        if self.needs_checkpoint(&job.record, rec) {
                            to_sign = Some(rec);
                        }
                        let _ = job.done.send(Ok(rec.seq));
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

#[async_trait]
impl AuditSink for SqlAuditSink {
    async fn record_with(&self, record: AuditRecord, write: Option<AuditedWrite>) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let event_type = record.event.kind();
        let outcome = record.event.outcome();
        let source_ip = record.context.source_ip.clone();
        // Formatted only if the log line is enabled; never holds a secret (events carry none).
        let detail = tracing::enabled!(target: "relais::audit", tracing::Level::INFO)
            .then(|| serde_json::to_string(&record.event).unwrap_or_default());
        self.jobs
            .send(Job { record, write, done })
            .await
            .map_err(|_| StoreError::Unavailable("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(seq)) => {
                if let Some(detail) = detail {
                    tracing::info!(target: "relais::audit", seq, event = event_type, outcome = outcome.as_str(), source_ip = source_ip.as_deref().unwrap_or("-"), detail = %detail, "audit");
                }
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(e)),
            Err(_) => Err(StoreError::Unavailable("the audit writer has stopped".into())),
        }
    }
}
