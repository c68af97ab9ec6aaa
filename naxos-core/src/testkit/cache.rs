//! Cache conformance checks.

use std::sync::Arc;

use chrono::Utc;

use super::fixtures::diamond;
use crate::backend::Cache;
use crate::model::StoredDefinition;

fn stored(version: u32, name: &str) -> Arc<StoredDefinition> {
    let mut definition = diamond();
    definition.id = "cached".into();
    definition.name = name.into();
    Arc::new(StoredDefinition::new(version, Utc::now(), definition))
}

/// A put version is returned whole; a missing one is `None`.
pub async fn get_after_put(cache: Arc<dyn Cache>) {
    assert_eq!(cache.get("cached", 1).await.unwrap(), None);
    let v1 = stored(1, "one");
    cache.put(v1.clone()).await.unwrap();
    assert_eq!(cache.get("cached", 1).await.unwrap(), Some(v1));
    assert_eq!(cache.get("other", 1).await.unwrap(), None);
}

/// Each version is its own entry.
pub async fn versions_are_separate(cache: Arc<dyn Cache>) {
    let (v1, v2) = (stored(1, "one"), stored(2, "two"));
    cache.put(v1.clone()).await.unwrap();
    cache.put(v2.clone()).await.unwrap();
    assert_eq!(cache.get("cached", 1).await.unwrap(), Some(v1));
    assert_eq!(cache.get("cached", 2).await.unwrap(), Some(v2));
    assert_eq!(cache.get("cached", 3).await.unwrap(), None);
}
