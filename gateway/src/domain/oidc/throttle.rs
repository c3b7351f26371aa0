//! Brute-force throttling of the login form, per typed username and per source IP, in the
//! session store (shared by every replica through Redis). It is checked before the password
//! checker is called, so Relais' retries never reach the directory and never trigger its own
//! lockout (set `max_failures_per_account` below the directory's threshold).
//!
//! Each failure bumps a counter that lives `failure_window_secs` after the last failure. From
//! `max_failures` on, each further failure sets a lock for `lockout_secs`, doubled per extra
//! failure up to `max_lockout_secs`. A success clears the username's counter. Unknown
//! usernames are counted like known ones, so a lock reveals nothing.
use super::Provider;
use crate::domain::DomainError;
use crate::domain::crypto::secret_digest;
use crate::domain::ports::Namespace;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    pub failure_window_secs: u64,
    pub lockout_secs: u64,
    pub max_lockout_secs: u64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            max_failures_per_account: 5,
            max_failures_per_ip: 50,
            failure_window_secs: 900,
            lockout_secs: 60,
            max_lockout_secs: 3600,
        }
    }
}

/// What is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Account,
    SourceIp,
}

impl Throttled {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::SourceIp => "source_ip",
        }
    }
}

impl Provider {
    /// Counter keys; the username is digested so the store holds no typed names.
    fn throttle_keys(&self, username: &str, ip: Option<&str>) -> Vec<(Throttled, String, u32)> {
        let t = &self.settings.throttle;
        let mut v = vec![(
            Throttled::Account,
            format!("acct:{}", secret_digest(&username.trim().to_lowercase())),
            t.max_failures_per_account,
        )];
        if let Some(ip) = ip {
            v.push((Throttled::SourceIp, format!("ip:{ip}"), t.max_failures_per_ip));
        }
        v
    }

    /// `Some` if this username or address is locked out right now.
    pub(crate) async fn throttled(&self, username: &str, ip: Option<&str>) -> Result<Option<Throttled>, DomainError> {
        for (what, key, _) in self.throttle_keys(username, ip) {
            if self.sessions.get(Namespace::Counter, &format!("lock:{key}")).await?.is_some() {
                return Ok(Some(what));
            }
        }
        Ok(None)
    }

    pub(crate) async fn record_failure(&self, username: &str, ip: Option<&str>) -> Result<(), DomainError> {
        let t = &self.settings.throttle;
        for (_, key, max) in self.throttle_keys(username, ip) {
            let n = self
                .sessions
                .increment(
                    Namespace::Counter,
                    &format!("fail:{key}"),
                    Duration::from_secs(t.failure_window_secs.max(1)),
                )
                .await?;
            if max > 0 && n >= i64::from(max) {
                let extra = (n - i64::from(max)).clamp(0, 20) as u32;
                let secs = t.lockout_secs.saturating_mul(1u64 << extra).min(t.max_lockout_secs).max(1);
                self.sessions
                    .put(Namespace::Counter, &format!("lock:{key}"), b"1", Duration::from_secs(secs))
                    .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn record_success(&self, username: &str) -> Result<(), DomainError> {
        if let Some((_, key, _)) = self.throttle_keys(username, None).into_iter().next() {
            self.sessions.delete(Namespace::Counter, &format!("fail:{key}")).await?;
        }
        Ok(())
    }
}
