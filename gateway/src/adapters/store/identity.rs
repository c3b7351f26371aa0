//! The `IdentityStore` port on SQL.
use super::entities::{account, identity_review, national_identity, terms_acceptance};
use super::{SqlStore, account_from_row, corrupt, unavailable};
use crate::domain::account::Account;
use crate::domain::identity::{IdNat, NationalIdentity, Provenance};
use crate::domain::identity_import::{ReviewItem, ReviewReason};
use crate::domain::ports::{IdentityStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Statement, TransactionTrait};
use uuid::Uuid;

fn from_row(m: national_identity::Model) -> Result<NationalIdentity, StoreError> {
    Ok(NationalIdentity {
        account_id: Uuid::parse_str(&m.account_id).map_err(|e| corrupt("account id", e))?,
        idnat: IdNat::parse(&m.idnat).map_err(|e| corrupt("idnat", e))?,
        provenance: Provenance::parse(&m.provenance).ok_or_else(|| corrupt("provenance", &m.provenance))?,
        verified: m.verified,
        profession: m.profession,
    })
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        account::Entity::find()
            .order_by_asc(account::Column::Username)
            .all(self.connection())
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(account_from_row)
            .collect()
    }

    /// The database narrows the search with a case-insensitive `LIKE` (ASCII case folding),
    /// then Rust's Unicode lower-casing decides (`account::matches`). An ASCII `q` is the
    /// pattern itself, at most `limit` rows read. A `q` with accents ("hélène") is narrowed
    /// by its longest ASCII part ("ne"): every field containing `q` contains that part, so
    /// nothing is missed, and only the rows holding it are read; a `q` with no ASCII at all
    /// reads every account.
    async fn search_accounts(&self, q: &str, limit: u64) -> Result<Vec<Account>, StoreError> {
        let narrowing = longest_ascii_part(q);
        if narrowing.is_empty() {
            return Ok(self
                .accounts()
                .await?
                .into_iter()
                .filter(|a| crate::domain::account::matches(a, q))
                .take(limit as usize)
                .collect());
        }
        let backend = self.connection().get_database_backend();
        let pattern = format!("%{}%", narrowing.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        // SQLite's LIKE ignores ASCII case; PostgreSQL's needs ILIKE.
        let (like, p) = match backend {
            DatabaseBackend::Postgres => ("ILIKE", ["$1", "$2", "$3"]),
            _ => ("LIKE", ["?", "?", "?"]),
        };
        // Rows matching only the ASCII part are dropped below, so a narrowed search cannot
        // stop the database at `limit` rows.
        let limit_clause = if narrowing.len() == q.len() {
            format!(" LIMIT {limit}")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT * FROM accounts WHERE username {like} {} ESCAPE '\\' OR display_name {like} {} ESCAPE '\\' \
             OR email {like} {} ESCAPE '\\' ORDER BY username{limit_clause}",
            p[0], p[1], p[2]
        );
        let values: [sea_orm::Value; 3] = [pattern.clone().into(), pattern.clone().into(), pattern.into()];
        let rows = account::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
            .all(self.connection())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len().min(limit as usize));
        for m in rows {
            let a = account_from_row(m)?;
            if crate::domain::account::matches(&a, q) {
                out.push(a);
                if out.len() as u64 == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn national_ids(&self, account_id: Uuid) -> Result<Vec<NationalIdentity>, StoreError> {
        national_identity::Entity::find()
            .filter(national_identity::Column::AccountId.eq(account_id.to_string()))
            .order_by_asc(national_identity::Column::Idnat)
            .all(self.reads())
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn all_national_ids(&self) -> Result<Vec<NationalIdentity>, StoreError> {
        national_identity::Entity::find()
            .all(self.connection())
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn national_id(&self, idnat: &IdNat) -> Result<Option<NationalIdentity>, StoreError> {
        national_identity::Entity::find_by_id(idnat.to_string())
            .one(self.reads())
            .await
            .map_err(unavailable)?
            .map(from_row)
            .transpose()
    }

    async fn put_national_ids(&self, ids: &[NationalIdentity]) -> Result<(), StoreError> {
        let txn = self.connection().begin().await.map_err(unavailable)?;
        let now = Utc::now();
        for n in ids {
            let row = national_identity::ActiveModel {
                idnat: Set(n.idnat.to_string()),
                account_id: Set(n.account_id.to_string()),
                kind: Set(n.idnat.kind().as_str().into()),
                provenance: Set(n.provenance.as_str().into()),
                verified: Set(n.verified),
                profession: Set(n.profession.clone()),
                updated_at: Set(now),
            };
            match national_identity::Entity::find_by_id(n.idnat.to_string())
                .one(&txn)
                .await
                .map_err(unavailable)?
            {
                Some(existing) if existing.account_id != n.account_id.to_string() => {
                    // Dropping the transaction rolls it back: all or none.
                    return Err(StoreError::Conflict(format!("{} is mapped to another person", n.idnat)));
                }
                Some(_) => {
                    national_identity::Entity::update(row).exec(&txn).await.map_err(unavailable)?;
                }
                None => {
                    national_identity::Entity::insert(row).exec(&txn).await.map_err(unavailable)?;
                }
            }
        }
        txn.commit().await.map_err(unavailable)
    }

    async fn remove_national_id(&self, account_id: Uuid, idnat: &IdNat) -> Result<bool, StoreError> {
        let r = national_identity::Entity::delete_many()
            .filter(national_identity::Column::Idnat.eq(idnat.to_string()))
            .filter(national_identity::Column::AccountId.eq(account_id.to_string()))
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(r.rows_affected > 0)
    }

    async fn add_review_items(&self, items: &[ReviewItem]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let rows = items.iter().map(|r| identity_review::ActiveModel {
            id: NotSet,
            account_id: Set(r.account_id.to_string()),
            username: Set(r.username.clone()),
            candidates: Set(
                serde_json::to_string(&r.candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>()).expect("strings serialise"),
            ),
            reason: Set(r.reason.to_stored()),
            created_at: Set(Utc::now()),
        });
        identity_review::Entity::insert_many(rows)
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError> {
        let rows = identity_review::Entity::find()
            .order_by_asc(identity_review::Column::Id)
            .all(self.connection())
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|m| {
                let raw: Vec<String> = serde_json::from_str(&m.candidates).map_err(|e| corrupt("candidates", e))?;
                Ok(ReviewItem {
                    id: Some(m.id),
                    account_id: Uuid::parse_str(&m.account_id).map_err(|e| corrupt("account id", e))?,
                    username: m.username,
                    candidates: raw
                        .iter()
                        .map(|c| IdNat::parse(c).map_err(|e| corrupt("idnat", e)))
                        .collect::<Result<_, _>>()?,
                    reason: ReviewReason::from_stored(&m.reason),
                })
            })
            .collect()
    }

    async fn remove_review_item(&self, id: i64) -> Result<bool, StoreError> {
        let r = identity_review::Entity::delete_by_id(id)
            .exec(self.connection())
            .await
            .map_err(unavailable)?;
        Ok(r.rows_affected > 0)
    }

    async fn terms_accepted(&self, account_id: Uuid, version: &str) -> Result<bool, StoreError> {
        Ok(terms_acceptance::Entity::find_by_id((account_id.to_string(), version.to_owned()))
            .one(self.connection())
            .await
            .map_err(unavailable)?
            .is_some())
    }

    async fn accept_terms(&self, account_id: Uuid, version: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        if self.terms_accepted(account_id, version).await? {
            return Ok(());
        }
        let row = terms_acceptance::ActiveModel {
            account_id: Set(account_id.to_string()),
            version: Set(version.to_owned()),
            accepted_at: Set(at),
        };
        match terms_acceptance::Entity::insert(row)
            .exec(self.connection())
            .await
            .map_err(unavailable)
        {
            // Accepted twice at once (two tabs): the first record stands.
            Err(StoreError::Conflict(_)) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// One of the longest runs of ASCII characters in `q`: what the database
/// can match case-insensitively for a search that has accents.
fn longest_ascii_part(q: &str) -> &str {
    q.split(|c: char| !c.is_ascii()).max_by_key(|part| part.len()).unwrap_or_default()
}
