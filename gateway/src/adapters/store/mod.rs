//! Durable storage on SQL through sea-orm: SQLite (embedded default) or PostgreSQL, chosen by
//! the URL. Implements the domain's `Storage` port.
mod admin_roles;
mod audit_append;
pub mod audit_cursor;
mod checkpoint;
mod client_cache;
mod entities;
pub mod fido_mds_blobs;
mod identity;
pub mod migrations;
mod security_keys;

use crate::domain::account::Account;
use crate::domain::audit::AuditRecord;
use crate::domain::audit_chain::{AuditCount, AuditPage, AuditQuery, ChainedRecord, Checkpoint, GENESIS, Order};
use crate::domain::client::{Client, ClientKind, TokenAuthMethod};
use crate::domain::ports::{Storage, StoreError};
use crate::domain::records::{AuditAppend, RefreshConsume, RefreshTokenRecord, SigningAlg, StoredSigningKey};
use crate::protocol::{ClientId, RedirectUri, Scopes};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use entities::{account, audit_checkpoint, audit_event, audit_head, client, refresh_token, signing_key};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, SqlErr, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    /// Plain reads on the hot paths (accounts, keys, national ids). On SQLite a pool of its own,
    /// so that they do not queue behind the one writing connection; on PostgreSQL `db` again.
    reads: DatabaseConnection,
    clients: std::sync::Arc<client_cache::ClientCache>,
    /// SQLite only: the WAL checkpoints, off the commit path (`checkpoint.rs`).
    _checkpoints: Option<std::sync::Arc<checkpoint::Checkpointer>>,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// PostgreSQL only: the schema to work in (tests give each run its own).
    pub schema: Option<String>,
    /// SQLite only: the WAL size past which the checkpoint task makes it start over
    /// (`checkpoint.rs`); the WAL file is cut back to this size when it does.
    pub sqlite_wal_restart_bytes: u64,
}

