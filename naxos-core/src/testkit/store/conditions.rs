//! Store checks of `when` conditions and trigger rules: a branch and its join, a condition that
//! fails to evaluate, each trigger after completions, skips and failures, and a retry that
//! leaves the branch not taken alone.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::backend::{Created, ExecutionQuery, NewExecution, Store};
use crate::clock::ManualClock;
use crate::model::{Execution, ExecutionId, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus, Trigger};
use crate::state::rules;
use crate::testkit::fixtures::{claim, claim_request, described, done, failed, run_ok, task, unique_id};

/// Registers `def` and creates an execution of it with `params`; returns its id and the
/// creation's changes as [`described`] lines.
async fn start(
    store: &dyn Store,
    def: JobDefinition,
    params: Value,
    clock: &ManualClock,
) -> (ExecutionId, Vec<String>) {
    let created = create(store, def, params).await;
    (created.execution_id, described(&created.changes, clock.now()))
}

/// Registers `def` and creates an execution of it with `params`.
async fn create(store: &dyn Store, def: JobDefinition, params: Value) -> Created {
    let put = store.put_definition(def).await.expect("put_definition");
    store
        .create_execution(NewExecution::new(&put.definition, params))
        .await
        .expect("create_execution")
}

/// Each named task's status and error.
fn statuses<'a>(exec: &Execution, ids: &[&'a str]) -> Vec<(&'a str, TaskStatus, Option<String>)> {
    ids.iter()
        .map(|&id| {
            let t = exec.task(id).unwrap_or_else(|| panic!("task {id}"));
            (id, t.status, t.error.clone())
        })
        .collect()
}

/// Claims and fails `id` at attempt 1 for good.
async fn run_failing(store: &dyn Store, execution: ExecutionId, id: &str) {
    let t = task(execution, id, 1);
    claim(store, &t).await;
    let report = store.finish(vec![failed(&t, "boom", None)]).await.expect("finish");
    assert!(report.results[0].is_ok(), "fail {t}: {:?}", report.results[0]);
}

/// `a → (b when params.x > 1, c when params.x <= 1) → join (noneFailed)`.
fn branch() -> JobDefinition {
    JobDefinition::builder(unique_id("branch"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]).when("params.x > 1"))
        .task(TaskBuilder::new("c", "f").after(["a"]).when("params.x <= 1"))
        .task(
            TaskBuilder::new("join", "f")
                .after(["b", "c"])
                .trigger(Trigger::NoneFailed),
        )
        .build()
}

/// The branch not taken is SKIPPED with `condition false` and never runs; the `noneFailed`
/// join runs once, with the taken branch's output, and the execution COMPLETES.
pub async fn a_false_condition_skips_and_the_join_runs(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let (id, _) = start(&*store, branch(), json!({"x": 2}), &clock).await;
    let ready = run_ok(&*store, id, "a").await;
    assert_eq!(ready, vec![task(id, "b", 1)], "only the branch taken is queued");
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        statuses(&exec, &["b", "c", "join"]),
        [
            ("b", TaskStatus::Queued, None),
            ("c", TaskStatus::Skipped, Some(rules::CONDITION_FALSE.to_string())),
            ("join", TaskStatus::Pending, None),
        ]
    );
    let c = store
        .claim(claim_request(
            &task(id, "c", 1),
            "node-a",
            std::time::Duration::from_secs(30),
        ))
        .await;
    assert!(
        c.unwrap_err().is_conflict(),
        "a task skipped by its condition never runs"
    );
    assert_eq!(exec.task("c").unwrap().attempts, 0);
    assert_eq!(run_ok(&*store, id, "b").await, vec![task(id, "join", 1)]);
    let join = claim(&*store, &task(id, "join", 1)).await;
    assert_eq!(
        join.upstream.keys().collect::<Vec<_>>(),
        ["b"],
        "upstream holds the COMPLETED dependencies only"
    );
    let report = store.finish(vec![done(&task(id, "join", 1), json!(1))]).await.unwrap();
    assert_eq!(
        described(&report.changes, now),
        [
            "task join#1 COMPLETED",
            "execution COMPLETED",
            "attempt join#1 COMPLETED on node-a"
        ]
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!((exec.status, exec.error.clone()), (ExecutionStatus::Completed, None));
    assert_eq!(exec.task("join").unwrap().attempts, 1, "the join ran once");
}

