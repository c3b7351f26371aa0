//! A short-lived in-process cache of registered clients: the token endpoint reads the client on
//! every request, and clients change rarely. A change made through this process is seen at
//! once; one made by another replica within `TTL`.
use crate::domain::client::Client;
use crate::protocol::ClientId;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(5);
/// Bound on entries: unknown client ids are not cached, so only registered clients fill it.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct ClientCache {
    map: RwLock<HashMap<ClientId, (Instant, Client)>>,
}

impl ClientCache {
    pub fn get(&self, id: &ClientId) -> Option<Client> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|(at, _)| at.elapsed() < TTL).map(|(_, c)| c.clone())
    }

    pub fn put(&self, c: &Client) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        if map.len() < MAX_ENTRIES {
            map.insert(c.id.clone(), (Instant::now(), c.clone()));
        }
    }

    pub fn forget(&self, id: &ClientId) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}
