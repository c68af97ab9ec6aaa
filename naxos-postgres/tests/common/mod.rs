//! A fresh PgStore per test, in its own schema of the test database.
#![allow(dead_code, unreachable_pub)]

use naxos_core::testkit::service_url;
use naxos_core::Clock;
use naxos_postgres::{PgConfig, PgStore};

/// A store in a new schema on the database's clock, or `None` when `NAXOS_TEST_POSTGRES_URL`
/// is unset (outside CI).
pub async fn store() -> Option<PgStore> {
    store_on(None).await
}

/// A store in a new schema that reads the time from `clock` (the database's when `None`).
pub async fn store_on(clock: Option<Clock>) -> Option<PgStore> {
    let url = service_url("NAXOS_TEST_POSTGRES_URL")?;
    let schema = format!(
        "naxos_test_{}",
        &naxos_core::uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let mut config = PgConfig::new(url);
    config.schema = Some(schema);
    config.max_connections = 6;
    config.clock = clock;
    Some(
        PgStore::with_config(config)
            .await
            .expect("connect to the test PostgreSQL"),
    )
}
