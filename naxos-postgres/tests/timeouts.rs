//! Every Store call has a deadline: a database that stops answering (a network that stops
//! forwarding, modelled by a loopback TCP proxy that holds every byte) fails the call within
//! `PgConfig::timeout` instead of hanging the worker that made it; a statement stuck behind a
//! lock is cancelled by the server itself, so it does not hold the connection (or its own
//! locks) after the caller gave up.

mod common;

use std::time::{Duration, Instant};

use naxos_core::backend::{StopReason, Store};
use naxos_core::testkit::proxy::{host_port, FreezingProxy};
use naxos_core::testkit::{diamond, service_url, unique_id};
use naxos_core::Error;
use naxos_postgres::sqlx::{self, Connection, PgConnection};
use naxos_postgres::{PgConfig, PgStore};

const TIMEOUT: Duration = Duration::from_secs(1);

async fn store(url: &str) -> PgStore {
    let mut config = PgConfig::new(url);
    config.schema = Some(unique_id("timeouts").replace('-', "_"));
    config.timeout = TIMEOUT;
    config.max_connections = 4;
    PgStore::with_config(config).await.expect("connect")
}

/// Runs `call`, which must fail transiently with the deadline's message within 5 s.
async fn fails_in_time<T: std::fmt::Debug>(what: &str, call: impl std::future::Future<Output = naxos_core::Result<T>>) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung past 5 s"));
    let error: Error = result.expect_err(what);
    assert!(error.is_transient(), "{what}: {error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{what} took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_silent_database_fail_within_their_deadline() {
    let Some(url) = service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let proxy = FreezingProxy::start(host_port(&url)).await;
    let store = store(&proxy.url_for(&url)).await;
    let id = new_execution(&store).await;

    // A call in flight when the network goes silent: it waits on a row lock held by another
    // session (so it is surely still running), and then nothing comes back, not even the
    // server's own cancellation.
    let mut holder = lock_row(&url, &store, id).await;
    let stop = tokio::spawn({
        let store = store.clone();
        async move {
            let started = Instant::now();
            let result =
                tokio::time::timeout(Duration::from_secs(5), store.stop_execution(id, StopReason::Cancelled)).await;
            (result, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.freeze();
    let (result, took) = stop.await.unwrap();
    let error = result
        .expect("the stop hung past 5 s")
        .expect_err("the stop cannot succeed");
    assert!(
        error.is_transient() && error.to_string().contains("did not answer"),
        "{error}"
    );
    assert!(took < Duration::from_secs(3), "the stop took {took:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    // A new call while it is silent fails in time too (waiting for a connection that answers).
    fails_in_time("a ping", store.ping()).await;

    proxy.thaw();
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.get_execution(id).await.is_err() {
        assert!(Instant::now() < deadline, "the store never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new execution of a new diamond.
async fn new_execution(store: &PgStore) -> naxos_core::model::ExecutionId {
    let def = diamond();
    let put = store.put_definition(def).await.unwrap();
    let new = naxos_core::backend::NewExecution::new(&put.definition, naxos_core::serde_json::json!({}));
    store.create_execution(new).await.unwrap().execution_id
}

/// A session of its own (straight to the database) that holds execution `id`'s row lock in an
/// open transaction.
async fn lock_row(url: &str, store: &PgStore, id: naxos_core::model::ExecutionId) -> PgConnection {
    let mut holder = PgConnection::connect(url).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path = {schema}")))
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM naxos_executions WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stuck_behind_a_lock_is_cancelled_by_the_server() {
    let Some(url) = service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let store = store(&url).await;
    let id = new_execution(&store).await;
    // Another session holds the execution's row lock and does not let go.
    let mut holder = lock_row(&url, &store, id).await;

    fails_in_time("a stop behind a lock", store.stop_execution(id, StopReason::Cancelled)).await;
    // The server gave up too: nothing of naxos's waits on that lock any more.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} statements still wait on the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let outcome = store.stop_execution(id, StopReason::Cancelled).await.unwrap();
    assert_eq!(outcome.status, naxos_core::ExecutionStatus::Cancelled);
}
