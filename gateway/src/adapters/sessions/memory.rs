//! The in-process session store: a map behind a mutex, expiry checked against the clock.
use crate::domain::ports::{Clock, Namespace, SessionStore, SessionStoreError};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Entry {
    value: Vec<u8>,
    expires_at_ms: i64,
}

struct SetEntry {
    members: HashSet<String>,
    expires_at_ms: i64,
}

pub struct MemorySessionStore {
    map: Mutex<HashMap<(Namespace, String), Entry>>,
    /// Sets (per-person session index), apart from the values.
    sets: Mutex<HashMap<(Namespace, String), SetEntry>>,
    clock: Arc<dyn Clock>,
    /// Below this many entries, nothing is swept.
    sweep_above: usize,
    /// Sizes at which the next write sweeps (values, sets). After a sweep the mark moves to
    /// twice what was left, so a map full of live entries (10 minutes of redeemed-code
    /// markers under load) is not scanned on every write: sweeping stays amortised O(1).
    next_sweep: AtomicUsize,
    next_set_sweep: AtomicUsize,
}

impl MemorySessionStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            sets: Mutex::new(HashMap::new()),
            clock,
            sweep_above: 10_000,
            next_sweep: AtomicUsize::new(10_000),
            next_set_sweep: AtomicUsize::new(10_000),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Namespace, String), Entry>> {
        // A panic while holding the lock cannot leave an entry half-written; keep serving.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, map: &mut HashMap<(Namespace, String), Entry>, k: &(Namespace, String), now: i64) -> bool {
        match map.get(k) {
            Some(e) if e.expires_at_ms > now => true,
            Some(_) => {
                map.remove(k);
                false
            }
            None => false,
        }
    }

    fn insert(&self, map: &mut HashMap<(Namespace, String), Entry>, k: (Namespace, String), value: Vec<u8>, ttl: Duration, now: i64) {
        if map.len() > self.next_sweep.load(Ordering::Relaxed) {
            map.retain(|_, e| e.expires_at_ms > now);
            self.next_sweep.store((2 * map.len()).max(self.sweep_above), Ordering::Relaxed);
        }
        map.insert(
            k,
            Entry {
                value,
                expires_at_ms: now + ttl.as_millis() as i64,
            },
        );
    }

    fn lock_sets(&self) -> std::sync::MutexGuard<'_, HashMap<(Namespace, String), SetEntry>> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn put(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<(), SessionStoreError> {
        let now = self.now_ms();
        let mut map = self.lock();
        self.insert(&mut map, (ns, key.to_owned()), value.to_vec(), ttl, now);
        Ok(())
    }

    async fn put_if_absent(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<bool, SessionStoreError> {
        let now = self.now_ms();
        let k = (ns, key.to_owned());
        let mut map = self.lock();
        if self.live(&mut map, &k, now) {
            return Ok(false);
        }
        self.insert(&mut map, k, value.to_vec(), ttl, now);
        Ok(true)
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, SessionStoreError> {
        let now = self.now_ms();
        let k = (ns, key.to_owned());
        let mut map = self.lock();
        Ok(if self.live(&mut map, &k, now) {
            map.get(&k).map(|e| e.value.clone())
        } else {
            None
        })
    }

    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, SessionStoreError> {
        let now = self.now_ms();
        let mut map = self.lock();
        Ok(map.remove(&(ns, key.to_owned())).filter(|e| e.expires_at_ms > now).map(|e| e.value))
    }

    async fn replace(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<Option<Vec<u8>>, SessionStoreError> {
        let now = self.now_ms();
        let k = (ns, key.to_owned());
        let mut map = self.lock();
        if !self.live(&mut map, &k, now) {
            return Ok(None);
        }
        let old = map.remove(&k).map(|e| e.value);
        self.insert(&mut map, k, value.to_vec(), ttl, now);
        Ok(old)
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<(), SessionStoreError> {
        self.lock().remove(&(ns, key.to_owned()));
        Ok(())
    }

    async fn increment(&self, ns: Namespace, key: &str, ttl: Duration) -> Result<i64, SessionStoreError> {
        let now = self.now_ms();
        let k = (ns, key.to_owned());
        let mut map = self.lock();
        let current = if self.live(&mut map, &k, now) {
            map.get(&k)
                .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<i64>().ok())
                .unwrap_or(0)
        } else {
            0
        };
        let next = current + 1;
        self.insert(&mut map, k, next.to_string().into_bytes(), ttl, now);
        Ok(next)
    }

    async fn set_add(&self, ns: Namespace, key: &str, member: &str, ttl: Duration) -> Result<(), SessionStoreError> {
        let now = self.now_ms();
        let until = now + ttl.as_millis() as i64;
        let mut sets = self.lock_sets();
        if sets.len() > self.next_set_sweep.load(Ordering::Relaxed) {
            sets.retain(|_, e| e.expires_at_ms > now);
            self.next_set_sweep.store((2 * sets.len()).max(self.sweep_above), Ordering::Relaxed);
        }
        let e = sets.entry((ns, key.to_owned())).or_insert_with(|| SetEntry {
            members: HashSet::new(),
            expires_at_ms: until,
        });
        if e.expires_at_ms <= now {
            e.members.clear();
        }
        e.members.insert(member.to_owned());
        e.expires_at_ms = e.expires_at_ms.max(until);
        Ok(())
    }

    async fn set_members(&self, ns: Namespace, key: &str) -> Result<Vec<String>, SessionStoreError> {
        let now = self.now_ms();
        let k = (ns, key.to_owned());
        let mut sets = self.lock_sets();
        match sets.get(&k) {
            Some(e) if e.expires_at_ms > now => Ok(e.members.iter().cloned().collect()),
            Some(_) => {
                sets.remove(&k);
                Ok(Vec::new())
            }
            None => Ok(Vec::new()),
        }
    }

    async fn set_remove(&self, ns: Namespace, key: &str, members: &[String]) -> Result<(), SessionStoreError> {
        let k = (ns, key.to_owned());
        let mut sets = self.lock_sets();
        if let Some(e) = sets.get_mut(&k) {
            for m in members {
                e.members.remove(m);
            }
            if e.members.is_empty() {
                sets.remove(&k);
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), SessionStoreError> {
        Ok(())
    }
}
