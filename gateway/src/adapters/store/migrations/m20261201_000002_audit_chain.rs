//! The audit hash chain (issue #6): `prev_hash`/`hash` and searchable `account_id`/`client_id`
//! columns on `audit_events`, the single-row `audit_head` that serialises appends, the signed
//! `audit_checkpoints`, and the indexes of the admin search. Rows written before this migration
//! are chained here, renumbered gap-free in their original order.
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContextRecord};
use crate::domain::audit_chain::{ChainedRecord, GENESIS};
use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for col in [
            string_null("account_id"),
            string_null("client_id"),
            string("prev_hash").default("").to_owned(),
            string("hash").default("").to_owned(),
        ] {
            let mut col = col;
            m.alter_table(Table::alter().table("audit_events").add_column(&mut col).to_owned())
                .await?;
        }
        m.create_table(
            Table::create()
                .table("audit_head")
                .col(integer("id").primary_key())
                .col(big_integer("seq"))
                .col(string("hash"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("audit_checkpoints")
                .col(big_integer("seq").primary_key())
                .col(timestamp_with_time_zone("at"))
                .col(string("hash"))
                .col(string("kid"))
                .col(text("jwk"))
                .col(text("signature"))
                .to_owned(),
        )
        .await?;
        // Every search is "filter, newest first by seq": (filter column, seq) serves both.
        for (name, col) in [
            ("idx_audit_account", "account_id"),
            ("idx_audit_client", "client_id"),
            ("idx_audit_source_ip", "source_ip"),
            ("idx_audit_type_seq", "event_type"),
        ] {
            m.create_index(Index::create().name(name).table("audit_events").col(col).col("seq").to_owned())
                .await?;
        }
        let (seq, hash) = chain_existing_rows(m).await?;
        m.exec_stmt(
            Query::insert()
                .into_table("audit_head")
                .columns(["id", "seq", "hash"])
                .values_panic([1.into(), seq.into(), hash.into()])
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["audit_checkpoints", "audit_head"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// Hashes the rows that predate the chain; returns the new head.
async fn chain_existing_rows(m: &SchemaManager<'_>) -> Result<(i64, String), DbErr> {
    let db = m.get_connection();
    let rows = db
        .query_all_raw(Statement::from_string(
            m.get_database_backend(),
            "SELECT seq, at, source_ip, user_agent, correlation_id, event FROM audit_events ORDER BY seq",
        ))
        .await?;
    let mut prev = (0i64, GENESIS.to_owned());
    for row in rows {
        let old_seq: i64 = row.try_get("", "seq")?;
        let event: AuditEvent =
            serde_json::from_str(&row.try_get::<String>("", "event")?).map_err(|e| DbErr::Custom(format!("audit row {old_seq}: {e}")))?;
        let record = AuditRecord {
            at: row.try_get("", "at")?,
            event,
            context: RequestContextRecord {
                source_ip: row.try_get("", "source_ip")?,
                user_agent: row.try_get("", "user_agent")?,
                correlation_id: row.try_get("", "correlation_id")?,
            },
        };
        let c = ChainedRecord::new(prev.0 + 1, &record, &prev.1);
        // Ascending order and new seq <= old seq: the target seq is always free.
        m.exec_stmt(
            Query::update()
                .table("audit_events")
                .values([
                    ("seq", c.seq.into()),
                    ("at", c.at.into()),
                    ("event_type", c.event_type.clone().into()),
                    ("outcome", c.outcome.clone().into()),
                    ("account_id", c.account_id.clone().into()),
                    ("client_id", c.client_id.clone().into()),
                    ("event", c.event.clone().into()),
                    ("prev_hash", c.prev_hash.clone().into()),
                    ("hash", c.hash.clone().into()),
                ])
                .and_where(Expr::col("seq").eq(old_seq))
                .to_owned(),
        )
        .await?;
        prev = (c.seq, c.hash);
    }
    Ok(prev)
}
