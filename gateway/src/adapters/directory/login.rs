//! Several directories behind one `PasswordChecker`: chosen by username suffix, otherwise tried
//! in order; local accounts optionally last (break-glass accounts during a directory outage).
use super::{Directory, DirectoryError};
use crate::adapters::local_accounts::LocalAccounts;
use crate::domain::account::Account;
use crate::domain::ports::{PasswordChecker, PasswordVerdict, Standing, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

pub struct DirectoryLogin {
    pub directories: Vec<Arc<Directory>>,
    /// Tried when no directory accepted the password (including when one was unreachable).
    pub local_fallback: Option<LocalAccounts>,
}

#[async_trait]
impl PasswordChecker for DirectoryLogin {
    async fn check(&self, username: &str, password: &str) -> Result<Option<Account>, StoreError> {
        Ok(match self.verify(username, password).await? {
            PasswordVerdict::Accepted(a, _) => Some(a),
            _ => None,
        })
    }

    async fn verify(&self, username: &str, password: &str) -> Result<PasswordVerdict, StoreError> {
        let mut outage: Option<DirectoryError> = None;
        for (dir, login) in self.candidates(username) {
            match dir.authenticate(&login, password).await {
                Ok(PasswordVerdict::Rejected) => continue,
                Ok(v) => return Ok(v),
                Err(DirectoryError::Unavailable(m)) => {
                    tracing::error!(directory = %dir.settings.name, error = %m, "directory unavailable");
                    outage = Some(DirectoryError::Unavailable(format!("{}: {m}", dir.settings.name)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(local) = &self.local_fallback
            && let v @ PasswordVerdict::Accepted(..) = local.verify(username, password).await?
        {
            return Ok(v);
        }
        // A directory that could not answer might have held this person: say "unavailable",
        // never "wrong password".
        match outage {
            Some(e) => Err(e.into()),
            None => Ok(PasswordVerdict::Rejected),
        }
    }

    /// A directory account is looked up in the directory it came from (`directory_id`), as the
    /// same entry (its stable id): its state and groups now. An account whose directory is no
    /// longer configured, or whose entry is gone (or whose name now belongs to another entry),
    /// is `Gone`. Local accounts are `NotManaged`.
    async fn standing(&self, account: &Account) -> Result<Standing, StoreError> {
        let Some(directory_id) = &account.directory_id else {
            return Ok(Standing::NotManaged);
        };
        let Some((name, stable_id)) = directory_id.split_once(':') else {
            return Ok(Standing::Gone);
        };
        let Some(dir) = self.directories.iter().find(|d| d.settings.name == name) else {
            return Ok(Standing::Gone);
        };
        match dir.standing(&account.username, stable_id).await {
            Ok(s) => Ok(s.unwrap_or(Standing::Gone)),
            Err(DirectoryError::Unavailable(m)) => {
                tracing::error!(directory = %dir.settings.name, error = %m, "directory unavailable");
                Err(DirectoryError::Unavailable(format!("{}: {m}", dir.settings.name)).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl DirectoryLogin {
    /// The directories that may hold `username`, with the login each knows it by:
    /// suffix-routed directories claim their usernames; the others take the rest.
    fn candidates(&self, username: &str) -> Vec<(&Arc<Directory>, String)> {
        let routed: Vec<_> = self
            .directories
            .iter()
            .filter(|d| !d.settings.username_suffixes.is_empty())
            .filter_map(|d| d.route(username).map(|l| (d, l)))
            .collect();
        if routed.is_empty() {
            self.directories
                .iter()
                .filter(|d| d.settings.username_suffixes.is_empty())
                .map(|d| (d, username.to_owned()))
                .collect()
        } else {
            routed
        }
    }
}
