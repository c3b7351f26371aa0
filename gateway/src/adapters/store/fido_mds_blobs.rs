//! The FIDO MDS3 blobs Relais has used (`fido_mds_blobs`): one row per blob number, so that a
//! blob older than the newest one used is refused. FIDO numbers its blobs in sequence (`no`),
//! and its processing rules, as we read them, tell a relying party to ignore a blob whose
//! number is not above the last one it took (the section was not re-checked here; the same
//! number again is accepted: it is the blob already in use, after a restart or on another
//! replica). The blob file is an admin's copy on disk;
//! without this row an attacker (or a restored backup of `/etc`) could put back a blob written
//! before a key model was reported compromised, and the model would be admitted again.
use super::{SqlStore, unavailable};
use crate::domain::ports::StoreError;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{EntityTrait, QueryOrder};

pub mod entity {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "fido_mds_blobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub number: i64,
        pub next_update: String,
        pub first_used_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column as C, Entity};

/// What the database says of a blob about to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdsBlobAdmission {
    /// No blob was used before: this one is the first.
    First,
    /// The blob already in use (a restart, another replica).
    Same,
    /// A newer blob than the last one used.
    Newer { previous: u64 },
    /// Older than a blob already used: refused.
    Older { newest: u64, newest_since: DateTime<Utc> },
}

impl SqlStore {
    /// Admits the blob numbered `number` unless a newer one was used before; an admitted blob is
    /// remembered (from `now`). Two replicas admitting the same new blob at once both succeed.
    pub async fn admit_mds_blob(&self, number: u64, next_update: &str, now: DateTime<Utc>) -> Result<MdsBlobAdmission, StoreError> {
        let db = self.connection();
        // FIDO's numbers are small; one past i64 is not a blob anyone signed.
        let n = i64::try_from(number).map_err(|_| StoreError::Conflict(format!("MDS blob number {number} is out of range")))?;
        let newest = Entity::find().order_by_desc(C::Number).one(db).await.map_err(unavailable)?;
        let admission = match &newest {
            None => MdsBlobAdmission::First,
            Some(row) if row.number == n => MdsBlobAdmission::Same,
            Some(row) if row.number > n => {
                return Ok(MdsBlobAdmission::Older {
                    newest: row.number as u64,
                    newest_since: row.first_used_at,
                });
            }
            Some(row) => MdsBlobAdmission::Newer {
                previous: row.number as u64,
            },
        };
        if admission != MdsBlobAdmission::Same {
            let row = entity::ActiveModel {
                number: Set(n),
                next_update: Set(next_update.to_owned()),
                first_used_at: Set(now),
            };
            match Entity::insert(row).exec(db).await.map_err(unavailable) {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(admission)
    }
}
