//! Shared fixtures for the conformance checks.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::{Changes, ClaimRequest, ClaimedTask, Created, NewExecution, Store, TaskFinish, TaskOutcome};
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

/// Registers `def` and creates an execution of it at `now`.
pub(crate) async fn create(store: &dyn Store, def: &JobDefinition, key: Option<&str>, now: DateTime<Utc>) -> Created {
    let put = store.put_definition(def.clone(), now).await.expect("put_definition");
    let mut new = NewExecution::new(&put.definition, serde_json::json!({"n": 1}), now);
    new.idempotency_key = key.map(str::to_string);
    store.create_execution(new).await.expect("create_execution")
}

/// A new diamond execution at `now`.
pub(crate) async fn new_diamond(store: &dyn Store, now: DateTime<Utc>) -> ExecutionId {
    create(store, &diamond(), None, now).await.execution_id
}

pub(crate) fn task(execution: ExecutionId, id: &str, attempt: u32) -> TaskRef {
    TaskRef::new(execution, id, attempt)
}

pub(crate) fn claim_request(task: &TaskRef, owner: &str, now: DateTime<Utc>, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        task: task.clone(),
        owner: owner.into(),
        lease_until: now + chrono::Duration::from_std(lease).expect("short lease"),
        now,
    }
}

pub(crate) async fn claim(store: &dyn Store, task: &TaskRef, now: DateTime<Utc>) -> ClaimedTask {
    let lease = EngineConfig::default().lease_ttl;
    store
        .claim(claim_request(task, "node-a", now, lease))
        .await
        .unwrap_or_else(|e| panic!("claim {task}: {e}"))
}

pub(crate) fn done(task: &TaskRef, output: serde_json::Value, now: DateTime<Utc>) -> TaskFinish {
    TaskFinish {
        task: task.clone(),
        outcome: TaskOutcome::Completed(output),
        now,
    }
}

pub(crate) fn failed(task: &TaskRef, error: &str, retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> TaskFinish {
    TaskFinish {
        task: task.clone(),
        outcome: TaskOutcome::Failed {
            error: error.into(),
            retry_at,
        },
        now,
    }
}

/// Claims and completes `id` at attempt 1, returning the tasks it made ready.
pub(crate) async fn run_ok(store: &dyn Store, execution: ExecutionId, id: &str, now: DateTime<Utc>) -> Vec<TaskRef> {
    let t = task(execution, id, 1);
    claim(store, &t, now).await;
    let report = store
        .finish(vec![done(&t, serde_json::json!({ "from": id }), now)])
        .await
        .expect("finish");
    assert!(report.results[0].is_ok(), "finish {t}: {:?}", report.results[0]);
    report.changes.ready
}

/// A transition's changes as short lines, for exact comparisons with readable failures:
/// `execution RUNNING`, `task b#1 QUEUED`, `task b#1 FAILED: boom`, `ready b#1`,
/// `delayed a#2 at +5s`, `attempt a#1 COMPLETED on node-a` (times relative to `now`).
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
