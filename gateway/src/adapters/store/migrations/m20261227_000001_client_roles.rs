//! Per-client roles: an application reserved to people holding one of the listed roles
//! (`clients.required_roles`, a JSON array; NULL or empty: anyone who logs in).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("clients")
                .add_column(ColumnDef::new("required_roles").text().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("clients").drop_column("required_roles").to_owned())
            .await
    }
}
