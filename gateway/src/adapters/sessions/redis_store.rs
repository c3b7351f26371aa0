//! The Redis session store: shared by every replica. Atomicity comes from Redis itself
//! (`SET NX`, `GETDEL`), not from any one process.
use crate::domain::ports::{Namespace, SessionStore, SessionStoreError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every key, so several deployments (or test runs) can share one Redis.
    pub key_prefix: String,
    /// Cut for every command and for (re)connecting: a slow Redis must not hang logins.
    pub timeout: Duration,
}

pub struct RedisSessionStore {
    conn: ConnectionManager,
    prefix: String,
}

fn down(e: redis::RedisError) -> SessionStoreError {
    SessionStoreError::Unavailable(e.to_string())
}

/// One span per command: the command name and the namespace, never the key (a code or a
/// session id) nor the value.
async fn traced<T>(
    command: &'static str,
    ns: Option<Namespace>,
    fut: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, SessionStoreError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "redis",
        otel.name = %format_args!("redis {command}"),
        otel.kind = "client",
        db.system = "redis",
        db.operation = command,
        relais.namespace = ns.map(|n| n.prefix()).unwrap_or("-"),
        otel.status_code = tracing::field::Empty,
    );
    let r = fut.instrument(span.clone()).await;
    if r.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    r.map_err(down)
}

impl RedisSessionStore {
    pub async fn connect(s: &RedisSettings) -> Result<Self, SessionStoreError> {
        let client = redis::Client::open(s.url.as_str()).map_err(down)?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(s.timeout))
            .set_connection_timeout(Some(s.timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(s.timeout * 2, ConnectionManager::new_with_config(client, cfg))
            .await
            .map_err(|_| SessionStoreError::Unavailable("timed out connecting to Redis".into()))?
            .map_err(down)?;
        Ok(Self {
            conn,
            prefix: s.key_prefix.clone(),
        })
    }

    fn key(&self, ns: Namespace, key: &str) -> String {
        format!("{}:{}:{}", self.prefix, ns.prefix(), key)
    }

    fn ms(ttl: Duration) -> u64 {
        (ttl.as_millis() as u64).max(1)
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn put(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<(), SessionStoreError> {
        let mut c = self.conn.clone();
        traced(
            "SET",
            Some(ns),
            redis::cmd("SET")
                .arg(self.key(ns, key))
                .arg(value)
                .arg("PX")
                .arg(Self::ms(ttl))
                .query_async::<()>(&mut c),
        )
        .await
    }

    async fn put_if_absent(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<bool, SessionStoreError> {
        let mut c = self.conn.clone();
        let r: Option<String> = traced(
            "SET NX",
            Some(ns),
            redis::cmd("SET")
                .arg(self.key(ns, key))
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(Self::ms(ttl))
                .query_async(&mut c),
        )
        .await?;
        Ok(r.is_some())
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, SessionStoreError> {
        let mut c = self.conn.clone();
        traced("GET", Some(ns), redis::cmd("GET").arg(self.key(ns, key)).query_async(&mut c)).await
    }

    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, SessionStoreError> {
        let mut c = self.conn.clone();
        traced("GETDEL", Some(ns), redis::cmd("GETDEL").arg(self.key(ns, key)).query_async(&mut c)).await
    }

    async fn replace(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<Option<Vec<u8>>, SessionStoreError> {
        let mut c = self.conn.clone();
        // XX: only an existing key; GET: the old value, in the same command (Redis >= 6.2).
        traced(
            "SET XX GET",
            Some(ns),
            redis::cmd("SET")
                .arg(self.key(ns, key))
                .arg(value)
                .arg("XX")
                .arg("GET")
                .arg("PX")
                .arg(Self::ms(ttl))
                .query_async(&mut c),
        )
        .await
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<(), SessionStoreError> {
        let mut c = self.conn.clone();
        traced("DEL", Some(ns), redis::cmd("DEL").arg(self.key(ns, key)).query_async::<()>(&mut c)).await
    }

    async fn increment(&self, ns: Namespace, key: &str, ttl: Duration) -> Result<i64, SessionStoreError> {
        let mut c = self.conn.clone();
        let k = self.key(ns, key);
        let (n,): (i64,) = traced(
            "INCR",
            Some(ns),
            redis::pipe()
                .atomic()
                .incr(&k, 1)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&k)
                .arg(Self::ms(ttl))
                .ignore()
                .get(&k)
                .query_async(&mut c),
        )
        .await?;
        Ok(n)
    }

    async fn set_add(&self, ns: Namespace, key: &str, member: &str, ttl: Duration) -> Result<(), SessionStoreError> {
        // SADD, then extend the expiry only forward (PTTL is -1 on a new set, -2 if absent),
        // in one script so the set never lives without an expiry.
        const SCRIPT: &str = "redis.call('SADD', KEYS[1], ARGV[1]) \
            local t = redis.call('PTTL', KEYS[1]) \
            if t < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
            return 1";
        let mut c = self.conn.clone();
        traced(
            "SADD",
            Some(ns),
            redis::cmd("EVAL")
                .arg(SCRIPT)
                .arg(1)
                .arg(self.key(ns, key))
                .arg(member)
                .arg(Self::ms(ttl))
                .query_async::<()>(&mut c),
        )
        .await
    }

    async fn set_members(&self, ns: Namespace, key: &str) -> Result<Vec<String>, SessionStoreError> {
        let mut c = self.conn.clone();
        traced(
            "SMEMBERS",
            Some(ns),
            redis::cmd("SMEMBERS").arg(self.key(ns, key)).query_async(&mut c),
        )
        .await
    }

    async fn set_remove(&self, ns: Namespace, key: &str, members: &[String]) -> Result<(), SessionStoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        traced(
            "SREM",
            Some(ns),
            redis::cmd("SREM").arg(self.key(ns, key)).arg(members).query_async::<()>(&mut c),
        )
        .await
    }

    async fn ping(&self) -> Result<(), SessionStoreError> {
        let mut c = self.conn.clone();
        traced("PING", None, redis::cmd("PING").query_async::<()>(&mut c)).await
    }
}
