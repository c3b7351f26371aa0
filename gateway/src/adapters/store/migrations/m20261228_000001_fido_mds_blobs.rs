//! The FIDO MDS3 blobs Relais has used (`fido_mds_blobs`), one row per blob number: a replica
//! started with a blob older than the newest one used refuses to start (a rollback to a blob
//! written before a model was reported compromised).
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("fido_mds_blobs")
                .col(big_integer("number").primary_key())
                .col(string("next_update"))
                .col(timestamp_with_time_zone("first_used_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("fido_mds_blobs").to_owned()).await
    }
}
