//! The engine when its Store misbehaves: a transient error at the wrong moment must neither
//! fail a task nor spend its retries, and a worker cut off from its lease stops on its own.
//!
//! `FaultyStore` is the in-memory store with switches that make chosen calls fail the way a
//! driver does when its database is briefly unreachable (a transient backend error).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{diamond, fast_config, DEADLINE};
use naxos_core::backend::*;
use naxos_core::memory::MemoryStore;
use naxos_core::model::*;
use naxos_core::serde_json::json;
use naxos_core::{async_trait, Engine, Error, ExecutionStatus, Result};

/// The in-memory store, failing chosen calls transiently.
#[derive(Debug, Default)]
struct FaultyStore {
    inner: MemoryStore,
    /// How many of the next definition reads fail.
    definition_failures: AtomicU32,
    /// How many of the next definition reads find a format newer than this build knows.
    newer_definitions: AtomicU32,
    /// Whether heartbeats fail.
    heartbeats_fail: AtomicBool,
}

fn unreachable<T>() -> Result<T> {
    Err(Error::transient(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "pool timed out while waiting for an open connection",
    )))
}

/// Counts `left` down by one; false when it is already zero.
fn take_one(left: &AtomicU32) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Store for FaultyStore {
    async fn put_definition(&self, d: JobDefinition) -> Result<DefinitionPut> {
        self.inner.put_definition(d).await
    }
    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        if take_one(&self.definition_failures) {
            return unreachable();
        }
        if take_one(&self.newer_definitions) {
            return Err(Error::newer_version(
                format!("job definition `{id}`"),
                "format 2",
                "format 1",
            ));
        }
        self.inner.get_definition(id, version).await
    }
    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        self.inner.definition_versions(id).await
    }
    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        self.inner.list_definitions().await
    }
    async fn create_execution(&self, e: NewExecution) -> Result<Created> {
        self.inner.create_execution(e).await
    }
    async fn create_executions(&self, e: Vec<NewExecution>) -> Result<Vec<Created>> {
        self.inner.create_executions(e).await
    }
    async fn get_execution(&self, id: ExecutionId) -> Result<Execution> {
        self.inner.get_execution(id).await
    }
    async fn list_executions(&self, q: &ExecutionQuery) -> Result<ExecutionPage> {
        self.inner.list_executions(q).await
    }
    async fn claim(&self, r: ClaimRequest) -> Result<ClaimedTask> {
        self.inner.claim(r).await
    }
    async fn heartbeat(&self, t: &TaskRef, lease: Duration) -> Result<LeaseState> {
        if self.heartbeats_fail.load(Ordering::SeqCst) {
            return unreachable();
        }
        self.inner.heartbeat(t, lease).await
    }
    async fn finish(&self, o: Vec<TaskFinish>) -> Result<FinishReport> {
        self.inner.finish(o).await
    }
    async fn release(&self, t: &TaskRef) -> Result<Changes> {
        self.inner.release(t).await
    }
    async fn stop_execution(&self, id: ExecutionId, r: StopReason) -> Result<StopOutcome> {
        self.inner.stop_execution(id, r).await
    }
    async fn retry_execution(&self, id: ExecutionId) -> Result<Changes> {
        self.inner.retry_execution(id).await
    }
    async fn recover_expired(&self, max: u32, limit: usize) -> Result<Changes> {
        self.inner.recover_expired(max, limit).await
    }
    async fn take_stale(&self, older_than: Duration, limit: usize) -> Result<Changes> {
        self.inner.take_stale(older_than, limit).await
    }
    async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<Changes> {
        self.inner.retry_from(id, task_id).await
    }
    async fn wake(&self, task: &TaskRef) -> Result<Changes> {
        self.inner.wake(task).await
    }
    async fn wake_due(&self, limit: usize) -> Result<Changes> {
        self.inner.wake_due(limit).await
    }
    async fn start_delayed(&self, id: ExecutionId) -> Result<Changes> {
        self.inner.start_delayed(id).await
    }
    async fn signal(&self, id: ExecutionId, name: &str, payload: serde_json::Value) -> Result<SignalOutcome> {
        self.inner.signal(id, name, payload).await
    }
    async fn set_definition_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.inner.set_definition_paused(id, paused).await
    }
    async fn admit_blocked(&self, limit: usize) -> Result<Changes> {
        self.inner.admit_blocked(limit).await
    }
    async fn orphaned_children(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.inner.orphaned_children(limit).await
    }
    async fn overdue_executions(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.inner.overdue_executions(limit).await
    }
    async fn prune(&self, defaults: RetentionDefaults, limit: usize) -> Result<u64> {
        self.inner.prune(defaults, limit).await
    }
    async fn counts(&self) -> Result<StoreCounts> {
        self.inner.counts().await
    }
    async fn put_node(&self, n: NodeInfo) -> Result<()> {
        self.inner.put_node(n).await
    }
    async fn prune_nodes(&self, older_than: Duration) -> Result<u64> {
        self.inner.prune_nodes(older_than).await
    }
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.inner.list_nodes().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

