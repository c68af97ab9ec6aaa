//! Building an [`Engine`].

use std::sync::Arc;

use super::inner::Inner;
use super::{Engine, EngineConfig};
use crate::backend::{Cache, Queue, Store};
use crate::memory::{MemoryCache, MemoryQueue, MemoryStore};
use crate::Result;

/// Builds an [`Engine`]; backends not set are the in-memory ones.
#[derive(Debug, Default)]
#[must_use]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    queue: Option<Arc<dyn Queue>>,
    cache: Option<Arc<dyn Cache>>,
    config: EngineConfig,
}

impl EngineBuilder {
    /// The Store.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The Queue.
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The Cache.
    pub fn cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// All settings at once.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Task attempts run at once on this node (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency.max(1);
        self
    }

    /// This node's id.
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.config.node_id = node_id.into();
        self
    }

    /// The engine; `InvalidInput` naming the setting when the settings cannot work (see
    /// [`EngineConfig::validate`]).
    pub fn build(self) -> Result<Engine> {
        let mut config = self.config;
        config.concurrency = config.concurrency.max(1);
        config.validate()?;
        Ok(Engine {
            inner: Arc::new(Inner::new(
                self.store
                    .unwrap_or_else(|| Arc::new(MemoryStore::with_clock(config.clock.clone()))),
                self.queue.unwrap_or_else(|| Arc::new(MemoryQueue::new())),
                self.cache.unwrap_or_else(|| Arc::new(MemoryCache::default())),
                config,
            )),
        })
    }
}