/// A condition is evaluated over `upstream` too; one that fails to evaluate (here: a key the
/// params lack) FAILS its task with the evaluation error, and the execution FAILS naming it. A
/// root's condition is evaluated when the execution is created.
pub async fn a_condition_that_fails_to_evaluate_fails_the_task(store: Arc<dyn Store>, clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("cond"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("root", "f").when("params.x == 1"))
        .task(
            TaskBuilder::new("b", "f")
                .after(["a"])
                .when("has(upstream.a) && upstream.a.from == 'a'"),
        )
        .task(TaskBuilder::new("bad", "f").after(["a"]).when("params.missing > 1"))
        .task(TaskBuilder::new("below", "f").after(["bad"]))
        .build();
    let (id, created) = start(&*store, def, json!({"x": 2}), &clock).await;
    assert_eq!(
        created,
        [
            "execution PENDING",
            "task a#1 QUEUED",
            "task root#1 SKIPPED: condition false",
            "ready a#1"
        ],
        "a root's condition is evaluated at creation"
    );
    assert_eq!(run_ok(&*store, id, "a").await, vec![task(id, "b", 1)]);
    let exec = store.get_execution(id).await.unwrap();
    let error = "`when` could not be evaluated: No such key: missing".to_string();
    assert_eq!(
        statuses(&exec, &["bad", "below"]),
        [
            ("bad", TaskStatus::Failed, Some(error.clone())),
            ("below", TaskStatus::Skipped, Some(rules::skipped_below("bad"))),
        ]
    );
    assert_eq!(exec.task("bad").unwrap().attempts, 0, "its function never ran");
    run_ok(&*store, id, "b").await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(exec.error, Some(rules::task_failed("bad", Some(&error))));
}

/// `allSuccess` (the default) below a task skipped by its condition can no longer hold: it is
/// SKIPPED at once and counts as skipped, not failed, so a `noneFailed` join below still runs —
/// here at creation, since everything above it was decided then.
pub async fn all_success_below_a_condition_is_skipped_not_failed(store: Arc<dyn Store>, clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("untaken"))
        .task(TaskBuilder::new("a", "f").when("params.x > 1"))
        .task(TaskBuilder::new("b", "f").after(["a"]))
        .task(TaskBuilder::new("c", "f").after(["b"]).trigger(Trigger::NoneFailed))
        .build();
    let (id, created) = start(&*store, def, json!({"x": 0}), &clock).await;
    assert_eq!(
        created,
        [
            "execution PENDING",
            "task a#1 SKIPPED: condition false",
            &format!("task b#1 SKIPPED: {}", rules::trigger_unmet(Trigger::AllSuccess)),
            "task c#1 QUEUED",
            "ready c#1"
        ]
    );
    run_ok(&*store, id, "c").await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        exec.status,
        ExecutionStatus::Completed,
        "condition-skipped tasks and no failure: COMPLETED"
    );
    // Nothing left to run at all: the execution ends as it is created.
    let nothing = JobDefinition::builder(unique_id("nothing"))
        .task(TaskBuilder::new("only", "f").when("params.x > 1"))
        .build();
    let created = create(&*store, nothing, json!({"x": 0})).await;
    assert_eq!(created.status, ExecutionStatus::Completed);
    assert_eq!(
        described(&created.changes, clock.now()),
        [
            "execution PENDING",
            "task only#1 SKIPPED: condition false",
            "execution COMPLETED"
        ]
    );
    let exec = store.get_execution(created.execution_id).await.unwrap();
    assert_eq!(
        (exec.status, exec.end_time),
        (ExecutionStatus::Completed, Some(clock.now()))
    );
    let query = ExecutionQuery {
        status: Some(ExecutionStatus::Completed),
        definition_id: Some(exec.definition_id.clone()),
        ..ExecutionQuery::default()
    };
    let listed = store.list_executions(&query).await.unwrap();
    assert_eq!(listed.executions.len(), 1, "listed under its status");
}

/// `allDone` runs after a failed dependency, and the execution still ends FAILED; `allSuccess`
/// and `noneFailed` beside it are SKIPPED below the failure at once.
pub async fn all_done_runs_after_a_failure_and_the_execution_fails(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let def = JobDefinition::builder(unique_id("alldone"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]))
        .task(
            TaskBuilder::new("cleanup", "f")
                .after(["a", "b"])
                .trigger(Trigger::AllDone),
        )
        .task(TaskBuilder::new("next", "f").after(["b"]))
        .task(TaskBuilder::new("join", "f").after(["b"]).trigger(Trigger::NoneFailed))
        .build();
    let (id, _) = start(&*store, def, json!({}), &clock).await;
    run_ok(&*store, id, "a").await;
    let b = task(id, "b", 1);
    claim(&*store, &b).await;
    let report = store.finish(vec![failed(&b, "boom", None)]).await.unwrap();
    assert_eq!(
        described(&report.changes, now),
        [
            "task b#1 FAILED: boom",
            "task cleanup#1 QUEUED",
            "task join#1 SKIPPED: skipped: upstream task `b` failed",
            "task next#1 SKIPPED: skipped: upstream task `b` failed",
            "ready cleanup#1",
            "attempt b#1 FAILED on node-a: boom"
        ]
    );
    assert_eq!(
        store.get_execution(id).await.unwrap().status,
        ExecutionStatus::Running,
        "the cleanup still has to run"
    );
    let cleanup = claim(&*store, &task(id, "cleanup", 1)).await;
    assert_eq!(cleanup.upstream.keys().collect::<Vec<_>>(), ["a"]);
    let report = store
        .finish(vec![done(&task(id, "cleanup", 1), json!(1))])
        .await
        .unwrap();
    assert!(report.results[0].is_ok());
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        exec.status,
        ExecutionStatus::Failed,
        "an execution with a FAILED task FAILS"
    );
    assert_eq!(exec.error, Some(rules::task_failed("b", Some("boom"))));
    assert_eq!(exec.task("cleanup").unwrap().status, TaskStatus::Completed);
}

