//! Accounts that live in a directory (LDAP/AD): `directory_id` is `<directory name>:<stable id>`
//! (entryUUID, objectGUID). The Relais account, hence `sub`, is found by it, so a renamed
//! person keeps their `sub`. Local accounts leave it NULL.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("accounts")
                .add_column(ColumnDef::new("directory_id").string().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("accounts_directory_id")
                .table("accounts")
                .col("directory_id")
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("accounts_directory_id").table("accounts").to_owned())
            .await?;
        m.alter_table(Table::alter().table("accounts").drop_column("directory_id").to_owned())
            .await
    }
}
