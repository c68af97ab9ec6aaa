//! The core conformance suite on PgStore (a real PostgreSQL: `scripts/test.sh` starts one).

mod common;

use std::sync::Arc;

use naxos_core::backend::Store;
use naxos_core::Clock;

naxos_core::store_conformance!(|clock: Clock| async move {
    common::store_on(Some(clock))
        .await
        .map(|s| Arc::new(s) as Arc<dyn Store>)
});

/// PgStore creates a batch in one statement (or one transaction): all or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_creates_nothing() {
    let clock = naxos_core::testkit::test_clock();
    let Some(store) = common::store_on(Some(Clock::Manual(clock.clone()))).await else {
        return;
    };
    naxos_core::testkit::store::a_failed_batch_creates_nothing(Arc::new(store), clock).await;
}
