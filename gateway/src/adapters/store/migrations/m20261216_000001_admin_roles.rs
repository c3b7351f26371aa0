//! Admin UI roles: which accounts may open the admin UI, as `admin` or read-only `auditor`.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("admin_roles")
                .col(string("account_id").primary_key())
                .col(string("role"))
                .col(timestamp_with_time_zone("granted_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("admin_roles").to_owned()).await
    }
}
