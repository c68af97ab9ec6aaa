//! Store checks of sub-jobs (`subJob`): the child created in the transition that starts the
//! task, the task settled in the transition that ends the child (completed with its outputs,
//! retried with a new child, failed), a child cancelled from elsewhere, and a stopped parent
//! naming its children (and its children found as orphans until they are stopped).

use std::sync::Arc;

use serde_json::json;

use crate::backend::{NewExecution, StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{Execution, ExecutionId, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus};
use crate::testkit::fixtures::{claim, described, done, failed, run_ok, task, unique_id};

/// Registers a child definition (`c`) and a parent (`first → call (subJob of the child, params
/// from an expression) → after`, `call` with `max_retry`); returns the parent's id.
async fn family(store: &dyn Store, max_retry: u32) -> (String, String) {
    let child = JobDefinition::builder(unique_id("child"))
        .task(TaskBuilder::new("c", "f"))
        .build();
    let parent = JobDefinition::builder(unique_id("parent"))
        .task(TaskBuilder::new("first", "f"))
        .task(
            TaskBuilder::sub_job("call", child.id.clone())
                .sub_job_params("{'from': upstream.first.from}")
                .max_retry(max_retry)
                .after(["first"]),
        )
        .task(TaskBuilder::new("after", "f").after(["call"]))
        .build();
    store.put_definition(child.clone()).await.expect("put child");
    store.put_definition(parent.clone()).await.expect("put parent");
    (parent.id, child.id)
}

/// Creates an execution of the latest `definition` and completes its `first`: `call` starts.
async fn started(store: &dyn Store, definition: &str, clock: &ManualClock) -> (ExecutionId, Vec<String>) {
    let stored = store.get_definition(definition, None).await.expect("get_definition");
    let id = store
        .create_execution(NewExecution::new(&stored, json!({})))
        .await
        .expect("create_execution")
        .execution_id;
    let first = task(id, "first", 1);
    claim(store, &first).await;
    let report = store
        .finish(vec![done(&first, json!({"from": "first"}))])
        .await
        .expect("finish");
    assert!(report.results[0].is_ok(), "{:?}", report.results[0]);
    assert!(
        report.changes.children.is_empty(),
        "a Store creates the children itself"
    );
    let mut lines = described(&report.changes, clock.now());
    lines.retain(|l| !l.starts_with("attempt "));
    (id, lines)
}

async fn get(store: &dyn Store, id: ExecutionId) -> Execution {
    store.get_execution(id).await.expect("get_execution")
}

/// The child the parent's `call` runs now.
async fn child_of(store: &dyn Store, parent: ExecutionId) -> ExecutionId {
    let call = get(store, parent).await.task("call").cloned().expect("call");
    assert_eq!(call.status, TaskStatus::Running, "{call:?}");
    assert!(call.lease.is_none(), "no worker holds a sub-job");
    call.plan.child.expect("the task names its child")
}

/// The child exists as soon as the task started (same transition): PENDING, its root QUEUED,
/// its params from the expression, linked to the parent task. Completing the child completes
/// the task with `{taskId: output}` in the same transition, which queues what is below.
pub async fn a_sub_job_starts_its_child_at_once_and_completes_with_it(store: Arc<dyn Store>, clock: ManualClock) {
    let (parent_def, child_def) = family(&*store, 0).await;
    let (id, lines) = started(&*store, &parent_def, &clock).await;
    assert_eq!(
        lines,
        [
            "task first#1 COMPLETED",
            "task call#1 RUNNING",
            "execution PENDING",
            "task c#1 QUEUED",
            "ready c#1"
        ]
    );
    let child_id = child_of(&*store, id).await;
    let parent = get(&*store, id).await;
    let call = parent.task("call").unwrap();
    assert_eq!(
        call.plan.sub_job.as_ref().unwrap().version,
        Some(1),
        "pinned at creation"
    );
    assert_eq!(call.attempts, 1);
    let child = get(&*store, child_id).await;
    assert_eq!(child.summary.definition_id, child_def);
    assert_eq!(child.summary.status, ExecutionStatus::Pending);
    assert_eq!(child.data, json!({"from": "first"}));
    let link = child.summary.parent.clone().expect("a parent link");
    assert_eq!(
        (link.execution_id, link.task_id.as_str(), link.attempt, link.depth),
        (id, "call", 1, 1)
    );

    let c = task(child_id, "c", 1);
    claim(&*store, &c).await;
    let report = store.finish(vec![done(&c, json!(7))]).await.expect("finish");
    assert!(report.results[0].is_ok(), "{:?}", report.results[0]);
    let mut lines = described(&report.changes, clock.now());
    lines.retain(|l| !l.starts_with("attempt "));
    assert_eq!(
        lines,
        [
            "task c#1 COMPLETED",
            "execution COMPLETED",
            "task call#1 COMPLETED",
            "task after#1 QUEUED",
            "ready after#1"
        ]
    );
    let parent = get(&*store, id).await;
    let call = parent.task("call").unwrap();
    assert_eq!(call.output, Some(json!({"c": 7})));
    assert_eq!(call.history.len(), 1, "one attempt record: {:?}", call.history);
    run_ok(&*store, id, "after").await;
    assert_eq!(get(&*store, id).await.summary.status, ExecutionStatus::Completed);
}

/// A failed child is a retryable failure: a new child under attempt 2 (in the transition that
/// ended the first); when that one fails too, the task FAILS naming it and the parent fails.
pub async fn a_failed_child_is_retried_with_a_new_child_then_fails_the_task(store: Arc<dyn Store>, clock: ManualClock) {
    let (parent_def, _) = family(&*store, 1).await;
    let (id, _) = started(&*store, &parent_def, &clock).await;
    let first_child = child_of(&*store, id).await;
    let c = task(first_child, "c", 1);
    claim(&*store, &c).await;
    let report = store.finish(vec![failed(&c, "boom", None)]).await.expect("finish");
    assert!(report.results[0].is_ok(), "{:?}", report.results[0]);
    assert!(
        report
            .changes
            .ready
            .iter()
            .any(|t| t.task_id == "c" && t.execution_id != first_child),
        "the new child's root is ready: {:?}",
        report.changes.ready
    );
    let second_child = child_of(&*store, id).await;
    assert_ne!(second_child, first_child);
    let call = get(&*store, id).await.task("call").cloned().unwrap();
    assert_eq!((call.attempt, call.attempts, call.failures), (2, 2, 1));
    assert_eq!(get(&*store, second_child).await.summary.parent.unwrap().attempt, 2);
    assert_eq!(get(&*store, first_child).await.summary.status, ExecutionStatus::Failed);

    let c = task(second_child, "c", 1);
    claim(&*store, &c).await;
    store
        .finish(vec![failed(&c, "boom again", None)])
        .await
        .expect("finish");
    let parent = get(&*store, id).await;
    assert_eq!(parent.summary.status, ExecutionStatus::Failed);
    let call = parent.task("call").unwrap();
    assert_eq!(call.status, TaskStatus::Failed);
    let error = call.error.clone().unwrap_or_default();
    assert!(error.starts_with(&format!("sub-job {second_child} failed")), "{error}");
    assert_eq!(parent.task("after").unwrap().status, TaskStatus::Skipped);
}

/// A child cancelled from elsewhere fails its task for good (no new child, whatever
/// `maxRetry` says). Stopping a parent cancels its sub-job task and names the child to stop,
/// whose own end then changes nothing in the finished parent.
pub async fn a_cancelled_child_fails_its_task_and_a_stopped_parent_names_its_child(
    store: Arc<dyn Store>,
    clock: ManualClock,
) {
    let (parent_def, _) = family(&*store, 3).await;
    let (id, _) = started(&*store, &parent_def, &clock).await;
    let child = child_of(&*store, id).await;
    let stopped = store
        .stop_execution(child, StopReason::Cancelled)
        .await
        .expect("stop child");
    let mut lines = described(&stopped.changes, clock.now());
    lines.retain(|l| !l.starts_with("attempt "));
    assert_eq!(
        lines,
        [
            "task c#1 CANCELLED",
            "execution CANCELLED",
            &format!("task call#1 FAILED: sub-job {child} was cancelled"),
            "task after#1 SKIPPED: skipped: upstream task `call` failed",
            &format!("execution FAILED: task `call` failed: sub-job {child} was cancelled"),
        ]
    );

    let (id, _) = started(&*store, &parent_def, &clock).await;
    let child = child_of(&*store, id).await;
    let stopped = store
        .stop_execution(id, StopReason::Cancelled)
        .await
        .expect("stop parent");
    assert_eq!(stopped.changes.stopped_children, [child]);
    assert_eq!(
        get(&*store, id).await.task("call").unwrap().status,
        TaskStatus::Cancelled
    );
    assert_eq!(
        get(&*store, child).await.summary.status,
        ExecutionStatus::Pending,
        "the engine stops it"
    );
    store
        .stop_execution(child, StopReason::Cancelled)
        .await
        .expect("stop child");
    let parent = get(&*store, id).await;
    assert_eq!(
        parent.summary.status,
        ExecutionStatus::Cancelled,
        "the child's end changed nothing"
    );
}
