//! The conformance suite on the in-memory backends.

use std::sync::Arc;

use naxos_core::backend::{Cache, Queue, Store};
use naxos_core::memory::{MemoryCache, MemoryQueue, MemoryStore};
use naxos_core::Clock;

naxos_core::store_conformance!(|clock: Clock| async move {
    Some(Arc::new(MemoryStore::with_clock(clock)) as Arc<dyn Store>)
});
naxos_core::queue_conformance!(|| async { Some(Arc::new(MemoryQueue::new()) as Arc<dyn Queue>) });
naxos_core::cache_conformance!(|| async { Some(Arc::new(MemoryCache::default()) as Arc<dyn Cache>) });
