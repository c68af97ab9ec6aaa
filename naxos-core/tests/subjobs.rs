//! Sub-jobs (`subJob`) in the engine, on the in-memory store: the task completes with its
//! child's outputs, a failed child is retried with a new one, a child cancelled from elsewhere
//! fails the task for good, cancelling the parent reaches the children and grandchildren,
//! nesting stops at its depth, and registration refuses a sub-job of an unknown definition.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{fast_config, until};
use naxos_core::backend::{ExecutionQuery, StopReason, Store};
use naxos_core::memory::MemoryStore;
use naxos_core::model::{Execution, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus, MAX_SUB_JOB_DEPTH};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, ExecutionId, TaskError};

const LIMIT: Duration = Duration::from_secs(30);

/// `greet` says hello to `params.name`; `flaky` fails (retryably) its first `failTimes` calls
/// in all; `fatal` always fails for good; `wait` waits for its cancellation.
fn register(engine: &Engine, flaky_calls: Arc<AtomicUsize>) {
    engine.register("greet", |ctx| async move {
        let name: String = ctx.param("name").unwrap_or_default();
        Ok(json!(format!("hello {name}")))
    });
    engine.register("flaky", move |ctx| {
        let calls = flaky_calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let fail_times: usize = ctx.param("failTimes").unwrap_or(0);
            if n < fail_times {
                Err(TaskError::fatal(format!("call {n} fails")))
            } else {
                Ok(json!({ "call": n }))
            }
        }
    });
    engine.register("wait", |ctx| async move {
        ctx.cancelled().await;
        Ok::<Value, TaskError>(Value::Null)
    });
}

async fn started() -> (Engine, Arc<AtomicUsize>) {
    started_on(Arc::new(MemoryStore::new())).await
}

/// [`started`] on `store`.
async fn started_on(store: Arc<dyn Store>) -> (Engine, Arc<AtomicUsize>) {
    let engine = Engine::builder().config(fast_config()).store(store).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    register(&engine, calls.clone());
    let definitions = [
        JobDefinition::builder("child")
            .task(TaskBuilder::new("hello", "greet"))
            .task(TaskBuilder::new("flaky", "flaky").after(["hello"]))
            .build(),
        JobDefinition::builder("slow-child")
            .task(TaskBuilder::new("wait", "wait"))
            .build(),
        JobDefinition::builder("slow-parent")
            .task(TaskBuilder::sub_job("inner", "slow-child"))
            .build(),
    ];
    for definition in definitions {
        engine.register_definition(definition).await.unwrap();
    }
    engine.start().unwrap();
    (engine, calls)
}

/// A parent whose `call` task runs `child` with the params its expression gives, then `after`.
fn parent(id: &str, max_retry: u32) -> JobDefinition {
    JobDefinition::builder(id)
        .task(TaskBuilder::new("first", "greet"))
        .task(
            TaskBuilder::sub_job("call", "child")
                .sub_job_params("{'name': 'child of ' + params.name, 'failTimes': params.failTimes}")
                .max_retry(max_retry)
                .after(["first"]),
        )
        .task(TaskBuilder::new("after", "greet").after(["call"]))
        .build()
}

/// Registers `definition`, runs it with `params` and waits for it to finish.
async fn run(engine: &Engine, definition: JobDefinition, params: Value) -> Execution {
    let name = definition.id.clone();
    engine.register_definition(definition).await.unwrap();
    let id = engine.execute(&name, params).await.unwrap().execution_id;
    engine.wait_for_timeout(id, LIMIT).await.unwrap()
}

