//! Session stores: in-process (one node, the embedded default) and Redis (several replicas).
mod memory;
mod redis_store;

pub use memory::MemorySessionStore;
pub use redis_store::{RedisSessionStore, RedisSettings};
