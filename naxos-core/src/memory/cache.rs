//! The in-memory `Cache`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::backend::Cache;
use crate::model::StoredDefinition;
use crate::sync::lock;
use crate::Result;

/// A bounded [`Cache`] in process memory; past its capacity the oldest entry is forgotten.
#[derive(Debug)]
pub struct MemoryCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(String, u32), Arc<StoredDefinition>>,
    order: VecDeque<(String, u32)>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(1_024)
    }
}

impl MemoryCache {
    /// A cache of at most `capacity` definition versions (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    /// How many versions are cached.
    pub fn len(&self) -> usize {
        lock(&self.entries).map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, id: &str, version: u32) -> Result<Option<Arc<StoredDefinition>>> {
        let entries = lock(&self.entries);
        Ok(entries.map.get(&(id.to_string(), version)).cloned())
    }

    async fn put(&self, definition: Arc<StoredDefinition>) -> Result<()> {
        let key = (definition.id().to_string(), definition.version);
        let mut entries = lock(&self.entries);
        if entries.map.insert(key.clone(), definition).is_none() {
            entries.order.push_back(key);
            while entries.order.len() > self.capacity {
                if let Some(old) = entries.order.pop_front() {
                    entries.map.remove(&old);
                }
            }
        }
        Ok(())
    }
}
