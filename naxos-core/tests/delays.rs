//! Delayed executions in the engine, on the in-memory store: started by the node's timer at
//! their time (not before), the job timeout counted from that start, cancelled before their time
//! (nothing runs), started by another node's sweeper when the node that created them stopped,
//! deduplicated by an idempotency key, refused beyond the longest delay.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use common::{fast_config, until};
use naxos_core::memory::{MemoryQueue, MemoryStore};
use naxos_core::model::{ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EngineConfig, Error, ExecuteRequest};

const LIMIT: Duration = Duration::from_secs(20);

/// An engine with `config` whose `count` function counts its calls in `calls` and takes 50 ms,
/// and the definition `later`: `a → b`, both `count`, with a job timeout of 400 ms.
async fn engine(config: EngineConfig, store: Arc<MemoryStore>, calls: Arc<AtomicUsize>) -> Engine {
    let engine = Engine::builder()
        .store(store)
        .queue(Arc::new(MemoryQueue::new()))
        .config(config)
        .build()
        .unwrap();
    engine.register("count", move |_ctx| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(json!("counted"))
        }
    });
    let mut def = JobDefinition::builder("later")
        .task(TaskBuilder::new("a", "count"))
        .task(TaskBuilder::new("b", "count").after(["a"]))
        .build();
    def.timeout_ms = Some(400);
    engine.register_definition(def).await.unwrap();
    engine
}

/// Settings whose sweeper never runs within a test: only the node's timers start executions.
fn without_sweeps() -> EngineConfig {
    EngineConfig {
        sweep_interval: Duration::from_secs(3_600),
        ..fast_config()
    }
}

fn later() -> ExecuteRequest {
    ExecuteRequest::new("later", json!({}))
}

/// Delayed 600 ms with a 400 ms job timeout: PENDING with nothing queued and no function
/// called until its time; then its timer starts it, and it completes — its deadline counted
/// from the real start (from the creation it would have passed before the start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_execution_starts_at_its_time_and_its_timeout_counts_from_then() {
    let calls = Arc::new(AtomicUsize::new(0));
    let engine = engine(fast_config(), Arc::new(MemoryStore::new()), calls.clone()).await;
    engine.start().unwrap();
    let submitted = engine.submit(later().delay(Duration::from_millis(600))).await.unwrap();
    let at = submitted
        .scheduled_for
        .expect("a delayed execution says when it starts");
    assert_eq!(submitted.status, ExecutionStatus::Pending);
    let id = submitted.execution_id;
    let exec = engine.execution(id).await.unwrap();
    assert_eq!(
        (exec.status, exec.scheduled_for, exec.start_time),
        (ExecutionStatus::Pending, Some(at), None)
    );
    assert!(exec.tasks.iter().all(|t| t.status == TaskStatus::Pending));

    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let started = done.start_time.unwrap();
    assert!(started >= at, "started at {started}, before its time {at}");
    assert!(done.task("a").unwrap().start_time.unwrap() >= at);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each task ran once");
    assert_eq!(
        done.deadline,
        Some(started + chrono::Duration::milliseconds(400)),
        "the deadline is the timeout from the start"
    );
    engine.shutdown().await;
}

/// Only the node's timer runs (no sweeps): a `run_at` execution starts at its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_timer_starts_a_run_at_execution() {
    let calls = Arc::new(AtomicUsize::new(0));
    let engine = engine(without_sweeps(), Arc::new(MemoryStore::new()), calls.clone()).await;
    engine.start().unwrap();
    let at = (Utc::now() + chrono::Duration::milliseconds(300)).trunc_subsecs(6);
    let submitted = engine.submit(later().run_at(at)).await.unwrap();
    assert_eq!(submitted.scheduled_for, Some(at));
    let done = engine.wait_for_timeout(submitted.execution_id, LIMIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert!(done.start_time.unwrap() >= at);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    engine.shutdown().await;
}

/// Cancelled before its time: CANCELLED at once, and past its time — after the timer's moment
/// and several sweeps — no function ran and it is still CANCELLED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_execution_cancelled_before_its_time_never_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let engine = engine(fast_config(), Arc::new(MemoryStore::new()), calls.clone()).await;
    engine.start().unwrap();
    let submitted = engine.submit(later().delay(Duration::from_millis(300))).await.unwrap();
    let id = submitted.execution_id;
    assert_eq!(engine.cancel(id).await.unwrap(), ExecutionStatus::Cancelled);
    // A marker submitted after it, due after it: once the marker ran, the cancelled one's timer
    // and several sweeps have come and gone.
    let marker = engine.submit(later().delay(Duration::from_millis(600))).await.unwrap();
    let done = engine.wait_for_timeout(marker.execution_id, LIMIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    let exec = engine.execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Cancelled);
    assert!(exec
        .tasks
        .iter()
        .all(|t| t.status == TaskStatus::Cancelled && t.attempts == 0));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "only the marker's tasks ran");
    engine.shutdown().await;
}

/// The node that created it (and holds its timer) stops before its time; a node that never saw
/// it starts it from its sweeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_execution_whose_node_stopped_is_started_by_another_nodes_sweeper() {
    let store = Arc::new(MemoryStore::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let first = engine(without_sweeps(), store.clone(), calls.clone()).await;
    first.start().unwrap();
    let submitted = first.submit(later().delay(Duration::from_millis(300))).await.unwrap();
    first.shutdown().await;
    let second = engine(fast_config(), store, calls.clone()).await;
    second.start().unwrap();
    let done = second.wait_for_timeout(submitted.execution_id, LIMIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert!(done.start_time.unwrap() >= submitted.scheduled_for.unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    second.shutdown().await;
}

/// An idempotency key returns the first (delayed) execution; a delay beyond the longest is
/// refused at submit naming `delayMs`, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_dedups_a_delayed_execution_and_a_delay_too_long_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let engine = engine(without_sweeps(), store, Arc::default()).await;
    let request = later().delay(Duration::from_secs(3_600)).idempotency_key("once");
    let first = engine.submit(request.clone()).await.unwrap();
    let again = engine.submit(request).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(again.execution_id, first.execution_id);
    assert_eq!(again.status, ExecutionStatus::Pending);
    let exec = until(&engine, first.execution_id, |e| e.summary.is_delayed()).await;
    assert_eq!(exec.scheduled_for, first.scheduled_for);

    let too_long = naxos_core::model::Delay::MAX + Duration::from_millis(1);
    let refused = engine.submit(later().delay(too_long)).await.unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidInput(m) if m.contains("delayMs")),
        "{refused}"
    );
    let page = engine.executions(&Default::default()).await.unwrap();
    assert_eq!(page.executions.len(), 1, "only the first was created");
}
