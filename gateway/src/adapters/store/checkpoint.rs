//! SQLite's WAL checkpoints, moved off the commit path. By default SQLite copies the WAL back
//! into the database file (and syncs it) inside the commit that crosses 1,000 pages, on the one
//! writing connection: every request waiting on that group commit waited for the copy too (the
//! token endpoint's p99 at 4 concurrent: 7.9–10.0 ms before, 3.8–4.3 ms with this task;
//! docs/performance.md).
//!
//! The writing connection no longer checkpoints (`wal_autocheckpoint = 0`); this task runs a
//! passive checkpoint on a connection of its own a few times a second. A passive checkpoint
//! never waits for the writer or the readers, and once it has copied every frame while no
//! reader uses the WAL, the next write starts the WAL over from its beginning.
//!
//! Under constant load there is always a reader using the WAL, so a passive checkpoint alone
//! never lets it start over and the file grows without bound (SQLite's "checkpoint starvation":
//! 3 GB of WAL after 80,000 code exchanges in 15 s, measured 2026-11-26). Once the WAL is
//! longer than `[database] sqlite_wal_restart_mib` (64 MiB by default), the task runs a
//! `RESTART` checkpoint on the writing connection itself: it takes its turn in the writer's
//! queue like a group commit (other writes wait in that queue, not in SQLite's busy handler,
//! which sleeps in steps of up to 100 ms), copies the last frames, and waits for the readers of
//! the moment to finish. Readers that start meanwhile read the database file only, so the wait
//! ends as soon as the short statements of the moment do; the next write starts the WAL over,
//! and `journal_size_limit` on the writing connection cuts the file back to that size. The wait
//! is bounded ([`RESTART_WAIT_MS`]): a long reader (an audit export, a backup) makes the
//! restart give up and try again at the next tick, so writes are never held for longer than
//! that.
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::time::Duration;

/// How often the WAL is checkpointed: at a few thousand commits per second the WAL gains about
/// as many pages between two checkpoints as SQLite's own threshold would let it.
const EVERY: Duration = Duration::from_millis(250);

/// SQLite's page size here (the default): WAL frames are counted in pages.
const PAGE_BYTES: u64 = 4096;

/// How long a restart waits for the readers of the moment, holding the writer back meanwhile.
const RESTART_WAIT_MS: u32 = 10;

/// Every connection's busy timeout (`mod.rs`), put back on the writer after a restart.
pub(super) const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The running task; dropping the last clone of the store stops it.
pub(super) struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One checkpoint: passive on `db`, then, if the WAL is longer than `restart_bytes`, a
/// restarting one on `writer`.
///
/// Each restart holds the writes back for a few milliseconds (two syncs and the readers'
/// turn), so under full load it should come every second or so, not at every tick: at 16 MiB
/// the token endpoint's p99 at 8 concurrent was 1.5 ms higher, at 64 MiB it does not show. A
/// longer WAL makes every read search a longer index.
async fn checkpoint(db: &DatabaseConnection, writer: &DatabaseConnection, restart_bytes: u64) -> Result<(), String> {
    let passive = Statement::from_string(db.get_database_backend(), "PRAGMA wal_checkpoint(PASSIVE)");
    // One row: busy (0 or 1), log (pages in the WAL), checkpointed (pages copied back).
    let log: i64 = match db.query_one_raw(passive).await.map_err(|e| e.to_string())? {
        Some(row) => row.try_get("", "log").map_err(|e| e.to_string())?,
        None => 0,
    };
    if log.max(0) as u64 * PAGE_BYTES > restart_bytes {
        restart(writer).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A `RESTART` checkpoint on the writing connection, waiting at most [`RESTART_WAIT_MS`] for
/// readers. Readers still busy then are not an error: the checkpoint says so in its `busy`
/// column and is tried again at the next tick.
async fn restart(writer: &DatabaseConnection) -> Result<(), sqlx::Error> {
    let mut conn = writer.get_sqlite_connection_pool().acquire().await?;
    let bounded = format!("PRAGMA busy_timeout = {RESTART_WAIT_MS}; PRAGMA wal_checkpoint(RESTART)");
    let done = sqlx::raw_sql(sqlx::AssertSqlSafe(bounded)).execute(&mut *conn).await;
    let usual = format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}");
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(usual)).execute(&mut *conn).await {
        // Never hand the short timeout on to the writes: the pool opens a fresh connection.
        conn.close_on_drop();
        return Err(e);
    }
    done.map(|_| ())
}

impl Checkpointer {
    /// Starts checkpointing through `db`, a connection pool that is not the writer's, and
    /// `writer`, the pool of the one writing connection.
    pub(super) fn start(db: DatabaseConnection, writer: DatabaseConnection, restart_bytes: u64) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match checkpoint(&db, &writer, restart_bytes).await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("SQLite WAL checkpoints work again");
                    }
                    Ok(_) => {}
                    // Said once per failing stretch, not four times a second. The data is safe
                    // meanwhile: the WAL only grows until a checkpoint gets through.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "SQLite WAL checkpoint failed; the WAL file grows until one succeeds");
                    }
                    Err(_) => {}
                }
            }
        }))
    }
}
