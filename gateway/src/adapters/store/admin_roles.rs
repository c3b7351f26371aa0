//! The `AdminRoleStore` port on SQL: table `admin_roles`.
use super::{SqlStore, corrupt, unavailable};
use crate::domain::admin::{AdminRole, AdminRoleStore};
use crate::domain::ports::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::EntityTrait;
use sea_orm::sea_query::OnConflict;
use uuid::Uuid;

mod admin_role {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "admin_roles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        pub role: String,
        pub granted_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

#[async_trait]
impl AdminRoleStore for SqlStore {
    async fn admin_role(&self, account_id: Uuid) -> Result<Option<AdminRole>, StoreError> {
        let row = admin_role::Entity::find_by_id(account_id.to_string())
            .one(self.connection())
            .await
            .map_err(unavailable)?;
        row.map(|r| AdminRole::parse(&r.role).ok_or_else(|| corrupt("admin role", &r.role)))
            .transpose()
    }

    async fn set_admin_role(&self, account_id: Uuid, role: Option<AdminRole>, at: DateTime<Utc>) -> Result<(), StoreError> {
        match role {
            None => {
                admin_role::Entity::delete_by_id(account_id.to_string())
                    .exec(self.connection())
                    .await
                    .map_err(unavailable)?;
            }
            Some(role) => {
                let row = admin_role::ActiveModel {
                    account_id: Set(account_id.to_string()),
                    role: Set(role.as_str().to_owned()),
                    granted_at: Set(at),
                };
                admin_role::Entity::insert(row)
                    .on_conflict(
                        OnConflict::column(admin_role::Column::AccountId)
                            .update_columns([admin_role::Column::Role, admin_role::Column::GrantedAt])
                            .to_owned(),
                    )
                    .exec(self.connection())
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }
}
