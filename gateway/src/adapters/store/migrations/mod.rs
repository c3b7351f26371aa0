//! Schema migrations, run at start and by `relais migrate`. One file per migration: sea-orm
//! names each migration after its module.
use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_identity;
mod m20261201_000001_security_keys;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_identity::Migration),
            Box::new(m20261201_000001_security_keys::Migration),
        ]
    }
}
