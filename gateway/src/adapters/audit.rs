//! The audit sink on SQL. Every record goes to the hash chain (`Storage::append_audit`) and to
//! the structured log; every `checkpoint_every` records the chain head is signed.
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::audit_chain::Checkpoint;
use crate::domain::ports::{AuditSink, Clock, Signer, Storage, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

pub struct SqlAuditSink {
    storage: Arc<dyn Storage>,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    checkpoint_every: i64,
}

impl SqlAuditSink {
    pub fn new(storage: Arc<dyn Storage>, signer: Arc<dyn Signer>, clock: Arc<dyn Clock>, checkpoint_every: u64) -> Self {
        Self {
            storage,
            signer,
            clock,
            checkpoint_every: checkpoint_every.clamp(1, i64::MAX as u64) as i64,
        }
    }
}

#[async_trait]
impl AuditSink for SqlAuditSink {
    async fn record(&self, record: AuditRecord) -> Result<(), StoreError> {
        let rec = self.storage.append_audit(&record).await?;
        tracing::info!(target: "relais::audit", seq = rec.seq, event = rec.event_type, outcome = rec.outcome, source_ip = rec.source_ip.as_deref().unwrap_or("-"), detail = %rec.event, "audit");
        // A key rotation or a purge is signed at once: the newest checkpoint must be by a key
        // Relais holds, and a purge anchor must not wait for traffic.
        let now_signed = matches!(record.event, AuditEvent::SigningKeyRotated { .. } | AuditEvent::AuditPurged { .. });
        if rec.seq % self.checkpoint_every == 0 || now_signed {
            // The record is already in the chain; a missed checkpoint is covered by the next.
            let signed = Checkpoint::sign(self.signer.as_ref(), &rec, self.clock.now());
            match signed {
                Ok(cp) => {
                    if let Err(e) = self.storage.insert_audit_checkpoint(&cp).await {
                        tracing::warn!(seq = rec.seq, error = %e, "could not store an audit checkpoint");
                    }
                }
                Err(e) => tracing::warn!(seq = rec.seq, error = %e, "could not sign an audit checkpoint"),
            }
        }
        Ok(())
    }
}
