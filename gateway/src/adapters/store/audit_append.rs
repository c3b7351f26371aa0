//! The audit chain's group commit: one transaction appends every waiting record, with the
//! writes they carry, each only if its account is still active where it asks for that.
//!
//! The chain is serialised on the single `audit_head` row, taken first: on PostgreSQL its row
//! lock queues appends from every replica until commit; on SQLite the write lock does. The new
//! head is written at the end, once the accounts are checked (a left-out append takes no seq).
//!
//! On SQLite the whole transaction is two calls to the writing connection's thread: the write
//! lock, the head and the accounts in one, the rows and `COMMIT` in the other. Through sea-orm's
//! transaction it was four or five (BEGIN, head, accounts, rows, COMMIT), and each call is two
//! thread wake-ups, the main cost of a code exchange at low concurrency (docs/performance.md).
use super::entities::{account, audit_event, audit_head, refresh_token};
use super::{audit_row, refresh_row, security_keys, unavailable};
use crate::domain::audit_chain::ChainedRecord;
use crate::domain::ports::StoreError;
use crate::domain::records::{AuditAppend, AuditedWrite};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::{self, Column, Row};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Statement,
    TransactionTrait,
};
use sea_query_sqlx::SqlxValues;
use std::collections::HashSet;
use tracing::Instrument;

const TAKE_HEAD: &str = "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash";

/// Appends through sea-orm's transaction (PostgreSQL, where every statement is its own round
/// trip anyway).
pub(super) async fn append(db: &DatabaseConnection, appends: &[AuditAppend]) -> Result<Vec<Option<ChainedRecord>>, StoreError> {
    let txn = db.begin().await.map_err(unavailable)?;
    let backend = txn.get_database_backend();
    let head = txn
        .query_one_raw(Statement::from_string(backend, TAKE_HEAD))
        .await
        .map_err(unavailable)?
        .ok_or_else(missing_head)?;
    let head = (
        head.try_get("", "seq").map_err(unavailable)?,
        head.try_get("", "hash").map_err(unavailable)?,
    );
    let mut active = HashSet::new();
    if let Some(check) = active_accounts_query(backend, appends) {
        for row in txn.query_all_raw(check).await.map_err(unavailable)? {
            active.insert(row.try_get::<String>("", "id").map_err(unavailable)?);
        }
    }
    let (chained, statements) = chain(backend, head, &active, appends);
    if statements.is_empty() {
        txn.rollback().await.map_err(unavailable)?;
        return Ok(chained);
    }
    // PostgreSQL's protocol takes one statement per bound call.
    for st in statements {
        txn.execute_raw(st).await.map_err(unavailable)?;
    }
    txn.commit().await.map_err(unavailable)?;
    Ok(chained)
}

/// Appends on SQLite's one writing connection, held for the whole transaction (so nothing else
/// runs inside it), in two calls.
pub(super) async fn append_sqlite(writer: &DatabaseConnection, appends: &[AuditAppend]) -> Result<Vec<Option<ChainedRecord>>, StoreError> {
    let conn = writer
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let mut held = Held(Some(conn));
    let conn = held.0.as_mut().expect("held until released");
    let result = append_on(conn, appends).await;
    // Whatever failed, the transaction must not outlive this call: it is rolled back, or, if
    // even that fails (it was never begun, or the connection is broken), the connection is
    // closed rather than handed back (`Held`).
    if result.is_err() && sqlx::raw_sql("ROLLBACK").execute(&mut **conn).await.is_err() {
        return result;
    }
    held.release();
    result
}

/// The writing connection while a transaction may be open on it. Dropped without `release`
/// (an error that could not be rolled back, or the future cancelled between the two calls),
/// it is closed instead of going back to the pool, where the next write would run inside the
/// open transaction; SQLite rolls back what a closed connection left open.
struct Held(Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>);

