//! Definition versions as the engine reads them: memo → Cache → Store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{Cache, Store};
use crate::model::StoredDefinition;
use crate::sync::lock;
use crate::Result;

/// Most versions kept in the in-process memo before it starts over.
const MEMO_CAPACITY: usize = 4_096;

/// Reads immutable definition versions through an in-process memo and the node's Cache.
#[derive(Debug, Default)]
pub(crate) struct Definitions {
    memo: Mutex<HashMap<(String, u32), Arc<StoredDefinition>>>,
}

impl Definitions {
    /// The version, from the memo, else the Cache, else the Store (filling both on the way).
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        cache: &dyn Cache,
        id: &str,
        version: u32,
    ) -> Result<Arc<StoredDefinition>> {
        let key = (id.to_string(), version);
        if let Some(d) = lock(&self.memo).get(&key) {
            return Ok(d.clone());
        }
        let cached = match cache.get(id, version).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, definition = id, version, "definition cache read failed; using the store");
                None
            }
        };
        let def = match cached {
            Some(d) => d,
            None => {
                let d = store.get_definition(id, Some(version)).await?;
                if let Err(e) = cache.put(d.clone()).await {
                    tracing::warn!(error = %e, definition = id, version, "definition cache write failed");
                }
                d
            }
        };
        let mut memo = lock(&self.memo);
        if memo.len() >= MEMO_CAPACITY {
            memo.clear();
        }
        memo.insert(key, def.clone());
        Ok(def)
    }
}
