//! Races between the sweeper's statements and the transitions, staged deterministically with a
//! transaction of our own that holds a row's lock while the statement under test meets it.

mod common;

use std::time::Duration;

use naxos_core::backend::{NewExecution, StopReason, Store};
use naxos_core::model::{ExecutionStatus, JobDefinition, RetentionDefaults, TaskBuilder};
use naxos_core::serde_json::json;

/// Pruning meets a finished execution whose row a retry holds (it has made it RUNNING, not yet
/// committed): the prune passes over it at once (`SKIP LOCKED`: no waiting behind the retry)
/// and leaves it alone; the retry commits, and the execution runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_passes_over_an_execution_a_retry_holds() {
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

    let everything = RetentionDefaults::uniform(Duration::ZERO);
    let pruned = tokio::time::timeout(Duration::from_secs(10), store.prune(everything, 100))
        .await
        .expect("the prune waited behind the retry's lock");
    assert_eq!(pruned.unwrap(), 0, "the execution a retry holds was pruned");
    retry.commit().await.unwrap();
    assert_eq!(store.get_execution(id).await.unwrap().status, ExecutionStatus::Running);
    assert_eq!(store.prune(everything, 100).await.unwrap(), 0, "running: kept");
}
