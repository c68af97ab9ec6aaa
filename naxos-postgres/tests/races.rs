//! Races between the sweeper's statements and the transitions, and between a finish and a claim
//! of one concurrency scope, staged deterministically with a transaction of our own that holds a
//! row's (or a scope's) lock while the statement under test meets it.

mod common;

use std::time::Duration;

use naxos_core::backend::{ClaimRequest, NewExecution, StopReason, Store, TaskFinish, TaskOutcome};
use naxos_core::model::{ExecutionStatus, JobDefinition, RetentionDefaults, TaskBuilder, TaskRef};
use naxos_core::serde_json::json;
use naxos_postgres::sqlx;

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
    sqlx::query("SELECT 1 FROM naxos_executions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(id)
        .execute(&mut *retry)
        .await
        .unwrap();
    sqlx::query("UPDATE naxos_executions SET status = 'RUNNING', end_time = NULL WHERE id = $1")
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

/// A finish frees the slot of a concurrency limit (1) while the claim of another run of that
/// scope, having counted it full, is blocking its run and has not committed — staged with a
/// transaction of our own that holds the run's execution row and the scope's advisory lock, as
/// that claim does, and has marked the run blocked. The finish's commit waits for the claim's,
/// and its admission then finds the blocked run and admits it at once (it does not leave it to
/// the sweeper with the slot free meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_admits_the_run_a_claim_was_blocking_meanwhile() {
    let Some(store) = common::store().await else { return };
    let store = std::sync::Arc::new(store);
    let job = JobDefinition::builder("slot-race")
        .task(TaskBuilder::new("a", "f").concurrency(1))
        .build();
    let put = store.put_definition(job).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let new = NewExecution::new(&put.definition, json!({}));
        ids.push(store.create_execution(new).await.unwrap().execution_id);
    }
    let holder = TaskRef::new(ids[0], "a", 1);
    let lease = Duration::from_secs(60);
    store
        .claim(ClaimRequest {
            task: holder.clone(),
            owner: "n".into(),
            lease,
        })
        .await
        .unwrap();
    let execution = store.get_execution(ids[0]).await.unwrap();
    let scope = execution
        .task("a")
        .unwrap()
        .slot
        .clone()
        .expect("the holder has a slot");

    // The other run's claim, after its count and before its commit.
    let mut claim = store.pool().begin().await.unwrap();
    for (sql, bind) in [
        (
            "SELECT 1 FROM naxos_executions WHERE id = $1::uuid FOR NO KEY UPDATE",
            ids[1].to_string(),
        ),
        ("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", scope.clone()),
    ] {
        sqlx::query(sql).bind(bind).execute(&mut *claim).await.unwrap();
    }
    sqlx::query(
        "UPDATE naxos_tasks SET blocked_by = 'concurrency', slot = $2 WHERE execution_id = $1 AND task_id = 'a'",
    )
    .bind(ids[1])
    .bind(&scope)
    .execute(&mut *claim)
    .await
    .unwrap();

    let finishing = tokio::spawn({
        let store = store.clone();
        async move {
            let done = TaskFinish {
                task: holder,
                outcome: TaskOutcome::Completed(json!(1)),
            };
            store.finish(vec![done]).await
        }
    });
    // The finish waits for the scope's lock, which the claim holds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                .fetch_one(store.pool())
                .await
                .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            !finishing.is_finished(),
            "the finish committed without waiting for the claim"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the finish never waited for the scope"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    claim.commit().await.unwrap();
    let report = finishing.await.unwrap().unwrap();
    assert_eq!(
        report.changes.ready,
        [TaskRef::new(ids[1], "a", 1)],
        "the finish admitted the run the claim had blocked"
    );
    let run = store.get_execution(ids[1]).await.unwrap();
    assert!(run.task("a").unwrap().holds_slot, "{run:?}");
}
