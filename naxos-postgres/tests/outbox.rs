//! Transactional enqueue: `PgStore::execute_in` creates an execution inside the caller's own
//! transaction, on a connection without the store's `search_path`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use naxos_core::backend::Store;
use naxos_core::memory::MemoryQueue;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::testkit::engine::{quick_config, register_counted, Runs};
use naxos_core::testkit::{service_url, unique_id};
use naxos_core::{Engine, EngineConfig, ExecuteRequest, ExecutionStatus};
use naxos_postgres::sqlx::{self, PgPool};
use naxos_postgres::{PgConfig, PgStore};

/// Two stores on one new schema (two nodes of one installation), or `None` outside CI.
async fn stores() -> Option<(PgStore, PgStore, String)> {
    let url = service_url("NAXOS_TEST_POSTGRES_URL")?;
    let schema = format!(
        "naxos_test_{}",
        &naxos_core::uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let mut config = PgConfig::new(url);
    config.schema = Some(schema.clone());
    config.max_connections = 6;
    let a = PgStore::with_config(config.clone()).await.expect("connect");
    let b = PgStore::with_config(config).await.expect("connect");
    Some((a, b, schema))
}

/// The caller's own pool: the database's default `search_path`, no naxos schema on it, and an
/// `orders` table of its own.
async fn caller() -> (PgPool, String) {
    let url = service_url("NAXOS_TEST_POSTGRES_URL").expect("checked by stores()");
    let pool = PgPool::connect(&url).await.expect("the caller's pool");
    let orders = unique_id("orders").replace('-', "_");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {orders} (id TEXT PRIMARY KEY)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    (pool, orders)
}

fn diamond() -> JobDefinition {
    JobDefinition::builder(unique_id("order"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]))
        .task(TaskBuilder::new("c", "f").after(["a"]))
        .task(TaskBuilder::new("d", "f").after(["b", "c"]))
        .build()
}

/// A node whose sweeps come once at start and then only after an hour: whatever starts an
/// execution after that is the wake-up of the commit, not the stale-message sweep.
fn slow_sweeps(node: &str) -> EngineConfig {
    EngineConfig {
        sweep_interval: Duration::from_secs(3600),
        republish_after: Duration::from_secs(3600),
        ..quick_config(node)
    }
}

async fn node(store: &PgStore, name: &str, runs: &Runs) -> Engine {
    let engine = Engine::builder()
        .store(Arc::new(store.clone()))
        .queue(Arc::new(MemoryQueue::new()))
        .config(slow_sweeps(name))
        .build()
        .unwrap();
    register_counted(&engine, runs, Duration::ZERO);
    engine.start().unwrap();
    engine
}

/// Waits until `n` sessions listen on the schema's channel (a node's listener connects once
/// its engine starts).
async fn listening(pool: &PgPool, schema: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listeners: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query = $1")
            .bind(format!("LISTEN \"naxos_outbox_{schema}\""))
            .fetch_one(pool)
            .await
            .unwrap();
        if listeners >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{listeners} of {n} nodes listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Inserts an order and creates its execution in one transaction of the caller's; commits or
/// rolls back.
async fn order(pool: &PgPool, orders: &str, store: &PgStore, def: &str, commit: bool) -> naxos_core::ExecutionId {
    let mut tx = pool.begin().await.unwrap();
    let id = unique_id("o");
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {orders} (id) VALUES ($1)")))
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let submitted = store
        .execute_in(&mut tx, ExecuteRequest::new(def, json!({ "order": id })))
        .await
        .unwrap();
    assert!(submitted.created);
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    submitted.execution_id
}

/// A rollback of the caller's transaction leaves no execution, no task and nothing to publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_leaves_no_execution() {
    let Some((store, _, _)) = stores().await else { return };
    let (pool, orders) = caller().await;
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let id = order(&pool, &orders, &store, &def.definition.id, false).await;
    let e = store.get_execution(id).await.expect_err("rolled back");
    assert!(e.is_not_found(), "{e}");
    assert!(store.take_unpublished(100).await.unwrap().is_empty());
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {orders}")))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the order went with it");
}

