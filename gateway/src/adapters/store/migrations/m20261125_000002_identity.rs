//! National identities, the review queue of ambiguous matches, terms-of-use acceptances.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("national_identities")
                // One person per idNat, enforced by the database.
                .col(string("idnat").primary_key())
                .col(string("account_id"))
                .col(string("kind"))
                .col(string("provenance"))
                .col(boolean("verified"))
                .col(string_null("profession"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_natid_account")
                .table("national_identities")
                .col("account_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("identity_review")
                .col(big_pk_auto("id"))
                .col(string("account_id"))
                .col(string("username"))
                .col(text("candidates"))
                .col(string("reason"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("terms_acceptances")
                .col(string("account_id"))
                .col(string("version"))
                .col(timestamp_with_time_zone("accepted_at"))
                .primary_key(Index::create().col("account_id").col("version"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["terms_acceptances", "identity_review", "national_identities"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
