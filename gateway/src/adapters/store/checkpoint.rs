//! SQLite's WAL checkpoints, moved off the commit path. By default SQLite copies the WAL back
//! into the database file (and syncs it) inside the commit that crosses 1,000 pages, on the one
//! writing connection: every request waiting on that group commit waited for the copy too (the
//! token endpoint's p99 at 4 concurrent: 7.9–10.0 ms before, 3.8–4.3 ms with this task;
//! docs/performance.md).
//! The writing connection no longer checkpoints (`wal_autocheckpoint = 0`); this task runs a
//! passive checkpoint on a connection of its own a few times a second. A passive checkpoint
//! never waits for the writer or the readers, and once it has copied every frame the next
//! write starts the WAL over from its beginning, so the file stays short.
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::time::Duration;

/// How often the WAL is checkpointed: at a few thousand commits per second the WAL gains about
/// as many pages between two checkpoints as SQLite's own threshold would let it.
const EVERY: Duration = Duration::from_millis(250);

/// The running task; dropping the last clone of the store stops it.
pub(super) struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Checkpointer {
    /// Starts checkpointing through `db`, a connection pool that is not the writer's.
    pub(super) fn start(db: DatabaseConnection) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
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