/// After the commit, a listening node starts the tasks at once — not at its next sweep, an
/// hour away — and runs each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_starts_the_tasks_without_waiting_for_a_sweep() {
    let Some((store, _, schema)) = stores().await else {
        return;
    };
    let (pool, orders) = caller().await;
    let runs = Runs::default();
    let engine = node(&store, "n1", &runs).await;
    let def = engine.register_definition(diamond()).await.unwrap().definition;
    listening(&pool, &schema, 1).await;
    let id = order(&pool, &orders, &store, &def.definition.id, true).await;
    let done = engine.wait_for_timeout(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    for t in ["a", "b", "c", "d"] {
        assert_eq!(runs.lock().unwrap()[&(id, t.to_string())], 1, "{t} ran once");
    }
    assert!(store.take_unpublished(100).await.unwrap().is_empty(), "taken");
    engine.shutdown().await;
}

/// Two nodes listen; twenty orders commit: each execution is taken by one node (the outbox
/// row by one `DELETE … SKIP LOCKED`), and every task runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_listening_nodes_take_each_execution_once() {
    let Some((a, b, schema)) = stores().await else { return };
    let (pool, orders) = caller().await;
    let runs = Runs::default();
    let (n1, n2) = (node(&a, "n1", &runs).await, node(&b, "n2", &runs).await);
    let def = n1.register_definition(diamond()).await.unwrap().definition;
    listening(&pool, &schema, 2).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(order(&pool, &orders, &a, &def.definition.id, true).await);
    }
    for id in &ids {
        let done = n1.wait_for_timeout(*id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed);
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 80);
    assert!(runs.values().all(|&n| n == 1), "every task ran once: {runs:?}");
    n1.shutdown().await;
    n2.shutdown().await;
}

/// The store call itself: two nodes asking at once for the same committed execution get its
/// root task once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_unpublished_hands_each_execution_to_one_caller() {
    let Some((a, b, _)) = stores().await else { return };
    let (pool, orders) = caller().await;
    let def = a.put_definition(diamond()).await.unwrap().definition;
    let id = order(&pool, &orders, &a, &def.definition.id, true).await;
    let (x, y) = tokio::join!(a.take_unpublished(10), b.take_unpublished(10));
    let mut ready = x.unwrap().ready;
    ready.extend(y.unwrap().ready);
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(
        (ready[0].execution_id, ready[0].task_id.as_str(), ready[0].attempt),
        (id, "a", 1)
    );
}

/// Committed while no node ran (the node that would have published it crashed between the
/// commit and the publish): the first sweep of the next node to start takes it and runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_while_no_node_runs_is_started_by_the_next_node() {
    let Some((store, _, _)) = stores().await else { return };
    let (pool, orders) = caller().await;
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let id = order(&pool, &orders, &store, &def.definition.id, true).await;
    assert_eq!(store.get_execution(id).await.unwrap().status, ExecutionStatus::Pending);
    let runs = Runs::default();
    let engine = node(&store, "late", &runs).await;
    let done = engine.wait_for_timeout(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(runs.lock().unwrap().len(), 4);
    engine.shutdown().await;
}

/// The caller's idempotency key holds in its transactions too: the same key twice is the same
/// execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_dedups_inside_transactions() {
    let Some((store, _, _)) = stores().await else { return };
    let (pool, _) = caller().await;
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let request = || ExecuteRequest::new(def.definition.id.clone(), json!({})).idempotency_key("order-7");
    let mut tx = pool.begin().await.unwrap();
    let first = store.execute_in(&mut tx, request()).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let again = store.execute_in(&mut tx, request()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.execution_id, again.execution_id);
    let bad = {
        let mut tx = pool.begin().await.unwrap();
        store
            .execute_in(&mut tx, ExecuteRequest::new(def.definition.id.clone(), json!([1])))
            .await
            .expect_err("params must be an object")
    };
    assert!(bad.to_string().contains("params must be a JSON object"), "{bad}");
}