impl Held {
    /// The transaction is over: the connection goes back to the pool.
    fn release(mut self) {
        self.0.take();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}

async fn append_on(conn: &mut sqlx::SqliteConnection, appends: &[AuditAppend]) -> Result<Vec<Option<ChainedRecord>>, StoreError> {
    // BEGIN IMMEDIATE takes the write lock at once (waiting busy_timeout for another process,
    // e.g. the CLI): a transaction that only reads first could not upgrade later.
    let check = active_accounts_query(DbBackend::Sqlite, appends);
    let (sql, values) = match check {
        Some(c) => (
            format!("BEGIN IMMEDIATE; {TAKE_HEAD}; {}", c.sql),
            c.values.map(|v| v.0).unwrap_or_default(),
        ),
        None => (format!("BEGIN IMMEDIATE; {TAKE_HEAD}"), Vec::new()),
    };
    let span = sql_span("BEGIN");
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(sea_orm::sea_query::Values(values)))
        .fetch_all(&mut *conn)
        .instrument(span.clone())
        .await
        .map_err(|e| failed(&span, e))?;
    // The head's row starts with `seq`, the accounts' rows are `id`s.
    let mut head = None;
    let mut active = HashSet::new();
    for row in rows {
        if row.columns().first().is_some_and(|c| c.name() == "seq") {
            head = Some((row.try_get("seq").map_err(sqlx_error)?, row.try_get("hash").map_err(sqlx_error)?));
        } else {
            active.insert(row.try_get::<String, _>("id").map_err(sqlx_error)?);
        }
    }
    let head = head.ok_or_else(missing_head)?;
    let (chained, statements) = chain(DbBackend::Sqlite, head, &active, appends);
    // Nothing to write (every append left out): the transaction ends all the same.
    let end = if statements.is_empty() { "ROLLBACK" } else { "COMMIT" };
    let (mut sql, values) = joined(statements);
    sql.push_str(end);
    let span = sql_span(end);
    sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(sea_orm::sea_query::Values(values)))
        .execute(&mut *conn)
        .instrument(span.clone())
        .await
        .map_err(|e| failed(&span, e))?;
    Ok(chained)
}

/// SQLite statements as one text, `;`-separated, and their values in order: sqlx runs them in
/// one call to the connection's thread and binds the `?` placeholders across them in order.
fn joined(statements: Vec<Statement>) -> (String, Vec<sea_orm::Value>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for st in statements {
        sql.push_str(&st.sql);
        sql.push_str(";\n");
        values.extend(st.values.map(|v| v.0).unwrap_or_default());
    }
    (sql, values)
}

/// The query for the accounts the appends require active that are; `None` if none is required.
fn active_accounts_query(backend: DbBackend, appends: &[AuditAppend]) -> Option<Statement> {
    let mut ids: Vec<String> = appends.iter().filter_map(|a| a.only_if_active).map(|id| id.to_string()).collect();
    if ids.is_empty() {
        return None;
    }
    ids.sort_unstable();
    ids.dedup();
    Some(
        account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .filter(account::Column::Id.is_in(ids))
            .filter(account::Column::Disabled.eq(false))
            .build(backend),
    )
}

/// Chains the appends whose account is active (or that require none) after `head`, and the
/// statements that write them, their writes and the new head. No statement if none is left.
fn chain(
    backend: DbBackend,
    (mut seq, mut prev): (i64, String),
    active: &HashSet<String>,
    appends: &[AuditAppend],
) -> (Vec<Option<ChainedRecord>>, Vec<Statement>) {
    let mut chained = Vec::with_capacity(appends.len());
    let mut writes = Vec::new();
    for a in appends {
        if a.only_if_active.is_some_and(|id| !active.contains(&id.to_string())) {
            chained.push(None);
            continue;
        }
        seq += 1;
        let rec = ChainedRecord::new(seq, &a.record, &prev);
        prev = rec.hash.clone();
        chained.push(Some(rec));
        writes.extend(a.writes.iter());
    }
    let rows: Vec<_> = chained.iter().flatten().map(audit_row).collect();
    if rows.is_empty() {
        return (chained, Vec::new());
    }
    let mut statements = vec![
        audit_event::Entity::insert_many(rows).build(backend),
        audit_head::Entity::update_many()
            .col_expr(audit_head::Column::Seq, Expr::value(seq))
            .col_expr(audit_head::Column::Hash, Expr::value(prev))
            .filter(audit_head::Column::Id.eq(1))
            .build(backend),
    ];
    let refresh_rows: Vec<_> = writes
        .iter()
        .filter_map(|w| match w {
            AuditedWrite::RefreshToken(t) => Some(refresh_row(t)),
            _ => None,
        })
        .collect();
    if !refresh_rows.is_empty() {
        statements.push(refresh_token::Entity::insert_many(refresh_rows).build(backend));
    }
    for w in writes {
        if let AuditedWrite::SecurityKeyUse { key_id, credential, at } = w {
            statements.push(security_keys::record_use_statement(backend, *key_id, credential, *at));
        }
    }
    (chained, statements)
}

/// A dependency span as sea-orm's (timed by the metrics layer as `sqlite`), named by the
/// statement that opens or ends the call; never the SQL or its values.
fn sql_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "sql",
        db.system = "sqlite",
        db.operation = operation,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty
    )
}

/// Marks the call's span failed (counted as a dependency error) and maps the error.
fn failed(span: &tracing::Span, e: sqlx::Error) -> StoreError {
    span.record("otel.status_code", "ERROR");
    sqlx_error(e)
}

fn missing_head() -> StoreError {
    StoreError::Corrupt("audit_head row is missing".into())
}

fn sqlx_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.message().to_owned()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}
