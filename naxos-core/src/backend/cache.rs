//! The `Cache` trait: a node-local cache of immutable definition versions.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::StoredDefinition;
use crate::Result;

/// Definitions by `(id, version)`, kept on the node so that running a task needs no Store read
/// for its definition after the first.
///
/// # Contract
///
/// Versions are immutable, so an entry is never stale and there is nothing to invalidate. A
/// cache may forget any entry at any time (size bound); `get` then returns `None` and the
/// engine reads the Store and calls `put` again. Errors are reported, and the engine then
/// falls back to the Store.
#[async_trait]
pub trait Cache: Send + Sync + Debug {
    /// The cached version, if present.
    async fn get(&self, id: &str, version: u32) -> Result<Option<Arc<StoredDefinition>>>;

    /// Caches a version.
    async fn put(&self, definition: Arc<StoredDefinition>) -> Result<()>;
}
