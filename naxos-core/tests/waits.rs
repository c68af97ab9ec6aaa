//! Durable waits in the engine, on the in-memory store: `sleep` (for a time, until a time),
//! `waitFor` a signal (sent after or before the task waits, timing out), a wait that holds no
//! worker slot, and a wait whose node stopped, woken by another node's sweeper.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{fast_config, until};
use naxos_core::memory::{MemoryQueue, MemoryStore};
use naxos_core::model::{Execution, ExecutionStatus, JobDefinition, TaskBuilder, TaskRun, TaskStatus};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, EngineConfig, Error, ExecutionId};

const LIMIT: Duration = Duration::from_secs(20);

/// An engine whose sweeper never runs within a test: only its timers wake waits.
fn engine_without_sweeps() -> Engine {
    let engine = Engine::builder()
        .config(EngineConfig {
            sweep_interval: Duration::from_secs(3_600),
            ..fast_config()
        })
        .build()
        .unwrap();
    register(&engine);
    engine
}

/// `echo` returns its upstream outputs; `slow` takes 300 ms.
fn register(engine: &Engine) {
    engine.register("echo", |ctx| async move {
        let upstream: naxos_core::serde_json::Map<String, Value> =
            ctx.upstream_all().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Ok(json!({ "upstream": upstream }))
    });
    engine.register("slow", |_ctx| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(json!("slow"))
    });
}

