//! The core conformance suite on PgStore (a real PostgreSQL: `scripts/test.sh` starts one).

mod common;

use std::sync::Arc;

use naxos_core::backend::Store;

naxos_core::store_conformance!(|| async { common::store().await.map(|s| Arc::new(s) as Arc<dyn Store>) });