/// An engine on `store` with the fast test settings, counting the calls of `noop`.
fn engine_on(store: Arc<FaultyStore>) -> (Engine, Arc<AtomicU32>) {
    let engine = Engine::builder().store(store).config(fast_config()).build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    engine.register("noop", move |_ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok(json!(null)) }
    });
    (engine, calls)
}

/// A definition that cannot be read right after the claim (a pool timeout, say), or that a
/// newer release wrote in a format this node does not know, hands the task back: it runs later,
/// once, without spending a retry or failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_that_cannot_be_read_hands_the_task_back() {
    for newer in [false, true] {
        let store = Arc::new(FaultyStore::default());
        let (engine, calls) = engine_on(store.clone());
        engine
            .register_definition(diamond("flaky-store", "noop"))
            .await
            .unwrap();
        let id = engine.execute("flaky-store", json!({})).await.unwrap().execution_id;
        let failures = if newer {
            &store.newer_definitions
        } else {
            &store.definition_failures
        };
        failures.store(2, Ordering::SeqCst);
        engine.start().unwrap();
        let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
        assert_eq!(
            done.status,
            ExecutionStatus::Completed,
            "newer {newer}: {:?}",
            done.error
        );
        let a = done.task("a").unwrap();
        assert_eq!(a.failures, 0, "no retry spent on the Store's trouble");
        let outcomes: Vec<_> = a.history.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Some(AttemptOutcome::Released),
                Some(AttemptOutcome::Released),
                Some(AttemptOutcome::Completed)
            ]
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4, "each task's function ran once");
        engine.shutdown().await;
    }
}

/// A worker that cannot renew its lease stops its attempt before the lease runs out (it fences
/// itself), records nothing, and the task runs again elsewhere once the lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_its_lease_stops_its_attempt() {
    let store = Arc::new(FaultyStore::default());
    let engine = Engine::builder()
        .store(store.clone())
        .config(fast_config())
        .build()
        .unwrap();
    let stopped = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let (s, t) = (stopped.clone(), started.clone());
    engine.register("long", move |ctx| {
        let (stopped, started) = (s.clone(), t.clone());
        async move {
            if ctx.attempt() == 1 {
                started.notify_one();
                ctx.cancelled().await;
                stopped.notify_one();
                return Err(naxos_core::TaskError::retryable("stopped"));
            }
            Ok(json!("second attempt"))
        }
    });
    let job = JobDefinition::builder("fenced")
        .task(TaskBuilder::new("only", "long"))
        .build();
    engine.register_definition(job).await.unwrap();
    let id = engine.execute("fenced", json!({})).await.unwrap().execution_id;
    engine.start().unwrap();
    started.notified().await;
    store.heartbeats_fail.store(true, Ordering::SeqCst);
    // The lease is 1.5 s: the attempt must be stopped before it runs out.
    tokio::time::timeout(Duration::from_millis(1_500), stopped.notified())
        .await
        .expect("the attempt was stopped when its lease could not be renewed");
    store.heartbeats_fail.store(false, Ordering::SeqCst);
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    let only = done.task("only").unwrap();
    assert_eq!(only.output, Some(json!("second attempt")));
    assert_eq!(only.failures, 0, "the fenced attempt recorded nothing");
    assert_eq!(only.history[0].outcome, Some(AttemptOutcome::Expired));
    engine.shutdown().await;
}