/// Every execution of the store, oldest first.
async fn all(engine: &Engine) -> Vec<Execution> {
    let page = engine
        .executions(&ExecutionQuery {
            limit: 1_000,
            ..ExecutionQuery::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for s in page.executions.iter().rev() {
        out.push(engine.execution(s.id).await.unwrap());
    }
    out
}

fn children_of(executions: &[Execution], parent: ExecutionId) -> Vec<&Execution> {
    executions
        .iter()
        .filter(|e| e.summary.parent.as_ref().is_some_and(|p| p.execution_id == parent))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_completes_with_its_childs_outputs() {
    let (engine, _) = started().await;
    let done = run(&engine, parent("order", 0), json!({"name": "ada", "failTimes": 0})).await;
    let id = done.summary.id;
    assert_eq!(
        done.summary.status,
        ExecutionStatus::Completed,
        "{:?}",
        done.summary.error
    );
    let call = done.task("call").unwrap();
    assert_eq!(
        call.output,
        Some(json!({"hello": "hello child of ada", "flaky": {"call": 0}})),
        "the child's outputs by task id"
    );
    let child_id = call.plan.child.expect("the task names its child");
    let child = engine.execution(child_id).await.unwrap();
    assert_eq!(child.summary.status, ExecutionStatus::Completed);
    let link = child.summary.parent.expect("the child names its parent");
    assert_eq!((link.execution_id, link.task_id.as_str(), link.depth), (id, "call", 1));
    assert_eq!(
        child.summary.definition_version, 1,
        "pinned to the latest at the parent's creation"
    );
    assert_eq!(call.plan.sub_job.as_ref().unwrap().version, Some(1));
    assert_eq!(call.attempts, 1);
    assert_eq!(call.history.len(), 1, "one attempt record per child");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_is_retried_with_a_new_child_while_max_retry_allows() {
    let (engine, calls) = started().await;
    let done = run(&engine, parent("retried", 2), json!({"name": "bo", "failTimes": 2})).await;
    let id = done.summary.id;
    assert_eq!(
        done.summary.status,
        ExecutionStatus::Completed,
        "{:?}",
        done.summary.error
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two children failed, the third completed"
    );
    let call = done.task("call").unwrap();
    assert_eq!((call.attempt, call.attempts, call.failures), (3, 3, 2));
    let executions = all(&engine).await;
    let mut children = children_of(&executions, id);
    // Children created in one millisecond have no order by id: by attempt.
    children.sort_by_key(|c| c.summary.parent.as_ref().unwrap().attempt);
    let statuses: Vec<(u32, ExecutionStatus)> = children
        .iter()
        .map(|c| (c.summary.parent.as_ref().unwrap().attempt, c.summary.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, ExecutionStatus::Failed),
            (2, ExecutionStatus::Failed),
            (3, ExecutionStatus::Completed)
        ],
        "a new child per attempt"
    );
    assert_eq!(call.plan.child, Some(children[2].summary.id));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_fails_for_good_fails_the_task_and_skips_below() {
    let (engine, _) = started().await;
    let done = run(&engine, parent("failing", 0), json!({"name": "cy", "failTimes": 5})).await;
    assert_eq!(done.summary.status, ExecutionStatus::Failed);
    let call = done.task("call").unwrap();
    assert_eq!(call.status, TaskStatus::Failed);
    let child = call.plan.child.unwrap();
    let error = call.error.as_deref().unwrap();
    assert!(error.starts_with(&format!("sub-job {child} failed")), "{error}");
    assert_eq!(done.task("after").unwrap().status, TaskStatus::Skipped);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_cancels_the_child_and_the_grandchild() {
    let (engine, _) = started().await;
    engine
        .register_definition(
            JobDefinition::builder("grandparent")
                .task(TaskBuilder::sub_job("outer", "slow-parent"))
                .build(),
        )
        .await
        .unwrap();
    let id = engine.execute("grandparent", json!({})).await.unwrap().execution_id;
    // Wait until the grandchild's task runs.
    let running = until(&engine, id, |e| e.task("outer").unwrap().plan.child.is_some()).await;
    let child = running.task("outer").unwrap().plan.child.unwrap();
    let child = until(&engine, child, |e| e.task("inner").unwrap().plan.child.is_some()).await;
    let grandchild = child.task("inner").unwrap().plan.child.unwrap();
    until(&engine, grandchild, |e| {
        e.task("wait").unwrap().status == TaskStatus::Running
    })
    .await;

    assert_eq!(engine.cancel(id).await.unwrap(), ExecutionStatus::Cancelled);
    for (who, id) in [("child", child.summary.id), ("grandchild", grandchild)] {
        let e = until(&engine, id, |e| e.summary.status.is_terminal()).await;
        assert_eq!(e.summary.status, ExecutionStatus::Cancelled, "the {who}");
    }
    let parent = engine.execution(id).await.unwrap();
    assert_eq!(
        parent.summary.status,
        ExecutionStatus::Cancelled,
        "the child's end did not change it"
    );
    assert_eq!(parent.task("outer").unwrap().status, TaskStatus::Cancelled);
    engine.shutdown().await;
}

/// A parent stopped in the Store without the engine's stop of its children (as when a node dies
/// right after the commit): the sweeper finds the child under the finished parent and cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_cancels_a_child_whose_parents_stop_did_not_reach_it() {
    let store = Arc::new(MemoryStore::new());
    let (engine, _) = started_on(store.clone()).await;
    let id = engine.execute("slow-parent", json!({})).await.unwrap().execution_id;
    let running = until(&engine, id, |e| e.task("inner").unwrap().plan.child.is_some()).await;
    let child = running.task("inner").unwrap().plan.child.unwrap();
    until(&engine, child, |e| {
        e.task("wait").unwrap().status == TaskStatus::Running
    })
    .await;
    let stopped = store.stop_execution(id, StopReason::Cancelled).await.unwrap();
    assert_eq!(
        stopped.changes.stopped_children,
        [child],
        "left for the engine, which never hears of it"
    );
    let child = until(&engine, child, |e| e.summary.status.is_terminal()).await;
    assert_eq!(child.summary.status, ExecutionStatus::Cancelled);
    assert_eq!(child.task("wait").unwrap().status, TaskStatus::Cancelled);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cancelled_from_elsewhere_fails_the_task_for_good() {
    let (engine, _) = started().await;
    engine
        .register_definition(
            JobDefinition::builder("patient")
                .task(TaskBuilder::sub_job("inner", "slow-child").max_retry(3))
                .build(),
        )
        .await
        .unwrap();
    let id = engine.execute("patient", json!({})).await.unwrap().execution_id;
    let running = until(&engine, id, |e| e.task("inner").unwrap().plan.child.is_some()).await;
    let child = running.task("inner").unwrap().plan.child.unwrap();
    until(&engine, child, |e| {
        e.task("wait").unwrap().status == TaskStatus::Running
    })
    .await;
    engine.cancel(child).await.unwrap();
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Failed);
    let inner = done.task("inner").unwrap();
    assert_eq!(
        inner.error.as_deref(),
        Some(format!("sub-job {child} was cancelled").as_str())
    );
    assert_eq!(
        inner.attempts, 1,
        "no retry after a cancelled child, whatever maxRetry says"
    );
    engine.shutdown().await;
}

/// A restart from above a cancelled sub-job whose dependency completes at once (an empty
/// fan-out) starts one child for the new attempt, not one each time the restart announces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_above_a_sub_job_starts_one_child() {
    let (engine, _) = started().await;
    engine
        .register_definition(
            JobDefinition::builder("restarted")
                .task(TaskBuilder::new("empty", "greet").for_each("[]"))
                .task(TaskBuilder::sub_job("later", "slow-child").after(["empty"]))
                .build(),
        )
        .await
        .unwrap();
    let id = engine.execute("restarted", json!({})).await.unwrap().execution_id;
    until(&engine, id, |e| e.task("later").unwrap().plan.child.is_some()).await;
    engine.cancel(id).await.unwrap();
    engine.retry_from(id, "empty").await.unwrap();
    let running = until(&engine, id, |e| e.task("later").unwrap().attempt == 2).await;
    let call = running.task("later").unwrap();
    assert_eq!(call.status, TaskStatus::Running);
    assert_eq!((call.attempts, call.history.len()), (2, 2), "{:?}", call.history);
    assert_eq!(
        call.history.iter().filter(|a| a.ended_at.is_none()).count(),
        1,
        "one open attempt"
    );
    let executions = all(&engine).await;
    assert_eq!(children_of(&executions, id).len(), 2, "one child per attempt");
    engine.cancel(id).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_stops_at_its_depth() {
    let (engine, _) = started().await;
    engine
        .register_definition(
            JobDefinition::builder("recursive")
                .task(TaskBuilder::new("hello", "greet"))
                .task(TaskBuilder::sub_job("again", "recursive").after(["hello"]))
                .build(),
        )
        .await
        .unwrap();
    let id = engine.execute("recursive", json!({})).await.unwrap().execution_id;
    let done = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(done.summary.status, ExecutionStatus::Failed);
    let executions = all(&engine).await;
    let family: Vec<&Execution> = executions
        .iter()
        .filter(|e| e.summary.definition_id == "recursive")
        .collect();
    assert_eq!(
        family.len(),
        MAX_SUB_JOB_DEPTH as usize + 1,
        "the root and ten nested children"
    );
    let deepest = family
        .iter()
        .max_by_key(|e| e.summary.parent.as_ref().map_or(0, |p| p.depth))
        .unwrap();
    assert_eq!(deepest.summary.parent.as_ref().unwrap().depth, MAX_SUB_JOB_DEPTH);
    let error = deepest.task("again").unwrap().error.clone().unwrap();
    assert!(error.starts_with("sub-job nesting deeper than 10"), "{error}");
    assert!(family.iter().all(|e| e.summary.status == ExecutionStatus::Failed));
    engine.shutdown().await;
}

#[tokio::test]
async fn registration_refuses_a_sub_job_of_an_unknown_definition_or_version() {
    let (engine, _) = started().await;
    for (task, field) in [
        (TaskBuilder::sub_job("later", "nowhere"), "subJob.definitionId"),
        (
            TaskBuilder::sub_job("later", "child").sub_job_version(7),
            "subJob.version",
        ),
        (
            TaskBuilder::sub_job("later", "child").sub_job_params("{'a': "),
            "subJob.params",
        ),
    ] {
        common::assert_refused(&engine, task, field).await;
    }
    engine.shutdown().await;
}
