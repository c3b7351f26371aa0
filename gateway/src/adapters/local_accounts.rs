//! The first factor for sites without a directory: local accounts with argon2id hashes.
use crate::domain::account::{Account, PasswordPolicy, normalise_username};
use crate::domain::ports::{PasswordChecker, Standing, Storage, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

pub struct LocalAccounts {
    storage: Arc<dyn Storage>,
    dummy_hash: String,
    /// argon2 runs at most once per core at a time: each run holds `memory_kib` of memory, and
    /// more runs than cores only queue on the CPU while holding theirs.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl LocalAccounts {
    pub fn new(storage: Arc<dyn Storage>, policy: &PasswordPolicy) -> Result<Self, crate::domain::account::PasswordError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Ok(Self {
            storage,
            dummy_hash: policy.dummy_hash()?,
            hashing: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }
}

#[async_trait]
impl PasswordChecker for LocalAccounts {
    #[tracing::instrument(name = "password.check", skip_all)]
    async fn check(&self, username: &str, password: &str) -> Result<Option<Account>, StoreError> {
        let account = match normalise_username(username) {
            Some(u) => self.storage.account_by_username(&u).await?,
            None => None,
        };
        let hash = account
            .as_ref()
            .and_then(|a| a.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let pw = password.to_owned();
        // argon2 is deliberately slow: keep it off the async workers. The dummy hash is
        // verified for unknown users too, so both cases take the same time.
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("password hashing is shutting down".into()))?;
        let ok = tokio::task::spawn_blocking(move || PasswordPolicy::verify(&pw, &hash))
            .await
            .unwrap_or(false);
        // A directory account is never accepted here, even with a hash (set before `relais
        // user passwd` refused them): its directory says who may log in.
        Ok(account.filter(|a| ok && a.password_hash.is_some() && !a.disabled && a.directory_id.is_none()))
    }

    /// Local accounts are not managed by anyone else. An account that came from a directory
    /// when no directory is configured any more is `Gone`, as for a directory that was removed
    /// from the configuration: a card alone no longer logs it in.
    async fn standing(&self, account: &Account) -> Result<Standing, StoreError> {
        Ok(match account.directory_id {
            Some(_) => Standing::Gone,
            None => Standing::NotManaged,
        })
    }
}