pub(super) fn unavailable(e: DbErr) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(m)) => StoreError::Conflict(m),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Turns on SQLite's query planner stability guarantee on a new connection. Without it, SQLite
/// (3.47 and later) plans `LIMIT ?` with the bound value, so binding a new value expires the
/// prepared statement: every `find(..).one()` (sea-orm binds its `LIMIT 1`) was parsed and
/// planned again at each run, 6 % of the token endpoint's CPU. With it, the bound values never
/// change a plan and a statement is prepared once per connection. Relais does not `ANALYZE`
/// SQLite and has no `LIKE ?` on an indexed column, the other two users of bound values in
/// SQLite's planner (docs/performance.md).
async fn plan_once(conn: &mut sea_orm::sqlx::SqliteConnection) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, held locked (no other thread uses it)
    // until `handle` drops; SQLITE_DBCONFIG_ENABLE_QPSG takes an int and an optional int* out.
    let rc = unsafe { libsqlite3_sys::sqlite3_db_config(db, libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG, 1, std::ptr::null_mut::<i32>()) };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sea_orm::sqlx::Error::Protocol(format!(
            "sqlite3_db_config(ENABLE_QPSG) returned {rc}"
        )));
    }
    Ok(())
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl SqlStore {
    pub async fn connect(s: &DbSettings) -> Result<Self, StoreError> {
        let sqlite = s.url.starts_with("sqlite:");
        let wal_limit = s.sqlite_wal_restart_bytes;
        let options = |connections: u32, query_only: bool| {
            let mut opt = ConnectOptions::new(s.url.clone());
            opt.max_connections(connections)
                .connect_timeout(s.connect_timeout)
                .acquire_timeout(s.connect_timeout)
                .sqlx_logging(false)
                // Spans (telemetry) name the operation only: statement text is bulk in every trace.
                .record_stmt_in_spans(false);
            // sqlx pings a connection when it goes back to the pool (a broken one is closed
            // there) and, by default, again when it is taken out: a second round trip per
            // query (on SQLite, two more thread hand-offs). A local SQLite file cannot drop
            // a connection; a PostgreSQL server or a firewall can drop an idle one, so those
            // are still checked, but only after 30 s of idleness.
            if sqlite {
                opt.test_before_acquire(false);
            } else {
                opt.test_before_acquire_if_idle_for(Duration::from_secs(30));
            }
            if let Some(schema) = &s.schema {
                opt.set_schema_search_path(schema.clone());
            }
            opt.map_sqlx_sqlite_pool_opts(|pool| pool.after_connect(|conn, _| Box::pin(plan_once(conn))));
            // Set on every connection the pool opens (a pool replaces its connections over
            // time): WAL lets readers proceed while the writer commits; NORMAL syncs the WAL at
            // checkpoints, not at each commit (a power cut can lose the last commits, never
            // corrupt the file); a busy timeout instead of SQLITE_BUSY errors.
            opt.map_sqlx_sqlite_opts(move |o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_millis(checkpoint::BUSY_TIMEOUT_MS))
                    .pragma("query_only", if query_only { "1" } else { "0" })
                    // Checkpoints run in the background (`checkpoint.rs`), not in a commit.
                    .pragma("wal_autocheckpoint", "0")
                    // When the WAL starts over, its file is cut back to this size.
                    .pragma("journal_size_limit", wal_limit.to_string())
            });
            opt
        };
        // SQLite has one writer at a time; with several pooled writing connections, writers
        // wait in SQLite's busy handler (sleeps of up to 100 ms). One connection queues them
        // instead, and each statement takes microseconds. Reads get their own small pool: in
        // WAL mode they never wait for the writer, and a login's reads no longer queue behind
        // the audit trail's group commits.
        let db = Database::connect(options(if sqlite { 1 } else { s.max_connections }, false))
            .await
            .map_err(unavailable)?;
        let (reads, checkpoints) = if sqlite {
            let reads = Database::connect(options(s.max_connections.clamp(1, 4), true))
                .await
                .map_err(unavailable)?;
            let checkpoints = Database::connect(options(1, false)).await.map_err(unavailable)?;
            (
                reads,
                Some(std::sync::Arc::new(checkpoint::Checkpointer::start(
                    checkpoints,
                    db.clone(),
                    wal_limit,
                ))),
            )
        } else {
            (db.clone(), None)
        };
        Ok(Self {
            db,
            reads,
            clients: Default::default(),
            _checkpoints: checkpoints,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::Migrator::up(&self.db, None).await.map_err(unavailable)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// For plain reads outside a transaction (see `reads`).
    pub(super) fn reads(&self) -> &DatabaseConnection {
        &self.reads
    }

    /// Inserts local accounts many rows per statement, in one transaction (bulk loads such as
    /// the admin bench's 10,000 people; `insert_account` is one statement per account).
    pub async fn insert_accounts(&self, accounts: &[Account]) -> Result<(), StoreError> {
        let txn = self.db.begin().await.map_err(unavailable)?;
        let now = Utc::now();
        // SQLite allows at most 32,766 bind parameters per statement: 500 rows × 10 columns.
        for chunk in accounts.chunks(500) {
            account::Entity::insert_many(chunk.iter().map(|a| account_row(a, now, None)))
                .exec(&txn)
                .await
                .map_err(unavailable)?;
        }
        txn.commit().await.map_err(unavailable)
    }
}

fn uris_to_json(u: &[RedirectUri]) -> String {
    serde_json::to_string(&u.iter().map(|u| u.as_str()).collect::<Vec<_>>()).expect("strings serialise")
}

fn uris_from_json(s: &str) -> Result<Vec<RedirectUri>, StoreError> {
    let raw: Vec<String> = serde_json::from_str(s).map_err(|e| corrupt("redirect uris", e))?;
    raw.iter()
        .map(|u| RedirectUri::parse(u).map_err(|e| corrupt("redirect uri", e)))
        .collect()
}

fn client_from_row(m: client::Model) -> Result<Client, StoreError> {
    Ok(Client {
        id: ClientId::parse(&m.id).map_err(|e| corrupt("client id", e))?,
        name: m.name,
        kind: serde_json::from_value(serde_json::Value::String(m.kind)).map_err(|e| corrupt("client kind", e))?,
        auth_method: TokenAuthMethod::parse(&m.auth_method).ok_or_else(|| corrupt("auth method", &m.auth_method))?,
        secret_digest: m.secret_digest,
        jwks: m
            .jwks
            .map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(|e| corrupt("jwks", e))?,
        redirect_uris: uris_from_json(&m.redirect_uris)?,
        post_logout_redirect_uris: uris_from_json(&m.post_logout_redirect_uris)?,
        id_token_alg: SigningAlg::parse(&m.id_token_alg).ok_or_else(|| corrupt("alg", &m.id_token_alg))?,
        userinfo_signed_alg: m
            .userinfo_signed_alg
            .map(|a| SigningAlg::parse(&a).ok_or_else(|| corrupt("alg", a)))
            .transpose()?,
        min_acr: m.min_acr,
        max_auth_age: m.max_auth_age,
        allow_refresh: m.allow_refresh,
        may_introspect: m.may_introspect,
        enabled: m.enabled,
        required_roles: m
            .required_roles
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("required roles", e))?
            .unwrap_or_default(),
    })
}