/// `anySuccess` runs at the first COMPLETED dependency, while the others still run; it is
/// SKIPPED once every dependency finished and none completed (counting as failed when one
/// failed).
pub async fn any_success_runs_at_the_first_completion(store: Arc<dyn Store>, clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("any"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f"))
        .task(
            TaskBuilder::new("first", "f")
                .after(["a", "b"])
                .trigger(Trigger::AnySuccess),
        )
        .task(TaskBuilder::new("x", "f"))
        .task(TaskBuilder::new("y", "f").when("false"))
        .task(
            TaskBuilder::new("rescue", "f")
                .after(["x", "y"])
                .trigger(Trigger::AnySuccess),
        )
        .task(
            TaskBuilder::new("after", "f")
                .after(["rescue"])
                .trigger(Trigger::NoneFailed),
        )
        .build();
    let (id, _) = start(&*store, def, json!({}), &clock).await;
    assert_eq!(run_ok(&*store, id, "a").await, vec![task(id, "first", 1)]);
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.task("b").unwrap().status, TaskStatus::Queued, "b still to run");
    assert_eq!(
        exec.task("rescue").unwrap().status,
        TaskStatus::Pending,
        "x may still complete"
    );
    run_failing(&*store, id, "x").await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        statuses(&exec, &["rescue", "after"]),
        [
            ("rescue", TaskStatus::Skipped, Some(rules::skipped_below("x"))),
            ("after", TaskStatus::Skipped, Some(rules::skipped_below("x"))),
        ],
        "no dependency completed and one failed: skipped, and a failure below"
    );
    run_ok(&*store, id, "b").await;
    let first = task(id, "first", 1);
    assert_eq!(claim(&*store, &first).await.upstream.len(), 2);
    store.finish(vec![done(&first, json!(1))]).await.unwrap();
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(
        exec.task("first").unwrap().attempts,
        1,
        "it ran once, not once per dependency"
    );
}

/// Retrying a FAILED execution re-runs the failure and everything below it, but leaves a task
/// skipped by its condition as it was.
pub async fn retry_leaves_the_branch_not_taken(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let def = JobDefinition::builder(unique_id("retry-branch"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]).when("params.x > 1"))
        .task(TaskBuilder::new("c", "f").after(["a"]).when("params.x <= 1"))
        .task(
            TaskBuilder::new("join", "f")
                .after(["b", "c"])
                .trigger(Trigger::NoneFailed),
        )
        .task(
            TaskBuilder::new("report", "f")
                .after(["join"])
                .trigger(Trigger::AllDone),
        )
        .build();
    let (id, _) = start(&*store, def, json!({"x": 2}), &clock).await;
    run_ok(&*store, id, "a").await;
    run_failing(&*store, id, "b").await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        statuses(&exec, &["c", "join", "report"]),
        [
            ("c", TaskStatus::Skipped, Some(rules::CONDITION_FALSE.to_string())),
            ("join", TaskStatus::Skipped, Some(rules::skipped_below("b"))),
            ("report", TaskStatus::Queued, None),
        ]
    );
    run_ok(&*store, id, "report").await;
    assert_eq!(store.get_execution(id).await.unwrap().status, ExecutionStatus::Failed);
    let changes = store.retry_execution(id).await.unwrap();
    assert_eq!(
        described(&changes, now),
        [
            "execution RUNNING",
            "task b#2 QUEUED",
            "task join#2 PENDING",
            "task report#2 PENDING",
            "ready b#2"
        ],
        "b and everything below it start over, the completed report too; c stays skipped"
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.task("report").unwrap().output, None, "its old output is gone");
    assert_eq!(exec.task("c").unwrap().status, TaskStatus::Skipped);
    let b = task(id, "b", 2);
    claim(&*store, &b).await;
    store.finish(vec![done(&b, json!(2))]).await.unwrap();
    for t in ["join", "report"] {
        let t = task(id, t, 2);
        claim(&*store, &t).await;
        store.finish(vec![done(&t, json!(3))]).await.unwrap();
    }
    assert_eq!(
        store.get_execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
}
