//! Schema migrations, run at start and by `relais migrate`. One file per migration: sea-orm
//! names each migration after its module.
use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_identity;
mod m20261201_000001_security_keys;
mod m20261201_000002_audit_chain;
mod m20261210_000002_directory_accounts;
mod m20261215_000001_audit_forward;
mod m20261216_000001_admin_roles;
mod m20261220_000001_audit_at_seq;
mod m20261227_000001_client_roles;
mod m20261228_000001_fido_mds_blobs;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_identity::Migration),
            Box::new(m20261201_000002_audit_chain::Migration),
            Box::new(m20261210_000002_directory_accounts::Migration),
            Box::new(m20261201_000001_security_keys::Migration),
            Box::new(m20261215_000001_audit_forward::Migration),
            Box::new(m20261216_000001_admin_roles::Migration),
            Box::new(m20261220_000001_audit_at_seq::Migration),
            Box::new(m20261227_000001_client_roles::Migration),
            Box::new(m20261228_000001_fido_mds_blobs::Migration),
        ]
    }
}
