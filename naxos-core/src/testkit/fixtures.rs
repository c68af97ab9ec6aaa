//! Shared fixtures for the conformance checks.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::{Changes, ClaimRequest, ClaimedTask, Created, NewExecution, Store, TaskFinish, TaskOutcome};
use crate::clock::ManualClock;
use crate::engine::EngineConfig;
use crate::model::{EventKind, ExecutionId, JobDefinition, TaskBuilder, TaskRef};

/// An id that no other test uses: `prefix-` and 12 random hex digits.
pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The diamond `a → (b, c) → d` under a fresh id.
pub fn diamond() -> JobDefinition {
    JobDefinition::builder(unique_id("diamond"))
        .name("Diamond")
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]))
        .task(TaskBuilder::new("c", "f").after(["a"]))
        .task(TaskBuilder::new("d", "f").after(["b", "c"]))
        .build()
}

pub(crate) fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// A fake clock for one check, at a whole second (so that no store rounds its times).
pub fn test_clock() -> ManualClock {
    let now = Utc::now();
    ManualClock::new(now - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos())))
}

/// Registers `def` and creates an execution of it.
pub(crate) async fn create(store: &dyn Store, def: &JobDefinition, key: Option<&str>) -> Created {
    let put = store.put_definition(def.clone()).await.expect("put_definition");
    let mut new = NewExecution::new(&put.definition, serde_json::json!({"n": 1}));
    new.idempotency_key = key.map(str::to_string);
    store.create_execution(new).await.expect("create_execution")
}

/// Registers `def` and creates an execution of it per item of `params`, in order.
pub(crate) async fn create_each(
    store: &dyn Store,
    def: &JobDefinition,
    params: &[serde_json::Value],
) -> Vec<ExecutionId> {
    let put = store.put_definition(def.clone()).await.expect("put_definition");
    let mut ids = Vec::new();
    for p in params {
        let new = NewExecution::new(&put.definition, p.clone());
        ids.push(
            store
                .create_execution(new)
                .await
                .expect("create_execution")
                .execution_id,
        );
    }
    ids
}

/// The run of the task `task_id` of execution `id`, as the store has it.
pub(crate) async fn run_of(store: &dyn Store, id: ExecutionId, task_id: &str) -> crate::model::TaskRun {
    let execution = store.get_execution(id).await.expect("get_execution");
    execution
        .task(task_id)
        .cloned()
        .unwrap_or_else(|| panic!("no task {task_id}"))
}

/// A new diamond execution.
pub(crate) async fn new_diamond(store: &dyn Store) -> ExecutionId {
    create(store, &diamond(), None).await.execution_id
}

pub(crate) fn task(execution: ExecutionId, id: &str, attempt: u32) -> TaskRef {
    TaskRef::new(execution, id, attempt)
}

pub(crate) fn claim_request(task: &TaskRef, owner: &str, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        task: task.clone(),
        owner: owner.into(),
        lease,
    }
}

pub(crate) async fn claim(store: &dyn Store, task: &TaskRef) -> ClaimedTask {
    let lease = EngineConfig::default().lease_ttl;
    store
        .claim(claim_request(task, "node-a", lease))
        .await
        .unwrap_or_else(|e| panic!("claim {task}: {e}"))
}

pub(crate) fn done(task: &TaskRef, output: serde_json::Value) -> TaskFinish {
    TaskFinish {
        task: task.clone(),
        outcome: TaskOutcome::Completed(output),
    }
}

pub(crate) fn failed(task: &TaskRef, error: &str, retry_in: Option<Duration>) -> TaskFinish {
    TaskFinish {
        task: task.clone(),
        outcome: TaskOutcome::Failed {
            error: error.into(),
            retry_in,
        },
    }
}

/// Claims and completes `id` at attempt 1, returning the tasks it made ready.
pub(crate) async fn run_ok(store: &dyn Store, execution: ExecutionId, id: &str) -> Vec<TaskRef> {
    let t = task(execution, id, 1);
    claim(store, &t).await;
    let report = store
        .finish(vec![done(&t, serde_json::json!({ "from": id }))])
        .await
        .expect("finish");
    assert!(report.results[0].is_ok(), "finish {t}: {:?}", report.results[0]);
    report.changes.ready
}

/// A transition's changes as short lines, for exact comparisons with readable failures:
/// `execution RUNNING`, `task b#1 QUEUED`, `task b#1 FAILED: boom`, `ready b#1`,
/// `delayed a#2 at +5s`, `waiting s#1 until +60s`, `scheduled for +60s` (a delayed execution),
/// `attempt a#1 COMPLETED on node-a` (times relative to `now`).
pub(crate) fn described(changes: &Changes, now: DateTime<Utc>) -> Vec<String> {
    let mut lines = Vec::new();
    for e in &changes.events {
        let error = e.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        lines.push(match &e.kind {
            EventKind::Execution { status } => format!("execution {status}{error}"),
            EventKind::Task {
                task_id,
                attempt,
                status,
            } => format!("task {task_id}#{attempt} {status}{error}"),
        });
    }
    lines.extend(
        changes
            .ready
            .iter()
            .map(|t| format!("ready {}#{}", t.task_id, t.attempt)),
    );
    lines.extend(changes.delayed.iter().map(|(t, due)| {
        format!(
            "delayed {}#{} at +{}s",
            t.task_id,
            t.attempt,
            (*due - now).num_seconds()
        )
    }));
    lines.extend(changes.waiting.iter().map(|(t, due)| {
        format!(
            "waiting {}#{} until +{}s",
            t.task_id,
            t.attempt,
            (*due - now).num_seconds()
        )
    }));
    lines.extend(
        changes
            .scheduled
            .iter()
            .map(|(_, at)| format!("scheduled for +{}s", (*at - now).num_seconds())),
    );
    for h in &changes.history {
        let r = &h.record;
        let outcome = r.outcome.map_or("started", |o| o.as_str());
        let error = r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        lines.push(format!(
            "attempt {}#{} {outcome} on {}{error}",
            h.task_id, r.attempt, r.node
        ));
    }
    lines
}
