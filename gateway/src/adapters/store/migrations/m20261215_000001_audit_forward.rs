//! SIEM forwarding (issue #6): one row per `[[audit.forward]]` destination with the `seq` of the
//! last record the SIEM's TCP stack acknowledged, and the lease that lets exactly one replica
//! forward to that destination.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("audit_forward_cursors")
                .col(string("destination").primary_key())
                .col(big_integer("seq"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(string_null("holder"))
                // Unix milliseconds: compared as numbers on both databases.
                .col(big_integer("lease_until_ms").default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("audit_forward_cursors").to_owned()).await
    }
}
