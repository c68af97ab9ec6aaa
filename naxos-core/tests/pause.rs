//! Pausing a definition in the engine, on the in-memory store: while it is paused, neither a
//! new execution nor a running one starts a task (each waits QUEUED, `blockedBy: paused`, and
//! the stale sweep leaves it), a task running at the pause finishes, and after the resume every
//! execution completes with each task run once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{engine, until};
use naxos_core::model::{BlockedBy, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus};
use naxos_core::serde_json::json;
use naxos_core::{Engine, TaskError};

const LIMIT: Duration = Duration::from_secs(30);

/// `first → second`, both counting their calls; `first` waits for `params.gate` to open.
async fn started(calls: Arc<AtomicUsize>, gate: Arc<tokio::sync::Notify>) -> Engine {
    let engine = engine();
    let first_calls = calls.clone();
    engine.register("first", move |ctx| {
        let (calls, gate) = (first_calls.clone(), gate.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if ctx.param::<bool>("gate") == Some(true) {
                gate.notified().await;
            }
            Ok::<_, TaskError>(json!("first"))
        }
    });
    engine.register("second", move |_ctx| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TaskError>(json!("second"))
        }
    });
    engine
        .register_definition(
            JobDefinition::builder("paused")
                .task(TaskBuilder::new("first", "first"))
                .task(TaskBuilder::new("second", "second").after(["first"]))
                .build(),
        )
        .await
        .unwrap();
    engine.start().unwrap();
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_definition_starts_nothing_until_resumed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let engine = started(calls.clone(), gate.clone()).await;

    // A running execution: `first` runs when the pause comes.
    let running = engine
        .execute("paused", json!({"gate": true}))
        .await
        .unwrap()
        .execution_id;
    until(&engine, running, |e| {
        e.task("first").unwrap().status == TaskStatus::Running
    })
    .await;
    engine.pause_definition("paused").await.unwrap();
    assert!(engine
        .definitions()
        .await
        .unwrap()
        .iter()
        .any(|d| d.id == "paused" && d.paused));
    gate.notify_one();
    // A new execution, while paused.
    let new = engine.execute("paused", json!({})).await.unwrap().execution_id;

    let blocked = |id| {
        let engine = engine.clone();
        async move {
            until(&engine, id, |e| {
                e.tasks
                    .iter()
                    .any(|t| t.blocked_by == Some(BlockedBy::Paused) && t.status == TaskStatus::Queued)
            })
            .await
        }
    };
    let r = blocked(running).await;
    assert_eq!(
        r.task("first").unwrap().status,
        TaskStatus::Completed,
        "the running task finished"
    );
    assert_eq!(r.task("second").unwrap().blocked_by, Some(BlockedBy::Paused));
    let n = blocked(new).await;
    assert_eq!(n.summary.status, ExecutionStatus::Pending);
    assert_eq!(n.task("first").unwrap().blocked_by, Some(BlockedBy::Paused));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the task running at the pause ran"
    );
    // Several sweeps (republish after 500 ms, a sweep every 100 ms) start nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the stale sweep republished a blocked task"
    );

    engine.resume_definition("paused").await.unwrap();
    for id in [running, new] {
        let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
        assert_eq!(
            done.summary.status,
            ExecutionStatus::Completed,
            "{:?}",
            done.summary.error
        );
        assert!(
            done.tasks.iter().all(|t| t.attempts == 1 && t.blocked_by.is_none()),
            "{:?}",
            done.tasks
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(engine.pause_definition("nope").await.unwrap_err().is_not_found());
    engine.shutdown().await;
}
