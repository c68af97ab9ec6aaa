//! LmdbCache: bounded by its byte budget, evicting while readers read (no deadlock, no torn
//! value), and surviving a reopen.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestDir;
use naxos_core::backend::Cache;
use naxos_core::model::StoredDefinition;
use naxos_core::testkit::diamond;
use naxos_lmdb::{LmdbCache, LmdbCacheConfig};

fn version(n: u32) -> Arc<StoredDefinition> {
    let mut def = diamond();
    def.id = "cached".into();
    def.name = format!("version {n}");
    Arc::new(StoredDefinition::new(n, chrono::Utc::now(), def))
}

/// 300 versions put into a cache that holds a few dozen, while eight readers read every
/// version in a loop: the puts finish, the readers never wait forever, every value read is
/// the version asked for, and the cache ends within its budget holding the latest versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eviction_under_concurrent_readers() {
    let dir = TestDir::new("evict");
    let config = LmdbCacheConfig::new(dir.join("cache")).with_max_bytes(32 * 1024);
    let cache = LmdbCache::with_config(config).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (hits, misses) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut readers = Vec::new();
    for r in 0..8u32 {
        let (cache, stop, hits, misses) = (cache.clone(), stop.clone(), hits.clone(), misses.clone());
        readers.push(tokio::spawn(async move {
            let mut n = r;
            while !stop.load(Ordering::Relaxed) {
                n = n % 300 + 1;
                match cache.get("cached", n).await.unwrap() {
                    Some(d) => {
                        assert_eq!((d.version, d.definition.name.clone()), (n, format!("version {n}")));
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 7;
            }
        }));
    }
    let writing = async {
        for n in 1..=300 {
            cache.put(version(n)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), writing)
        .await
        .expect("the puts finish while readers read");
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("every reader finishes")
            .unwrap();
    }
    assert!(hits.load(Ordering::Relaxed) > 0 && misses.load(Ordering::Relaxed) > 0);
    let (count, bytes) = cache.usage().await.unwrap();
    assert!(bytes <= 32 * 1024, "{bytes} bytes kept");
    assert!(count > 5 && count < 300, "{count} versions kept");
    let latest = cache.get("cached", 300).await.unwrap().expect("the latest put is kept");
    assert_eq!(latest.definition.name, "version 300");
    assert_eq!(
        cache.get("cached", 1).await.unwrap(),
        None,
        "the first put is the first forgotten"
    );
}

/// What was cached is there after a reopen; a put of a cached version changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_reopen() {
    let dir = TestDir::new("cache-reopen");
    let v1 = version(1);
    {
        let cache = LmdbCache::open(dir.join("cache")).unwrap();
        cache.put(v1.clone()).await.unwrap();
        cache.put(v1.clone()).await.unwrap();
        assert_eq!(cache.usage().await.unwrap().0, 1);
    }
    let cache = LmdbCache::open(dir.join("cache")).unwrap();
    assert_eq!(cache.get("cached", 1).await.unwrap(), Some(v1));
}