fn client_to_row(c: &Client) -> client::ActiveModel {
    let kind = match c.kind {
        ClientKind::Local => "local",
        ClientKind::Psc => "psc",
    };
    client::ActiveModel {
        id: Set(c.id.to_string()),
        name: Set(c.name.clone()),
        kind: Set(kind.into()),
        auth_method: Set(c.auth_method.as_str().into()),
        secret_digest: Set(c.secret_digest.clone()),
        jwks: Set(c.jwks.as_ref().map(|j| j.to_string())),
        redirect_uris: Set(uris_to_json(&c.redirect_uris)),
        post_logout_redirect_uris: Set(uris_to_json(&c.post_logout_redirect_uris)),
        id_token_alg: Set(c.id_token_alg.as_str().into()),
        userinfo_signed_alg: Set(c.userinfo_signed_alg.map(|a| a.as_str().into())),
        min_acr: Set(c.min_acr.clone()),
        max_auth_age: Set(c.max_auth_age),
        allow_refresh: Set(c.allow_refresh),
        may_introspect: Set(c.may_introspect),
        enabled: Set(c.enabled),
        created_at: Set(Utc::now()),
        required_roles: Set((!c.required_roles.is_empty()).then(|| serde_json::json!(c.required_roles).to_string())),
    }
}

pub(super) fn account_from_row(m: account::Model) -> Result<Account, StoreError> {
    Ok(Account {
        id: Uuid::parse_str(&m.id).map_err(|e| corrupt("account id", e))?,
        username: m.username,
        display_name: m.display_name,
        given_name: m.given_name,
        family_name: m.family_name,
        email: m.email,
        password_hash: m.password_hash,
        disabled: m.disabled,
        directory_id: m.directory_id,
    })
}

fn refresh_from_row(m: refresh_token::Model) -> Result<RefreshTokenRecord, StoreError> {
    Ok(RefreshTokenRecord {
        token_digest: m.token_digest,
        family_id: Uuid::parse_str(&m.family_id).map_err(|e| corrupt("family id", e))?,
        client_id: ClientId::parse(&m.client_id).map_err(|e| corrupt("client id", e))?,
        account_id: Uuid::parse_str(&m.account_id).map_err(|e| corrupt("account id", e))?,
        session_id: m.session_id,
        scopes: Scopes::parse(&m.scopes).map_err(|e| corrupt("scopes", e))?,
        auth_time: m.auth_time,
        amr: serde_json::from_str(&m.amr).map_err(|e| corrupt("amr", e))?,
        acr: m.acr,
        created_at: m.created_at,
        expires_at: m.expires_at,
        used_at: m.used_at,
        revoked_at: m.revoked_at,
    })
}

fn key_from_row(m: signing_key::Model) -> Result<StoredSigningKey, StoreError> {
    Ok(StoredSigningKey {
        alg: SigningAlg::parse(&m.alg).ok_or_else(|| corrupt("alg", &m.alg))?,
        kid: m.kid,
        sealed_private_key: m.sealed_private_key,
        created_at: m.created_at,
        rotated_at: m.rotated_at,
        retire_at: m.retire_at,
    })
}

