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
