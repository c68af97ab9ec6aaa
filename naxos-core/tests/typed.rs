//! The typed API a newcomer reaches for: params from any `Serialize`, params into a type
//! (`register_typed`), a dependency's output into a type (`upstream_as`, with an error for each
//! way it can go wrong), a finished task's output into a type (`output_as`), and `wait_for` on
//! an engine nobody started.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{engine, DEADLINE};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, ExecutionStatus, JobDefinition, TaskBuilder, TaskContext, TaskError, UpstreamError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    items: Vec<String>,
}

/// `fetch → join`, plus `other`, which `join` does not depend on.
fn fetch_join() -> JobDefinition {
    JobDefinition::builder("typed")
        .task(TaskBuilder::new("fetch", "fetch"))
        .task(TaskBuilder::new("other", "fetch"))
        .task(TaskBuilder::new("join", "join").after(["fetch"]))
        .build()
}

/// Runs [`fetch_join`] with `fetch` returning `fetched` and `join` returning what `read` makes
/// of its context, and returns the finished execution.
async fn run_join<F>(fetched: Value, read: F) -> naxos_core::Execution
where
    F: Fn(&TaskContext) -> Result<Value, TaskError> + Send + Sync + 'static,
{
    let engine = engine();
    engine.register("fetch", move |_ctx| {
        let fetched = fetched.clone();
        async move { Ok(fetched) }
    });
    engine.register("join", move |ctx| {
        let out = read(&ctx);
        async move { out }
    });
    engine.register_definition(fetch_join()).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("typed", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    engine.shutdown().await;
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_as_reads_a_direct_dependency_into_a_type() {
    let done = run_join(json!({"id": 7, "items": ["figs"]}), |ctx| {
        let order: Order = ctx.upstream_as("fetch")?;
        Ok(json!(order.items.len() as u64 + order.id))
    })
    .await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output_as::<u64>("join").unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_as_a_task_that_is_not_a_direct_dependency_fails_the_task_saying_so() {
    let done = run_join(json!(1), |ctx| Ok(json!(ctx.upstream_as::<u64>("other")?))).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let join = done.task("join").unwrap();
    assert_eq!(
        join.error.as_deref(),
        Some("`other` is not a direct dependency of `join`")
    );
    assert_eq!(join.attempts, 1, "fatal: not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_as_an_output_of_another_shape_names_the_dependency_the_place_and_serde_s_message() {
    let done = run_join(json!({"id": "seven", "items": []}), |ctx| {
        Ok(json!(ctx.upstream_as::<Order>("fetch")?.id))
    })
    .await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let error = done.task("join").unwrap().error.clone().unwrap();
    assert_eq!(
        error,
        "the output of `fetch` does not fit the type `join` reads it as, at `id`: \
         invalid type: string \"seven\", expected u64"
    );
}

#[test]
fn upstream_as_tells_a_dependency_without_output_from_a_task_that_is_none() {
    let ctx =
        TaskContext::for_test(json!({}), BTreeMap::from([("a".to_string(), json!(1))])).with_dependencies(["skipped"]);
    assert_eq!(ctx.upstream_as::<u32>("a"), Ok(1));
    let no_output = ctx.upstream_as::<u32>("skipped").unwrap_err();
    assert!(matches!(no_output, UpstreamError::NoOutput { .. }), "{no_output:?}");
    assert_eq!(
        no_output.to_string(),
        "`skipped`, a dependency of `test`, has no output (it did not complete)"
    );
    let stranger = ctx.upstream_as::<u32>("z").unwrap_err();
    assert!(matches!(stranger, UpstreamError::NotADependency { .. }), "{stranger:?}");
    let as_task_error = TaskError::from(stranger);
    assert!(!as_task_error.is_retryable());
    assert_eq!(as_task_error.message, "`z` is not a direct dependency of `test`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_takes_any_serialize_params_and_register_typed_reads_them_back() {
    let engine = engine();
    engine.register_typed("count", |_ctx, order: Order| async move {
        Ok::<_, TaskError>(order.items.len())
    });
    let job = JobDefinition::builder("orders")
        .task(TaskBuilder::new("count", "count").max_retry(3))
        .build();
    engine.register_definition(job).await.unwrap();
    engine.start().unwrap();
    let order = Order {
        id: 1,
        items: vec!["figs".into(), "honey".into()],
    };
    let typed = engine.execute("orders", &order).await.unwrap();
    let done = engine.wait_for_timeout(typed.execution_id, DEADLINE).await.unwrap();
    assert_eq!(
        done.data,
        json!({"id": 1, "items": ["figs", "honey"]}),
        "stored as JSON"
    );
    assert_eq!(done.output_as::<usize>("count").unwrap(), 2);

    let mismatched = engine
        .execute("orders", json!({"id": 2, "items": ["figs", 3]}))
        .await
        .unwrap();
    let failed = engine
        .wait_for_timeout(mismatched.execution_id, DEADLINE)
        .await
        .unwrap();
    let count = failed.task("count").unwrap();
    assert_eq!(
        (failed.status, count.attempts),
        (ExecutionStatus::Failed, 1),
        "a mismatch is fatal: the same params would not fit the next time"
    );
    assert_eq!(
        count.error.as_deref(),
        Some("task `count`: params do not fit at `items[1]`: invalid type: integer `3`, expected a string")
    );

    let refused = engine.execute("orders", vec![1, 2]).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "invalid input: params must be a JSON object, not an array"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_as_names_a_missing_task_an_unfinished_one_and_a_mismatch() {
    let done = run_join(json!({"id": 7, "items": []}), |_ctx| Err(TaskError::fatal("no"))).await;
    assert_eq!(done.output_as::<Order>("fetch").unwrap().id, 7);
    let missing = done.output_as::<Value>("nope").unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let failed = done.output_as::<Value>("join").unwrap_err();
    assert!(failed.is_conflict(), "{failed}");
    assert!(
        failed.to_string().contains("task `join` of execution")
            && failed.to_string().ends_with("has no output: it is FAILED"),
        "{failed}"
    );
    let mismatch = done.output_as::<String>("fetch").unwrap_err().to_string();
    assert_eq!(
        mismatch,
        "invalid input: the output of task `fetch` does not fit the type asked for, at `.`: \
         invalid type: map, expected a string"
    );
}

/// The newcomer's mistake: no `start()`. `wait_for` says so within a moment instead of
/// waiting for ever; an execution that already finished is still returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_on_an_engine_never_started_says_so_instead_of_hanging() {
    let engine = Engine::builder()
        .sweep_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    engine.register("f", |_ctx| async move { Ok(json!(null)) });
    let job = JobDefinition::builder("j").task(TaskBuilder::new("t", "f")).build();
    engine.register_definition(job).await.unwrap();
    let run = engine.execute("j", json!({})).await.unwrap();
    let started = tokio::time::Instant::now();
    let error = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert!(error.to_string().contains("this engine was never started"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    engine.cancel(run.execution_id).await.unwrap();
    let cancelled = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
}
