//! naxos-core's conformance suites and the state-machine differential test on LmdbStore and
//! LmdbCache, each test on a store of its own in a temporary directory.

use std::sync::Arc;

use naxos_core::backend::{Cache, Store};
use naxos_core::Clock;
use naxos_lmdb::{LmdbCache, LmdbCacheConfig, LmdbConfig, LmdbStore};

naxos_core::store_conformance!(|clock: Clock| async move {
    let store = LmdbStore::with_config(LmdbConfig::temporary().with_clock(clock)).expect("open a store");
    Some(Arc::new(store) as Arc<dyn Store>)
});

naxos_core::cache_conformance!(|| async {
    let cache = LmdbCache::with_config(LmdbCacheConfig::temporary()).expect("open a cache");
    Some(Arc::new(cache) as Arc<dyn Cache>)
});

/// LmdbStore creates a batch in one write request, so one transaction: all or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_creates_nothing() {
    let clock = naxos_core::testkit::test_clock();
    let store =
        LmdbStore::with_config(LmdbConfig::temporary().with_clock(Clock::Manual(clock.clone()))).expect("open a store");
    naxos_core::testkit::store::a_failed_batch_creates_nothing(Arc::new(store), clock).await;
}

/// The same suite with the writer's state cache off, so that every transition decodes the
/// execution from its records: the rows alone must hold the whole state.
mod without_the_state_cache {
    use super::*;

    naxos_core::store_conformance!(|clock: Clock| async move {
        let config = LmdbConfig::temporary().with_clock(clock).with_cached_states(0);
        let store = LmdbStore::with_config(config).expect("open a store");
        Some(Arc::new(store) as Arc<dyn Store>)
    });
}
