//! The conformance suite on the in-memory backends.

use std::sync::Arc;

use naxos_core::backend::{Cache, Queue, Store};
use naxos_core::memory::{MemoryCache, MemoryQueue, MemoryStore};

naxos_core::store_conformance!(|| async { Some(Arc::new(MemoryStore::new()) as Arc<dyn Store>) });
naxos_core::queue_conformance!(|| async { Some(Arc::new(MemoryQueue::new()) as Arc<dyn Queue>) });
naxos_core::cache_conformance!(|| async { Some(Arc::new(MemoryCache::default()) as Arc<dyn Cache>) });
