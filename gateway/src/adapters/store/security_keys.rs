//! The `SecurityKeyStore` port on SQL: security keys and enrolment codes.
use super::entities::{enrolment_code, security_key};
use super::{SqlStore, corrupt, unavailable};
use crate::domain::fido2::{EnrolmentCode, SecurityKeyRecord};
use crate::domain::ports::{SecurityKeyStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QueryTrait, Statement};
use uuid::Uuid;

fn from_row(m: security_key::Model) -> Result<SecurityKeyRecord, StoreError> {
    Ok(SecurityKeyRecord {
        id: Uuid::parse_str(&m.id).map_err(|e| corrupt("key id", e))?,
        account_id: Uuid::parse_str(&m.account_id).map_err(|e| corrupt("account id", e))?,
        credential_id: m.credential_id,
        credential: m.credential,
        aaguid: Uuid::parse_str(&m.aaguid).map_err(|e| corrupt("aaguid", e))?,
        name: m.name,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
        // The flag is what queries filter on; the time is for people.
        revoked_at: if m.revoked {
            Some(m.revoked_at.unwrap_or(m.created_at))
        } else {
            None
        },
    })
}

/// A key's new sign counter (inside its credential) and last use: run alone by
/// `record_security_key_use`, and inside an audit batch (`AuditedWrite::SecurityKeyUse`).
pub(super) fn record_use_statement(backend: DbBackend, id: Uuid, credential: &str, at: DateTime<Utc>) -> Statement {
    security_key::Entity::update_many()
        .col_expr(security_key::Column::Credential, Expr::value(credential.to_owned()))
        .col_expr(security_key::Column::LastUsedAt, Expr::value(at))
        .filter(security_key::Column::Id.eq(id.to_string()))
        .build(backend)
}

#[async_trait]
impl SecurityKeyStore for SqlStore {
    async fn security_keys(&self, account_id: Uuid) -> Result<Vec<SecurityKeyRecord>, StoreError> {
        security_key::Entity::find()
            .filter(security_key::Column::AccountId.eq(account_id.to_string()))
            .order_by_asc(security_key::Column::CreatedAt)
            .all(self.reads())
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn insert_security_key(&self, k: &SecurityKeyRecord) -> Result<(), StoreError> {
        let row = security_key::ActiveModel {
            id: Set(k.id.to_string()),
            account_id: Set(k.account_id.to_string()),
            credential_id: Set(k.credential_id.clone()),
            credential: Set(k.credential.clone()),
            aaguid: Set(k.aaguid.to_string()),
            name: Set(k.name.clone()),
            created_at: Set(k.created_at),
            last_used_at: Set(k.last_used_at),
            revoked: Set(k.revoked_at.is_some()),
            revoked_at: Set(k.revoked_at),
        };
        security_key::Entity::insert(row)
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_security_key_use(&self, id: Uuid, credential: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let db = self.connection();
        db.execute_raw(record_use_statement(db.get_database_backend(), id, credential, at))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_security_key(&self, account_id: Uuid, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let res = security_key::Entity::update_many()
            .col_expr(security_key::Column::Revoked, Expr::value(true))
            .col_expr(security_key::Column::RevokedAt, Expr::value(at))
            .filter(security_key::Column::Id.eq(id.to_string()))
            .filter(security_key::Column::AccountId.eq(account_id.to_string()))
            .filter(security_key::Column::Revoked.eq(false))
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected == 1)
    }

    async fn insert_enrolment_code(&self, c: &EnrolmentCode) -> Result<(), StoreError> {
        let row = enrolment_code::ActiveModel {
            digest: Set(c.digest.clone()),
            account_id: Set(c.account_id.to_string()),
            created_at: Set(c.created_at),
            expires_at: Set(c.expires_at),
            used_at: Set(c.used_at),
        };
        enrolment_code::Entity::insert(row)
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn live_enrolment_code(&self, digest: &str, account_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let row = enrolment_code::Entity::find_by_id(digest.to_owned())
            .one(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(row.is_some_and(|r| r.account_id == account_id.to_string() && r.used_at.is_none() && r.expires_at > now))
    }

    async fn consume_enrolment_code(&self, digest: &str, account_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        // One conditional UPDATE: a code enrols one key, even with concurrent ceremonies.
        let res = enrolment_code::Entity::update_many()
            .col_expr(enrolment_code::Column::UsedAt, Expr::value(now))
            .filter(enrolment_code::Column::Digest.eq(digest))
            .filter(enrolment_code::Column::AccountId.eq(account_id.to_string()))
            .filter(enrolment_code::Column::UsedAt.is_null())
            .filter(enrolment_code::Column::ExpiresAt.gt(now))
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected == 1)
    }
}
