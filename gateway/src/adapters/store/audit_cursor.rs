//! The durable cursor and the lease of each SIEM forwarding destination (`audit_forward_cursors`).
//!
//! The lease is a row, not a PostgreSQL advisory lock: it works the same on SQLite, survives
//! pooled connections being recycled, and every cursor advance is fenced by it (an UPDATE that
//! names the holder), so a replica that lost its lease while stalled cannot move the cursor.
use super::{SqlStore, unavailable};
use crate::domain::ports::StoreError;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

pub mod entity {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_forward_cursors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub destination: String,
        /// Last seq delivered to the destination (0: nothing yet).
        pub seq: i64,
        pub updated_at: DateTimeUtc,
        /// The replica forwarding to this destination, while its lease runs.
        pub holder: Option<String>,
        pub lease_until_ms: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column as C, Entity};

/// One destination's row, for `relais audit forward-status`.
#[derive(Debug, Clone)]
pub struct ForwardCursor {
    pub destination: String,
    pub seq: i64,
    pub updated_at: DateTime<Utc>,
    pub holder: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
}

impl SqlStore {
    /// Takes or renews the lease of `destination` for `holder` until `until`. Returns the cursor
    /// when `holder` holds the lease, `None` when another replica does.
    pub async fn forward_lease(
        &self,
        destination: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let db = self.connection();
        if Entity::find_by_id(destination).one(db).await.map_err(unavailable)?.is_none() {
            let row = entity::ActiveModel {
                destination: Set(destination.to_owned()),
                seq: Set(0),
                updated_at: Set(now),
                holder: Set(None),
                lease_until_ms: Set(0),
            };
            // Two replicas may create it at once: the loser's insert conflicts, which is fine.
            match Entity::insert(row).exec(db).await.map_err(unavailable) {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let taken = Entity::update_many()
            .col_expr(C::Holder, Expr::value(holder))
            .col_expr(C::LeaseUntilMs, Expr::value(until.timestamp_millis()))
            .filter(C::Destination.eq(destination))
            .filter(
                Condition::any()
                    .add(C::Holder.is_null())
                    .add(C::Holder.eq(holder))
                    .add(C::LeaseUntilMs.lt(now.timestamp_millis())),
            )
            .exec(db)
            .await
            .map_err(unavailable)?;
        if taken.rows_affected != 1 {
            return Ok(None);
        }
        Ok(Entity::find_by_id(destination).one(db).await.map_err(unavailable)?.map(|m| m.seq))
    }

    /// Moves the cursor forward to `seq`, only while `holder` holds the lease. `false`: the
    /// lease was lost (another replica forwards now) and nothing was changed.
    pub async fn advance_forward_cursor(&self, destination: &str, holder: &str, seq: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let res = Entity::update_many()
            .col_expr(C::Seq, Expr::value(seq))
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Destination.eq(destination))
            .filter(C::Holder.eq(holder))
            .filter(C::Seq.lte(seq))
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected == 1)
    }

    /// Gives the lease up (graceful stop), so another replica can take over at once.
    pub async fn release_forward_lease(&self, destination: &str, holder: &str) -> Result<(), StoreError> {
        Entity::update_many()
            .col_expr(C::Holder, Expr::value(Option::<String>::None))
            .col_expr(C::LeaseUntilMs, Expr::value(0i64))
            .filter(C::Destination.eq(destination))
            .filter(C::Holder.eq(holder))
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn forward_cursors(&self) -> Result<Vec<ForwardCursor>, StoreError> {
        Ok(Entity::find()
            .order_by_asc(C::Destination)
            .all(self.connection())
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|m| ForwardCursor {
                destination: m.destination,
                seq: m.seq,
                updated_at: m.updated_at,
                lease_until: m.holder.as_ref().and_then(|_| DateTime::from_timestamp_millis(m.lease_until_ms)),
                holder: m.holder,
            })
            .collect())
    }

    /// The seq through which every destination in `names` has received the chain: the lowest
    /// cursor, 0 for a destination that has no cursor yet. `None` without destinations. A purge
    /// keeps everything after it.
    pub async fn forwarded_through(&self, names: &[&str]) -> Result<Option<i64>, StoreError> {
        if names.is_empty() {
            return Ok(None);
        }
        let cursors = self.forward_cursors().await?;
        Ok(names
            .iter()
            .map(|n| cursors.iter().find(|c| c.destination == *n).map_or(0, |c| c.seq))
            .min())
    }
}
