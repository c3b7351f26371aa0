//! The audit sink on SQL. Every record also goes to the structured log.
use crate::domain::audit::AuditRecord;
use crate::domain::ports::{AuditSink, Storage, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

pub struct SqlAuditSink {
    storage: Arc<dyn Storage>,
}

impl SqlAuditSink {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }
}

#[async_trait]
impl AuditSink for SqlAuditSink {
    async fn record(&self, record: AuditRecord) -> Result<(), StoreError> {
        tracing::info!(target: "relais::audit", event = record.event.kind(), outcome = ?record.event.outcome(), source_ip = record.context.source_ip.as_deref().unwrap_or("-"), detail = %serde_json::to_string(&record.event).unwrap_or_default(), "audit");
        self.storage.append_audit(&record).await
    }
}