/// Two attempts of one task on one node: the first, fenced but slow to stop, must not take the
/// second's place in the node's running set when it finally ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_attempt_ending_late_leaves_the_new_one_tracked() {
    let store = Arc::new(FaultyStore::default());
    let config = naxos_core::EngineConfig {
        cancel_grace: Duration::from_secs(2),
        ..fast_config()
    };
    let engine = Engine::builder().store(store.clone()).config(config).build().unwrap();
    let first_started = Arc::new(tokio::sync::Notify::new());
    let second_started = Arc::new(tokio::sync::Notify::new());
    let first_gone = Arc::new(tokio::sync::Notify::new());
    let (a, b, c) = (first_started.clone(), second_started.clone(), first_gone.clone());
    engine.register("stubborn", move |ctx| {
        let (first_started, second_started, first_gone) = (a.clone(), b.clone(), c.clone());
        async move {
            if ctx.attempt() == 1 {
                // Ignores its cancellation; ends only when its worker aborts it.
                struct Gone(Arc<tokio::sync::Notify>);
                impl Drop for Gone {
                    fn drop(&mut self) {
                        self.0.notify_one();
                    }
                }
                let _gone = Gone(first_gone);
                first_started.notify_one();
                std::future::pending::<()>().await;
            }
            second_started.notify_one();
            ctx.cancelled().await;
            Err::<(), _>(naxos_core::TaskError::fatal("cancelled"))
        }
    });
    let job = JobDefinition::builder("stubborn")
        .task(TaskBuilder::new("only", "stubborn"))
        .build();
    engine.register_definition(job).await.unwrap();
    let id = engine.execute("stubborn", json!({})).await.unwrap().execution_id;
    engine.start().unwrap();
    first_started.notified().await;
    store.heartbeats_fail.store(true, Ordering::SeqCst);
    // The first attempt fences itself; its lease expires and the same node claims the second.
    tokio::time::timeout(DEADLINE, second_started.notified()).await.unwrap();
    store.heartbeats_fail.store(false, Ordering::SeqCst);
    tokio::time::timeout(DEADLINE, first_gone.notified()).await.unwrap();
    // Let the first attempt's worker finish its bookkeeping.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while engine.running_tasks() != 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.running_tasks(), 1, "the second attempt is still running here");
    assert_eq!(engine.cancel(id).await.unwrap(), ExecutionStatus::Cancelled);
    engine.shutdown().await;
}

/// A rolling deploy: a node without the task's function hands the task back for a node that
/// has it, instead of failing it; with no such node, the task fails after a bounded number of
/// hand-backs, naming the function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_function_hands_the_task_back() {
    let (store, queue) = (
        Arc::new(MemoryStore::new()),
        Arc::new(naxos_core::memory::MemoryQueue::new()),
    );
    let node = |id: &str| {
        Engine::builder()
            .store(store.clone())
            .queue(queue.clone())
            .config(naxos_core::EngineConfig {
                node_id: id.into(),
                ..fast_config()
            })
            .build()
            .unwrap()
    };
    let (old, new) = (node("old"), node("new"));
    new.register("v2", |_ctx| async { Ok(json!("ran on the new node")) });
    // The definition is registered through the node that knows the function.
    let job = JobDefinition::builder("rolling")
        .task(TaskBuilder::new("only", "v2"))
        .build();
    new.register_definition(job).await.unwrap();
    let id = old.execute("rolling", json!({})).await.unwrap().execution_id;
    old.start().unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !old
        .execution(id)
        .await
        .unwrap()
        .task("only")
        .unwrap()
        .history
        .iter()
        .any(|r| r.outcome == Some(AttemptOutcome::Released))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old node never handed the task back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    new.start().unwrap();
    let done = new.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let only = done.task("only").unwrap();
    assert_eq!(only.output, Some(json!("ran on the new node")));
    assert_eq!(only.history.last().map(|r| &*r.node), Some("new"));
    assert_eq!(only.failures, 0);
    new.shutdown().await;

    // Nobody has the function: the task fails, after a bounded number of hand-backs.
    let id = old.execute("rolling", json!({})).await.unwrap().execution_id;
    let failed = old.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    let only = failed.task("only").unwrap();
    assert!(
        only.error.as_deref().unwrap_or_default().contains("`v2`"),
        "{:?}",
        only.error
    );
    assert!(only.attempts > 1, "handed back before failing");
    old.shutdown().await;
}
