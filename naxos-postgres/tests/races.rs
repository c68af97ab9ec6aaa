//! Races between the sweeper's statements and the transitions, staged deterministically with a
//! transaction of our own that holds a lock while the statement under test waits for it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use naxos_core::backend::{NewExecution, StopReason, Store};
use naxos_core::model::{ExecutionStatus, JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_postgres::PgStore;

/// Waits until a statement starting with `sql` waits for a lock (it reached the row we hold),
/// failing after 10 s.
async fn until_waiting_for_a_lock(store: &PgStore, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = naxos_postgres::sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE $1 || '%'",
        )
        .bind(sql)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the statement under test never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pruning picks a finished execution, but a retry makes it RUNNING before the prune reaches
/// its row: the prune must leave it alone (it re-checks, under the row lock, that the execution
/// is still finished and old).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_spares_an_execution_retried_meanwhile() {
    let Some(store) = common::store().await else { return };
    let job = JobDefinition::builder("prune-race")
        .task(TaskBuilder::new("only", "f"))
        .build();
    let put = store.put_definition(job).await.unwrap();
    let id = store
        .create_execution(NewExecution::new(&put.definition, json!({})))
        .await
        .unwrap()
        .execution_id;
    let stopped = store.stop_execution(id, StopReason::TimedOut).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Failed);

    // A retry in flight: it holds the execution's row and has made it RUNNING, not yet committed.
    let mut retry = store.pool().begin().await.unwrap();
    naxos_postgres::sqlx::query("SELECT 1 FROM naxos_executions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(id)
        .execute(&mut *retry)
        .await
        .unwrap();
    naxos_postgres::sqlx::query("UPDATE naxos_executions SET status = 'RUNNING', end_time = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *retry)
        .await
        .unwrap();

    let store = Arc::new(store);
    let pruning = {
        let store = store.clone();
        tokio::spawn(async move { store.prune(Duration::ZERO, 100).await })
    };
    until_waiting_for_a_lock(&store, "DELETE FROM naxos_executions").await;
    retry.commit().await.unwrap();
    let pruned = pruning.await.unwrap().unwrap();
    assert_eq!(pruned, 0, "the retried execution was pruned");
    assert_eq!(store.get_execution(id).await.unwrap().status, ExecutionStatus::Running);
}
