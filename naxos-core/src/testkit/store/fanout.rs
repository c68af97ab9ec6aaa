//! Store checks of fan-outs (`forEach`): an instance per item, each claimed, retried and
//! fenced on its own, the fan-in once with the outputs in order, a failed instance failing the
//! task, a retry that keeps the completed instances, and the lists too long or empty.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::{NewExecution, Store};
use crate::clock::ManualClock;
use crate::model::{ExecutionId, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus};
use crate::testkit::fixtures::{claim, described, done, failed, run_ok, task, unique_id};

/// `list → each (forEach upstream.list.items) → after`, under a fresh id.
fn fan_out(max: Option<u32>) -> JobDefinition {
    let each = TaskBuilder::new("each", "f")
        .after(["list"])
        .for_each("upstream.list.items");
    let each = match max {
        Some(max) => each.max_fan_out(max),
        None => each,
    };
    JobDefinition::builder(unique_id("fanout"))
        .task(TaskBuilder::new("list", "f"))
        .task(each)
        .task(TaskBuilder::new("after", "f").after(["each"]))
        .build()
}

/// Creates an execution of `def` and completes `list` with `items`; returns the execution and
/// the lines of that finish (without its attempt records).
async fn listed(
    store: &dyn Store,
    def: &JobDefinition,
    items: Value,
    clock: &ManualClock,
) -> (ExecutionId, Vec<String>) {
    let put = store.put_definition(def.clone()).await.expect("put_definition");
    let id = store
        .create_execution(NewExecution::new(&put.definition, json!({})))
        .await
        .expect("create_execution")
        .execution_id;
    let list = task(id, "list", 1);
    claim(store, &list).await;
    let report = store
        .finish(vec![done(&list, json!({ "items": items }))])
        .await
        .expect("finish");
    assert!(report.results[0].is_ok(), "{:?}", report.results[0]);
    (id, lines(&report.changes, clock))
}

fn lines(changes: &crate::backend::Changes, clock: &ManualClock) -> Vec<String> {
    let mut lines = described(changes, clock.now());
    lines.retain(|l| !l.starts_with("attempt "));
    lines
}

/// Three items: `each` RUNNING with three QUEUED instances `each[0..2]`, each claimed with its
/// item and index and the fan-out's upstream; one retried under its own attempt, a stale
/// finish of it refused; the fan-in once, when the last completes, with the outputs in item
/// order; `after` sees the list.
pub async fn a_fan_out_runs_an_instance_per_item_and_fans_in_once(store: Arc<dyn Store>, clock: ManualClock) {
    let def = fan_out(None);
    let (id, started) = listed(&*store, &def, json!(["a", "b", "c"]), &clock).await;
    assert_eq!(
        started,
        [
            "task list#1 COMPLETED",
            "task each#1 RUNNING",
            "task each[0]#1 QUEUED",
            "task each[1]#1 QUEUED",
            "task each[2]#1 QUEUED",
            "ready each[0]#1",
            "ready each[1]#1",
            "ready each[2]#1"
        ]
    );
    let claimed = claim(&*store, &task(id, "each[1]", 1)).await;
    assert_eq!(claimed.instance, Some((1, json!("b"))));
    assert_eq!(
        claimed.upstream.get("list").map(|v| (**v).clone()),
        Some(json!({"items": ["a", "b", "c"]})),
        "an instance reads its fan-out's upstream"
    );
    let report = store
        .finish(vec![done(&task(id, "each[1]", 1), json!("B"))])
        .await
        .unwrap();
    assert_eq!(lines(&report.changes, &clock), ["task each[1]#1 COMPLETED"]);

    // each[0] fails retryably: RETRYING under attempt 2, on its own.
    let first = task(id, "each[0]", 1);
    claim(&*store, &first).await;
    let report = store
        .finish(vec![failed(&first, "flaky", Some(Duration::from_secs(5)))])
        .await
        .unwrap();
    assert_eq!(
        lines(&report.changes, &clock),
        ["task each[0]#2 RETRYING: flaky", "delayed each[0]#2 at +5s"]
    );
    run_ok(&*store, id, "each[2]").await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        exec.task("each").unwrap().status,
        TaskStatus::Running,
        "one instance left"
    );
    assert_eq!(exec.task("after").unwrap().status, TaskStatus::Pending);

    let second = task(id, "each[0]", 2);
    let claimed = claim(&*store, &second).await;
    assert_eq!((claimed.instance, claimed.failures), (Some((0, json!("a"))), 1));
    let report = store.finish(vec![done(&second, json!("A"))]).await.unwrap();
    assert_eq!(
        lines(&report.changes, &clock),
        [
            "task each[0]#2 COMPLETED",
            "task each#1 COMPLETED",
            "task after#1 QUEUED",
            "ready after#1"
        ],
        "the fan-in, in the finish of the last instance"
    );
    let stale = store.finish(vec![done(&first, json!("late"))]).await.unwrap();
    assert!(
        stale.results[0].as_ref().is_err_and(|e| e.is_conflict()),
        "{:?}",
        stale.results[0]
    );
    assert!(stale.changes.is_empty(), "a stale instance changes nothing");

    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        exec.task("each").unwrap().output,
        Some(json!(["A", "B", {"from": "each[2]"}])),
        "the outputs in item order"
    );
    let after = task(id, "after", 1);
    let claimed = claim(&*store, &after).await;
    assert_eq!(
        claimed.upstream.get("each").map(|v| (**v).clone()),
        Some(json!(["A", "B", {"from": "each[2]"}]))
    );
    store.finish(vec![done(&after, json!(null))]).await.unwrap();
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.summary.status, ExecutionStatus::Completed);
    let instances: Vec<(&str, TaskStatus, u32)> = exec
        .tasks
        .iter()
        .filter(|t| t.plan.instance.is_some())
        .map(|t| (t.task_id.as_str(), t.status, t.attempts))
        .collect();
    assert_eq!(
        instances,
        [
            ("each[0]", TaskStatus::Completed, 2),
            ("each[1]", TaskStatus::Completed, 1),
            ("each[2]", TaskStatus::Completed, 1)
        ]
    );
}

