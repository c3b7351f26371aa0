//! Pools of open directory connections, so a login costs no TCP or TLS handshake.
//!
//! Two pools per directory, never mixed: the *search* pool's connections are bound as the
//! service account; the *bind* pool's connections only ever carry the people's own binds (and,
//! with a bind-DN template, the read of their own entry right after). A connection is lent to
//! one task at a time (a bind changes who the connection is), checked before it is lent
//! (closed, or older than `MAX_AGE`: reopened, which also brings it back to the first URL
//! after a failover), and dropped instead of returned when an operation on it failed.
use super::{DirectoryError, DirectorySettings, conn};
use ldap3::Ldap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections are renewed after this long, so that after a failover they drift back to the
/// preferred server and a server-side idle timeout rarely hits a lent connection.
const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub enum PoolKind {
    /// Bound as the service account when opened.
    Search { bind_dn: String, bind_password: String },
    /// Left anonymous when opened; each user bind sets who it is.
    Bind,
}

struct Idle {
    ldap: Ldap,
    opened: Instant,
}

pub struct Pool {
    kind: PoolKind,
    /// None: no pooling, a fresh connection per use (bind pool of size 0).
    permits: Option<Arc<Semaphore>>,
    idle: std::sync::Mutex<Vec<Idle>>,
    opened: AtomicU64,
}

/// A connection lent by the pool. Returned on drop unless `discard`ed.
pub struct Lease<'a> {
    pub ldap: Ldap,
    opened: Instant,
    pool: &'a Pool,
    keep: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Lease<'_> {
    /// The connection is in an unknown state (an operation failed or timed out): close it.
    pub fn discard(mut self) {
        self.keep = false;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.keep && self.pool.permits.is_some() && !self.ldap.is_closed() {
            let idle = Idle {
                ldap: self.ldap.clone(),
                opened: self.opened,
            };
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(idle);
        } else {
            close(self.ldap.clone());
        }
    }
}

impl Pool {
    pub fn new(kind: PoolKind, size: usize) -> Self {
        Self {
            kind,
            permits: (size > 0).then(|| Arc::new(Semaphore::new(size))),
            idle: std::sync::Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
        }
    }

    /// Connections this pool has opened since start (a measure of reuse).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Lends a healthy connection, opening one (with failover) if none is idle. Waits for a free
    /// slot at most the connect timeout: a saturated pool is an overloaded directory.
    pub async fn get(&self, s: &DirectorySettings) -> Result<Lease<'_>, DirectoryError> {
        let permit = match &self.permits {
            Some(sem) => Some(
                tokio::time::timeout(s.connect_timeout, sem.clone().acquire_owned())
                    .await
                    .map_err(|_| DirectoryError::Unavailable("every pooled directory connection stayed busy".into()))?
                    .map_err(|_| DirectoryError::Unavailable("pool closed".into()))?,
            ),
            None => None,
        };
        loop {
            let next = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut idle) = next else { break };
            if idle.ldap.is_closed() || idle.opened.elapsed() > MAX_AGE {
                close(idle.ldap);
                continue;
            }
            return Ok(Lease {
                ldap: idle.ldap,
                opened: idle.opened,
                pool: self,
                keep: true,
                _permit: permit,
            });
        }
        let ldap = self.open(s).await?;
        Ok(Lease {
            ldap,
            opened: Instant::now(),
            pool: self,
            keep: true,
            _permit: permit,
        })
    }

    async fn open(&self, s: &DirectorySettings) -> Result<Ldap, DirectoryError> {
        let (mut ldap, _) = conn::open_any(s).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        if let PoolKind::Search { bind_dn, bind_password } = &self.kind
            && !conn::bind(&mut ldap, s.operation_timeout, bind_dn, bind_password).await?
        {
            let _ = ldap.unbind().await;
            return Err(DirectoryError::Unavailable("the service account's bind was refused".into()));
        }
        Ok(ldap)
    }

    /// Closes the idle connections (after a failure, so the next use reconnects with failover).
    pub fn clear(&self) {
        let drained: Vec<Idle> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for i in drained {
            close(i.ldap);
        }
    }
}

/// Unbinds (which closes the socket) in the background. Without a runtime (shutdown), dropping
/// the handle ends the connection's driver task, which closes the socket too.
fn close(mut l: Ldap) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = l.unbind().await;
        });
    }
}