fn task<'a>(exec: &'a Execution, id: &str) -> &'a TaskRun {
    exec.tasks.iter().find(|t| t.task_id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_waits_its_time_then_completes_and_starts_what_follows() {
    let engine = engine_without_sweeps();
    engine
        .register_definition(
            JobDefinition::builder("nap")
                .task(TaskBuilder::new("a", "echo"))
                .task(TaskBuilder::sleep("nap", Duration::from_millis(400)).after(["a"]))
                .task(TaskBuilder::new("b", "echo").after(["nap"]))
                .build(),
        )
        .await
        .unwrap();
    engine.start().unwrap();
    let id = engine.execute("nap", json!({})).await.unwrap().execution_id;
    let waiting = until(&engine, id, |e| task(e, "nap").status == TaskStatus::Waiting).await;
    let nap = task(&waiting, "nap");
    let (started, due) = (nap.start_time.unwrap(), nap.due_at.unwrap());
    assert_eq!(
        due - started,
        chrono::Duration::milliseconds(400),
        "due 400 ms after it began"
    );
    assert_eq!(task(&waiting, "b").status, TaskStatus::Pending);

    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    let nap = task(&done, "nap");
    assert_eq!(
        (nap.output.clone(), nap.attempts),
        (Some(Value::Null), 0),
        "no worker ran it"
    );
    assert!(nap.end_time.unwrap() >= due, "it ended at its due time, not before");
    let b = task(&done, "b");
    assert!(b.start_time.unwrap() >= due, "b started after the sleep");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_until_a_time_from_params_and_a_bad_time_fails_the_task() {
    let engine = engine_without_sweeps();
    engine
        .register_definition(
            JobDefinition::builder("until")
                .task(TaskBuilder::sleep_until("wait", "params.at"))
                .task(TaskBuilder::new("b", "echo").after(["wait"]))
                .build(),
        )
        .await
        .unwrap();
    engine.start().unwrap();
    let at = Utc::now() + chrono::Duration::milliseconds(500);
    let at = DateTime::<Utc>::from_timestamp_millis(at.timestamp_millis()).unwrap();
    let id = engine
        .execute("until", json!({ "at": at.to_rfc3339() }))
        .await
        .unwrap()
        .execution_id;
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    assert!(task(&done, "wait").end_time.unwrap() >= at);

    // A time in the past completes at once; a value that is no time FAILS the task, naming why.
    let past = engine
        .execute("until", json!({ "at": "2001-01-01T00:00:00Z" }))
        .await
        .unwrap()
        .execution_id;
    let done = engine.wait_for_timeout(past, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    let bad = engine
        .execute("until", json!({ "at": "soon" }))
        .await
        .unwrap()
        .execution_id;
    let done = engine.wait_for_timeout(bad, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Failed);
    let wait = task(&done, "wait");
    assert_eq!(wait.status, TaskStatus::Failed);
    assert!(
        wait.error.as_deref().unwrap().contains("not an RFC 3339 time"),
        "{wait:?}"
    );
    assert_eq!(task(&done, "b").status, TaskStatus::Skipped);
    engine.shutdown().await;
}

fn approval(timeout: Option<Duration>) -> JobDefinition {
    let mut wait = TaskBuilder::wait_for("approval", "approve");
    if let Some(t) = timeout {
        wait = wait.signal_timeout(t);
    }
    JobDefinition::builder("approval")
        .task(TaskBuilder::new("a", "slow"))
        .task(wait.after(["a"]))
        .task(TaskBuilder::new("pay", "echo").after(["approval"]))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_completes_the_waiting_task_with_its_payload() {
    let engine = engine_without_sweeps();
    engine.register_definition(approval(None)).await.unwrap();
    engine.start().unwrap();
    let id = engine.execute("approval", json!({})).await.unwrap().execution_id;
    let waiting = until(&engine, id, |e| task(e, "approval").status == TaskStatus::Waiting).await;
    assert_eq!(task(&waiting, "approval").due_at, None, "no timeout: no due time");

    let taken = engine.signal(id, "approve", json!({ "by": "ann" })).await.unwrap();
    assert_eq!(taken.as_deref(), Some("approval"));
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(task(&done, "approval").output, Some(json!({ "by": "ann" })));
    assert_eq!(
        task(&done, "pay").output,
        Some(json!({ "upstream": { "approval": { "by": "ann" } } })),
        "what follows sees the payload"
    );

    // A finished execution refuses signals; a name no task waits for is refused at once.
    let err = engine.signal(id, "approve", json!(1)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let other = engine.execute("approval", json!({})).await.unwrap().execution_id;
    let err = engine.signal(other, "reject", json!(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("signal `reject`")),
        "{err}"
    );
    let err = engine
        .signal(ExecutionId::now_v7(), "approve", json!(1))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    engine.cancel(other).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_before_the_task_waits_is_kept_for_it_and_taken_once() {
    let engine = engine_without_sweeps();
    engine.register_definition(approval(None)).await.unwrap();
    engine.start().unwrap();
    let id = engine.execute("approval", json!({})).await.unwrap().execution_id;
    // `a` runs for 300 ms: the approval task is still PENDING.
    let kept = engine.signal(id, "approve", json!("early")).await.unwrap();
    assert_eq!(kept, None, "kept: no task waits yet");
    let kept = engine.signal(id, "approve", json!("second")).await.unwrap();
    assert_eq!(kept, None);
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(
        task(&done, "approval").output,
        Some(json!("early")),
        "the first signal, once"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_its_timeout_fails_and_a_retry_waits_again() {
    let engine = engine_without_sweeps();
    engine
        .register_definition(approval(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    engine.start().unwrap();
    let id = engine.execute("approval", json!({})).await.unwrap().execution_id;
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Failed, "{done:?}");
    let approval = task(&done, "approval");
    assert_eq!(approval.error.as_deref(), Some("signal approve timed out"));
    assert!(approval.end_time.unwrap() >= approval.due_at.unwrap_or(approval.end_time.unwrap()));
    assert_eq!(task(&done, "pay").status, TaskStatus::Skipped);

    // Retried, it waits again (for 300 ms more): a signal now completes it.
    engine.retry(id).await.unwrap();
    until(&engine, id, |e| task(e, "approval").status == TaskStatus::Waiting).await;
    assert_eq!(
        engine.signal(id, "approve", json!("late")).await.unwrap().as_deref(),
        Some("approval")
    );
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sleeping_tasks_hold_no_worker_slot() {
    let engine = Engine::builder()
        .config(EngineConfig {
            concurrency: 1,
            ..fast_config()
        })
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    engine.register("count", move |_ctx| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(json!(null))
        }
    });
    engine
        .register_definition(
            JobDefinition::builder("sleepy")
                .task(TaskBuilder::sleep("nap", Duration::from_secs(3_600)))
                .build(),
        )
        .await
        .unwrap();
    engine
        .register_definition(
            JobDefinition::builder("work")
                .task(TaskBuilder::new("w", "count"))
                .build(),
        )
        .await
        .unwrap();
    engine.start().unwrap();
    let mut sleepers = Vec::new();
    for _ in 0..100 {
        sleepers.push(engine.execute("sleepy", json!({})).await.unwrap().execution_id);
    }
    for &id in &sleepers {
        until(&engine, id, |e| task(e, "nap").status == TaskStatus::Waiting).await;
    }
    // With one worker slot and 100 sleeps, other work still runs, one after another.
    for _ in 0..20 {
        let id = engine.execute("work", json!({})).await.unwrap().execution_id;
        let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
        assert_eq!(done.summary.status, ExecutionStatus::Completed);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert_eq!(engine.running_tasks(), 0, "no sleep holds a slot");
    for id in sleepers {
        assert_eq!(engine.cancel(id).await.unwrap(), ExecutionStatus::Cancelled);
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_whose_node_stopped_is_woken_by_another_nodes_sweeper() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let node = |sweep: Duration| {
        let engine = Engine::builder()
            .store(store.clone())
            .queue(queue.clone())
            .config(EngineConfig {
                sweep_interval: sweep,
                ..fast_config()
            })
            .build()
            .unwrap();
        register(&engine);
        engine
    };
    let first = node(Duration::from_secs(3_600));
    first
        .register_definition(
            JobDefinition::builder("nap")
                .task(TaskBuilder::sleep("nap", Duration::from_millis(300)))
                .task(TaskBuilder::new("b", "echo").after(["nap"]))
                .build(),
        )
        .await
        .unwrap();
    first.start().unwrap();
    let id = first.execute("nap", json!({})).await.unwrap().execution_id;
    until(&first, id, |e| task(e, "nap").status == TaskStatus::Waiting).await;
    // The node that holds the timer stops; one that never saw the wait takes over.
    first.shutdown().await;
    let second = node(Duration::from_millis(100));
    second.start().unwrap();
    let done = second.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
    let nap = task(&done, "nap");
    assert!(nap.end_time.unwrap() >= nap.start_time.unwrap() + chrono::Duration::milliseconds(300));
    second.shutdown().await;
}