/// An instance that FAILS for good FAILS its fan-out naming it, CANCELS the instances not yet
/// started (one already running finishes, changing nothing), and fails the execution. A retry
/// starts the failed and cancelled instances over and keeps the completed one; a restart from
/// the fan-out runs them all again.
pub async fn a_failed_instance_fails_the_fan_out_and_a_retry_keeps_the_completed(
    store: Arc<dyn Store>,
    clock: ManualClock,
) {
    let def = fan_out(None);
    let (id, _) = listed(&*store, &def, json!([1, 2, 3, 4]), &clock).await;
    run_ok(&*store, id, "each[0]").await;
    let running = task(id, "each[3]", 1);
    claim(&*store, &running).await;
    let bad = task(id, "each[1]", 1);
    claim(&*store, &bad).await;
    let report = store.finish(vec![failed(&bad, "boom", None)]).await.unwrap();
    assert_eq!(
        lines(&report.changes, &clock),
        [
            "task each[1]#1 FAILED: boom",
            "task each[2]#1 CANCELLED",
            "task each#1 FAILED: instance 1 failed: boom",
            "task after#1 SKIPPED: skipped: upstream task `each` failed"
        ]
    );
    let report = store.finish(vec![done(&running, json!(4))]).await.unwrap();
    assert_eq!(
        lines(&report.changes, &clock),
        [
            "task each[3]#1 COMPLETED",
            "execution FAILED: task `each` failed: instance 1 failed: boom"
        ],
        "the running instance ends, and with it the execution"
    );

    let report = store.retry_execution(id).await.unwrap();
    assert_eq!(
        lines(&report, &clock),
        [
            "execution RUNNING",
            "task after#2 PENDING",
            "task each#2 RUNNING",
            "task each[1]#3 QUEUED",
            "task each[2]#3 QUEUED",
            "ready each[1]#3",
            "ready each[2]#3"
        ],
        "the completed instances are kept"
    );
    for k in [1, 2] {
        let t = task(id, &format!("each[{k}]"), 3);
        claim(&*store, &t).await;
        store.finish(vec![done(&t, json!(k * 10))]).await.unwrap();
    }
    let exec = store.get_execution(id).await.unwrap();
    let each = exec.task("each").unwrap();
    assert_eq!(
        (each.status, each.output.clone()),
        (TaskStatus::Completed, Some(json!([{"from": "each[0]"}, 10, 20, 4])))
    );

    let after = task(id, "after", 2);
    claim(&*store, &after).await;
    store.finish(vec![done(&after, json!(null))]).await.unwrap();
    assert_eq!(
        store.get_execution(id).await.unwrap().summary.status,
        ExecutionStatus::Completed
    );
    let report = store.retry_from(id, "each").await.unwrap();
    let ready: Vec<String> = report
        .ready
        .iter()
        .map(|t| format!("{}#{}", t.task_id, t.attempt))
        .collect();
    assert_eq!(
        ready,
        ["each[0]#3", "each[1]#5", "each[2]#5", "each[3]#3"],
        "a restart from the fan-out runs every instance again, fenced past the earlier runs"
    );
}

/// A list longer than `maxFanOut` FAILS the task naming both; an empty list COMPLETES it with
/// `[]` at once and queues what follows; a `forEach` that gives no list FAILS it.
pub async fn fan_outs_too_long_empty_or_not_a_list(store: Arc<dyn Store>, clock: ManualClock) {
    let (long, _) = listed(&*store, &fan_out(Some(2)), json!([1, 2, 3]), &clock).await;
    let exec = store.get_execution(long).await.unwrap();
    let each = exec.task("each").unwrap();
    assert_eq!(
        (each.status, each.error.as_deref()),
        (TaskStatus::Failed, Some("forEach gave 3 items, more than maxFanOut 2"))
    );
    assert_eq!(exec.summary.status, ExecutionStatus::Failed);
    assert_eq!(exec.tasks.len(), 3, "no instance was made");

    let (empty, changes) = listed(&*store, &fan_out(None), json!([]), &clock).await;
    assert_eq!(
        changes,
        [
            "task list#1 COMPLETED",
            "task each#1 RUNNING",
            "task each#1 COMPLETED",
            "task after#1 QUEUED",
            "ready after#1"
        ]
    );
    let exec = store.get_execution(empty).await.unwrap();
    assert_eq!(exec.task("each").unwrap().output, Some(json!([])));

    let (scalar, _) = listed(&*store, &fan_out(None), json!("seven"), &clock).await;
    let exec = store.get_execution(scalar).await.unwrap();
    let each = exec.task("each").unwrap();
    assert_eq!(
        (each.status, each.error.as_deref()),
        (TaskStatus::Failed, Some("`forEach` evaluated to a string, not a list"))
    );
}