#[async_trait]
impl Storage for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(unavailable)
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        if let Some(c) = self.clients.get(id) {
            return Ok(Some(c));
        }
        let found = client::Entity::find_by_id(id.to_string())
            .one(self.reads())
            .await
            .map_err(unavailable)?
            .map(client_from_row)
            .transpose()?;
        if let Some(c) = &found {
            self.clients.put(c);
        }
        Ok(found)
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        client::Entity::find()
            .order_by_asc(client::Column::Id)
            .all(&self.db)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(client_from_row)
            .collect()
    }

    async fn insert_client(&self, c: &Client) -> Result<(), StoreError> {
        client::Entity::insert(client_to_row(c)).exec(&self.db).await.map_err(unavailable)?;
        Ok(())
    }

    async fn update_client(&self, c: &Client) -> Result<(), StoreError> {
        let mut row = client_to_row(c);
        row.created_at = sea_orm::ActiveValue::NotSet;
        client::Entity::update(row).exec(&self.db).await.map_err(unavailable)?;
        self.clients.forget(&c.id);
        Ok(())
    }

    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
        account::Entity::find_by_id(id.to_string())
            .one(self.reads())
            .await
            .map_err(unavailable)?
            .map(account_from_row)
            .transpose()
    }

    async fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError> {
        account::Entity::find()
            .filter(account::Column::Username.eq(username))
            .one(self.reads())
            .await
            .map_err(unavailable)?
            .map(account_from_row)
            .transpose()
    }

    async fn insert_account(&self, a: &Account) -> Result<(), StoreError> {
        account::Entity::insert(account_row(a, Utc::now(), None))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn upsert_directory_account(&self, directory_id: &str, a: &Account) -> Result<Account, StoreError> {
        let existing = account::Entity::find()
            .filter(account::Column::DirectoryId.eq(directory_id))
            .one(self.reads())
            .await
            .map_err(unavailable)?;
        match existing {
            Some(row) => {
                // The directory is the source of truth for names; the id (hence `sub`) stays.
                let id = row.id.clone();
                let unchanged = row.username == a.username
                    && row.display_name == a.display_name
                    && row.given_name == a.given_name
                    && row.family_name == a.family_name
                    && row.email == a.email
                    && row.disabled == a.disabled;
                if unchanged {
                    // Most logins: no write at all.
                    let id = Uuid::parse_str(&id).map_err(|e| corrupt("account id", e))?;
                    return Ok(Account { id, ..a.clone() });
                }
                let mut row: account::ActiveModel = row.into();
                row.username = Set(a.username.clone());
                row.display_name = Set(a.display_name.clone());
                row.given_name = Set(a.given_name.clone());
                row.family_name = Set(a.family_name.clone());
                row.email = Set(a.email.clone());
                row.disabled = Set(a.disabled);
                account::Entity::update(row).exec(&self.db).await.map_err(unavailable)?;
                let id = Uuid::parse_str(&id).map_err(|e| corrupt("account id", e))?;
                Ok(Account {
                    id,
                    directory_id: Some(directory_id.to_owned()),
                    ..a.clone()
                })
            }
            None => {
                let row = account_row(a, Utc::now(), Some(directory_id));
                match account::Entity::insert(row).exec(&self.db).await.map_err(unavailable) {
                    Ok(_) => Ok(Account {
                        password_hash: None,
                        directory_id: Some(directory_id.to_owned()),
                        ..a.clone()
                    }),
                    // Two first logins of the same person at once: the other one created the
                    // row; use it. (A conflict on the username alone is a real clash: kept.)
                    Err(StoreError::Conflict(why)) => {
                        let Some(row) = account::Entity::find()
                            .filter(account::Column::DirectoryId.eq(directory_id))
                            .one(&self.db)
                            .await
                            .map_err(unavailable)?
                        else {
                            return Err(StoreError::Conflict(why));
                        };
                        let id = Uuid::parse_str(&row.id).map_err(|e| corrupt("account id", e))?;
                        Ok(Account {
                            id,
                            password_hash: None,
                            directory_id: Some(directory_id.to_owned()),
                            ..a.clone()
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn set_account_password(&self, id: Uuid, password_hash: &str) -> Result<(), StoreError> {
        account::Entity::update_many()
            .col_expr(account::Column::PasswordHash, Expr::value(password_hash.to_owned()))
            .filter(account::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_account_disabled(&self, id: Uuid, disabled: bool) -> Result<(), StoreError> {
        account::Entity::update_many()
            .col_expr(account::Column::Disabled, Expr::value(disabled))
            .filter(account::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_refresh_token(&self, t: &RefreshTokenRecord) -> Result<(), StoreError> {
        refresh_token::Entity::insert(refresh_row(t))
            .exec_without_returning(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn refresh_token(&self, digest: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        refresh_token::Entity::find_by_id(digest.to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?
            .map(refresh_from_row)
            .transpose()
    }

    async fn consume_refresh_token(&self, digest: &str, now: DateTime<Utc>) -> Result<RefreshConsume, StoreError> {
        // One conditional UPDATE: the database decides the single winner across replicas.
        let res = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::TokenDigest.eq(digest))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        let Some(rec) = self.refresh_token(digest).await? else {
            return Ok(RefreshConsume::NotFound);
        };
        Ok(if res.rows_affected == 1 {
            RefreshConsume::Consumed(rec)
        } else if rec.revoked_at.is_none() && rec.used_at.is_some() {
            RefreshConsume::Reused(rec)
        } else {
            RefreshConsume::Invalid
        })
    }

    async fn revoke_refresh_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
            .filter(refresh_token::Column::FamilyId.eq(family_id.to_string()))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected)
    }

    async fn revoke_refresh_for_session(&self, session_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
            .filter(refresh_token::Column::SessionId.eq(session_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected)
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        signing_key::Entity::find()
            .order_by_asc(signing_key::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(key_from_row)
            .collect()
    }

    async fn insert_signing_key(&self, k: &StoredSigningKey) -> Result<(), StoreError> {
        let row = signing_key::ActiveModel {
            kid: Set(k.kid.clone()),
            alg: Set(k.alg.as_str().into()),
            sealed_private_key: Set(k.sealed_private_key.clone()),
            created_at: Set(k.created_at),
            rotated_at: Set(k.rotated_at),
            retire_at: Set(k.retire_at),
        };
        signing_key::Entity::insert(row).exec(&self.db).await.map_err(unavailable)?;
        Ok(())
    }

    async fn rotate_out_signing_keys(
        &self,
        alg: SigningAlg,
        keep_kid: &str,
        now: DateTime<Utc>,
        retire_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let res = signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RotatedAt, Expr::value(now))
            .col_expr(signing_key::Column::RetireAt, Expr::value(retire_at))
            .filter(signing_key::Column::Alg.eq(alg.as_str()))
            .filter(signing_key::Column::Kid.ne(keep_kid))
            .filter(signing_key::Column::RotatedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected)
    }

    async fn delete_retired_signing_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = signing_key::Entity::delete_many()
            .filter(signing_key::Column::RetireAt.lte(now))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected)
    }

    async fn append_audit(&self, r: &AuditRecord) -> Result<ChainedRecord, StoreError> {
        let mut v = self.append_audit_batch(std::slice::from_ref(r)).await?;
        v.pop().ok_or_else(|| StoreError::Corrupt("empty audit batch".into()))
    }

    async fn append_audit_batch_checked(&self, appends: &[AuditAppend]) -> Result<Vec<Option<ChainedRecord>>, StoreError> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => audit_append::append_sqlite(&self.db, appends).await,
            _ => audit_append::append(&self.db, appends).await,
        }
    }

    async fn audit_records(&self, limit: u64) -> Result<Vec<AuditRecord>, StoreError> {
        let page = self
            .audit_query(&AuditQuery {
                limit,
                ..Default::default()
            })
            .await?;
        page.records.iter().map(ChainedRecord::record).collect()
    }

    async fn audit_query(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        use audit_event::Column as C;
        let mut find = audit_event::Entity::find();
        if let Some(t) = q.since {
            find = find.filter(C::At.gte(t));
        }
        if let Some(t) = q.until {
            find = find.filter(C::At.lt(t));
        }
        // SQLite keeps no statistics (no ANALYZE): given a person and an event type, it walked
        // the type's index (a third of the chain for `code_issued`) rather than the person's
        // hundred records. With a person, the other columns are compared as `+col` (no index).
        let person_first = q.account_id.is_some() && self.db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite;
        for (col, name, v) in [
            (C::AccountId, "account_id", &q.account_id),
            (C::ClientId, "client_id", &q.client_id),
            (C::EventType, "event_type", &q.event_type),
            (C::Outcome, "outcome", &q.outcome),
            (C::SourceIp, "source_ip", &q.source_ip),
        ] {
            match v {
                Some(v) if person_first && name != "account_id" => {
                    find = find.filter(Expr::cust_with_values(format!("+{name} = ?"), [v.clone()]));
                }
                Some(v) => find = find.filter(col.eq(v.clone())),
                None => {}
            }
        }
        // The cursor and the range are folded into one bound per side: given `seq >= 1 AND
        // seq > cursor`, SQLite ranges its scan on one of the two, and when it took the first,
        // every page of a walk (verify, export) read the chain again from its start.
        let (low, high) = match (q.order, q.cursor) {
            (Order::Ascending, Some(c)) => (Some(q.min_seq.unwrap_or(i64::MIN).max(c.saturating_add(1))), q.max_seq),
            (Order::Descending, Some(c)) => (q.min_seq, Some(q.max_seq.unwrap_or(i64::MAX).min(c.saturating_sub(1)))),
            (_, None) => (q.min_seq, q.max_seq),
        };
        if let Some(s) = low {
            find = find.filter(C::Seq.gte(s));
        }
        if let Some(s) = high {
            find = find.filter(C::Seq.lte(s));
        }
        let limit = q.limit.clamp(1, 10_000);
        let ordered = |f: sea_orm::Select<audit_event::Entity>, by: sea_orm::sea_query::SimpleExpr| match q.order {
            Order::Ascending => f.order_by_asc(by),
            Order::Descending => f.order_by_desc(by),
        };
        // Newest first over a closed time range (the admin page's day or week in the past):
        // both planners would walk the chain in seq order from its end and filter on `at`,
        // reading every newer record first. The seqs of the range come from the (at, seq) index
        // instead (`seq + 0` keeps the seq order out of the plan), sorted there, and only the
        // page's rows are read. Oldest first (exports, page after page) keeps the seq walk: past
        // the first page its cursor starts inside the range.
        let find = if q.order == Order::Descending && q.since.is_some() && q.until.is_some() {
            let seqs = ordered(find.select_only().column(C::Seq), Expr::cust("seq + 0"))
                .limit(limit + 1)
                .into_query();
            ordered(audit_event::Entity::find().filter(C::Seq.in_subquery(seqs)), Expr::col(C::Seq))
        } else {
            ordered(find, Expr::col(C::Seq))
        };
        // One more than asked tells whether another page exists.
        let mut rows = find.limit(limit + 1).all(&self.db).await.map_err(unavailable)?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let records: Vec<ChainedRecord> = rows.into_iter().map(chained_from_row).collect();
        Ok(AuditPage {
            next_cursor: if more { records.last().map(|r| r.seq) } else { None },
            records,
        })
    }

    async fn audit_counts(&self, since: DateTime<Utc>) -> Result<Vec<AuditCount>, StoreError> {
        // Read through the (at, seq) index: the day's rows only. PostgreSQL gets the time as a
        // literal, not a parameter, so each execution is planned for the actual day (a cached
        // generic plan of `at >= $1` would guess its selectivity). SQLite, with no statistics,
        // preferred the event type index for the GROUP BY and read every record (1 s).
        let backend = self.db.get_database_backend();
        let stmt = match backend {
            sea_orm::DatabaseBackend::Postgres => Statement::from_string(
                backend,
                format!(
                    "SELECT event_type, outcome, COUNT(*) AS n FROM audit_events WHERE at >= '{}'::timestamptz \
                     GROUP BY event_type, outcome",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
            ),
            _ => Statement::from_sql_and_values(
                backend,
                "SELECT event_type, outcome, COUNT(*) AS n FROM audit_events INDEXED BY idx_audit_at_seq WHERE at >= ? \
                 GROUP BY event_type, outcome",
                [since.into()],
            ),
        };
        let rows = self.db.query_all_raw(stmt).await.map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("", "n").map_err(|e| corrupt("audit count", e))?;
                Ok(AuditCount {
                    event_type: r.try_get("", "event_type").map_err(|e| corrupt("audit count", e))?,
                    outcome: r.try_get("", "outcome").map_err(|e| corrupt("audit count", e))?,
                    count: n.max(0) as u64,
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        Ok(audit_head::Entity::find_by_id(1)
            .one(&self.db)
            .await
            .map_err(unavailable)?
            .map_or((0, GENESIS.to_owned()), |h| (h.seq, h.hash)))
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        audit_checkpoint::Entity::find()
            .order_by_asc(audit_checkpoint::Column::Seq)
            .all(&self.db)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|m| {
                Ok(Checkpoint {
                    seq: m.seq,
                    hash: m.hash,
                    at: m.at,
                    kid: m.kid,
                    jwk: serde_json::from_str(&m.jwk).map_err(|e| corrupt("checkpoint jwk", e))?,
                    signature: m.signature,
                })
            })
            .collect()
    }

    async fn insert_audit_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        let row = audit_checkpoint::ActiveModel {
            seq: Set(c.seq),
            at: Set(c.at),
            hash: Set(c.hash.clone()),
            kid: Set(c.kid.clone()),
            jwk: Set(c.jwk.to_string()),
            signature: Set(c.signature.clone()),
        };
        audit_checkpoint::Entity::insert(row).exec(&self.db).await.map_err(unavailable)?;
        Ok(())
    }

    async fn purge_audit(&self, through_seq: i64) -> Result<u64, StoreError> {
        let txn = self.db.begin().await.map_err(unavailable)?;
        let res = audit_event::Entity::delete_many()
            .filter(audit_event::Column::Seq.lte(through_seq))
            .exec(&txn)
            .await
            .map_err(unavailable)?;
        audit_checkpoint::Entity::delete_many()
            .filter(audit_checkpoint::Column::Seq.lt(through_seq))
            .exec(&txn)
            .await
            .map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(res.rows_affected)
    }
}

/// The row of a new account. A directory account (`directory_id`) never holds a local password:
/// it logs in through the directory only.
fn account_row(a: &Account, created_at: DateTime<Utc>, directory_id: Option<&str>) -> account::ActiveModel {
    account::ActiveModel {
        id: Set(a.id.to_string()),
        username: Set(a.username.clone()),
        display_name: Set(a.display_name.clone()),
        given_name: Set(a.given_name.clone()),
        family_name: Set(a.family_name.clone()),
        email: Set(a.email.clone()),
        password_hash: Set(if directory_id.is_some() { None } else { a.password_hash.clone() }),
        disabled: Set(a.disabled),
        created_at: Set(created_at),
        directory_id: Set(directory_id.map(str::to_owned)),
    }
}

/// The row of a refresh token.
fn refresh_row(t: &RefreshTokenRecord) -> refresh_token::ActiveModel {
    refresh_token::ActiveModel {
        token_digest: Set(t.token_digest.clone()),
        family_id: Set(t.family_id.to_string()),
        client_id: Set(t.client_id.to_string()),
        account_id: Set(t.account_id.to_string()),
        session_id: Set(t.session_id.clone()),
        scopes: Set(t.scopes.to_string()),
        auth_time: Set(t.auth_time),
        amr: Set(serde_json::to_string(&t.amr).expect("strings serialise")),
        acr: Set(t.acr.clone()),
        created_at: Set(t.created_at),
        expires_at: Set(t.expires_at),
        used_at: Set(t.used_at),
        revoked_at: Set(t.revoked_at),
    }
}

fn audit_row(r: &ChainedRecord) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        seq: Set(r.seq),
        at: Set(r.at),
        event_type: Set(r.event_type.clone()),
        outcome: Set(r.outcome.clone()),
        source_ip: Set(r.source_ip.clone()),
        user_agent: Set(r.user_agent.clone()),
        correlation_id: Set(r.correlation_id.clone()),
        event: Set(r.event.clone()),
        account_id: Set(r.account_id.clone()),
        client_id: Set(r.client_id.clone()),
        prev_hash: Set(r.prev_hash.clone()),
        hash: Set(r.hash.clone()),
    }
}

fn chained_from_row(m: audit_event::Model) -> ChainedRecord {
    ChainedRecord {
        seq: m.seq,
        at: m.at,
        event_type: m.event_type,
        outcome: m.outcome,
        source_ip: m.source_ip,
        user_agent: m.user_agent,
        correlation_id: m.correlation_id,
        account_id: m.account_id,
        client_id: m.client_id,
        event: m.event,
        prev_hash: m.prev_hash,
        hash: m.hash,
    }
}
