//! Group commit for new refresh tokens: every code exchange stores one, and one commit per
//! token would make the database's commit rate the token endpoint's limit. One writer task
//! inserts every token waiting at that moment in a single statement; each caller waits for
//! that commit, so a token is never handed out before it is stored.
use super::entities::refresh_token;
use super::unavailable;
use crate::domain::ports::StoreError;
use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::{mpsc, oneshot};

const MAX_BATCH: usize = 512;

type Job = (refresh_token::ActiveModel, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct RefreshWriter {
    jobs: mpsc::Sender<Job>,
}

impl RefreshWriter {
    /// Starts the writer task (needs a tokio runtime).
    pub fn start(db: DatabaseConnection) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(8 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let rows: Vec<_> = batch.iter().map(|(row, _)| row.clone()).collect();
                let result = refresh_token::Entity::insert_many(rows)
                    .exec(&db)
                    .await
                    .map(|_| ())
                    .map_err(|e| unavailable(e).to_string());
                for (_, done) in batch.drain(..) {
                    let _ = done.send(result.clone());
                }
            }
        });
        Self { jobs }
    }

    pub async fn insert(&self, row: refresh_token::ActiveModel) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the refresh-token writer has stopped".into());
        let (done, wait) = oneshot::channel();
        self.jobs.send((row, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?.map_err(StoreError::Unavailable)
    }
}
