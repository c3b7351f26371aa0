//! The audit sink on SQL. Every record goes to the hash chain and to the structured log; every
//! `checkpoint_every` records the chain head is signed.
//!
//! Group commit: appends are serialised on one database row (that is what keeps one gap-free
//! chain across replicas), so one transaction per record would cap the whole server at the
//! database's commit rate. Callers hand their record to one writer task, which appends every
//! record waiting at that moment in a single transaction; each caller is released only after
//! that commit, so the trail still fails closed.
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::audit_chain::{ChainedRecord, Checkpoint};
use crate::domain::ports::{AuditSink, Clock, Signer, Storage, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most records written in one transaction.
const MAX_BATCH: usize = 512;

struct Job {
    record: AuditRecord,
    done: oneshot::Sender<Result<(), String>>,
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
            match self.storage.append_audit_batch(&records).await {
                Ok(chained) => {
                    for (job, rec) in batch.drain(..).zip(chained.iter()) {
                        let _ = job.done.send(Ok(()));
                        self.after_append(&job.record, rec).await;
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

    async fn after_append(&self, record: &AuditRecord, rec: &ChainedRecord) {
        tracing::info!(target: "relais::audit", seq = rec.seq, event = rec.event_type, outcome = rec.outcome, source_ip = rec.source_ip.as_deref().unwrap_or("-"), detail = %rec.event, "audit");
        // A key rotation or a purge is signed at once: the newest checkpoint must be by a key
        // Relais holds, and a purge anchor must not wait for traffic.
        let now_signed = matches!(record.event, AuditEvent::SigningKeyRotated { .. } | AuditEvent::AuditPurged { .. });
        if rec.seq % self.checkpoint_every == 0 || now_signed {
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
}

#[async_trait]
impl AuditSink for SqlAuditSink {
    async fn record(&self, record: AuditRecord) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job { record, done })
            .await
            .map_err(|_| StoreError::Unavailable("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(e)),
            Err(_) => Err(StoreError::Unavailable("the audit writer has stopped".into())),
        }
    }
}
