//! Fan-outs (`forEach`) in the engine, on the in-memory store: the function runs once per item
//! and reads its item and index, instances retry on their own with the task's policy, the task
//! below reads the outputs in order, a failed instance fails the task and a retry re-runs only
//! what did not complete, registration refuses what cannot work, and 1,000 instances complete.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{engine, quick_backoff};
use naxos_core::model::{Execution, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, Error, TaskError};

const LIMIT: Duration = Duration::from_secs(30);

/// Calls of `double` by item, and how many of them failed on purpose.
#[derive(Default)]
struct Calls {
    by_item: Mutex<BTreeMap<String, usize>>,
    failed: AtomicUsize,
}

/// `list` returns the params' `items`; `double` doubles its item (an item `"flaky"` fails
/// retryably on its first call; `"bad"` fails for good while `params.fail` is true); `sum`
/// adds up its upstream `each`.
fn register(engine: &Engine, calls: Arc<Calls>) {
    engine.register(
        "list",
        |ctx| async move { Ok(json!({ "items": ctx.params()["items"] })) },
    );
    engine.register("double", move |ctx| {
        let calls = calls.clone();
        async move {
            let item = ctx.item().cloned().expect("an instance has an item");
            let index = ctx.index().expect("and an index");
            assert_eq!(ctx.task_id(), format!("each[{index}]"));
            assert_eq!(ctx.definition_task_id(), "each");
            let n = {
                let mut by_item = calls.by_item.lock().unwrap();
                let n = by_item.entry(item.to_string()).or_default();
                *n += 1;
                *n
            };
            match item.as_str() {
                Some("flaky") if n == 1 => {
                    calls.failed.fetch_add(1, Ordering::SeqCst);
                    Err(TaskError::retryable("flaky the first time"))
                }
                Some("bad") if ctx.param::<bool>("fail") == Some(true) => Err(TaskError::fatal("bad item")),
                Some(s) => Ok(json!({ "index": index, "item": s })),
                None => Ok(json!(item.as_i64().unwrap_or(0) * 2)),
            }
        }
    });
    engine.register("sum", |ctx| async move {
        let each: Vec<Value> = ctx.upstream_as("each")?;
        Ok(json!(each.iter().filter_map(Value::as_i64).sum::<i64>()))
    });
}

fn definition(id: &str) -> JobDefinition {
    JobDefinition::builder(id)
        .task(TaskBuilder::new("list", "list"))
        .task(
            TaskBuilder::new("each", "double")
                .after(["list"])
                .for_each("upstream.list.items")
                .max_retry(2)
                .backoff(quick_backoff()),
        )
        .task(TaskBuilder::new("sum", "sum").after(["each"]))
        .build()
}

async fn started(id: &str) -> (Engine, Arc<Calls>) {
    let engine = engine();
    let calls = Arc::new(Calls::default());
    register(&engine, calls.clone());
    engine.register_definition(definition(id)).await.unwrap();
    engine.start().unwrap();
    (engine, calls)
}

/// Executes `definition` with `params` and waits (up to `limit`) for the execution to finish.
async fn run(engine: &Engine, definition: &str, params: Value, limit: Duration) -> Execution {
    let id = engine.execute(definition, params).await.unwrap().execution_id;
    engine.wait_for_timeout(id, limit).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_runs_once_and_the_task_below_reads_the_outputs_in_order() {
    let (engine, calls) = started("numbers").await;
    let items: Vec<i64> = (1..=20).collect();
    let done = run(&engine, "numbers", json!({ "items": items }), LIMIT).await;
    assert_eq!(
        done.summary.status,
        ExecutionStatus::Completed,
        "{:?}",
        done.summary.error
    );
    let expected: Vec<i64> = items.iter().map(|i| i * 2).collect();
    assert_eq!(done.task("each").unwrap().output, Some(json!(expected)));
    assert_eq!(done.task("sum").unwrap().output, Some(json!(420)));
    let by_item = calls.by_item.lock().unwrap().clone();
    assert_eq!(by_item.len(), 20);
    assert!(by_item.values().all(|&n| n == 1), "each item ran once: {by_item:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_retries_on_its_own_with_the_tasks_policy() {
    let (engine, calls) = started("flaky").await;
    let done = run(&engine, "flaky", json!({ "items": ["a", "flaky", "c"] }), LIMIT).await;
    assert_eq!(
        done.summary.status,
        ExecutionStatus::Completed,
        "{:?}",
        done.summary.error
    );
    assert_eq!(calls.failed.load(Ordering::SeqCst), 1);
    let attempts: Vec<(String, u32)> = done
        .tasks
        .iter()
        .filter(|t| t.plan.instance.is_some())
        .map(|t| (t.task_id.clone(), t.attempts))
        .collect();
    assert_eq!(
        attempts,
        [("each[0]".into(), 1), ("each[1]".into(), 2), ("each[2]".into(), 1)],
        "only the flaky instance ran twice"
    );
    assert_eq!(
        done.task("each").unwrap().output,
        Some(json!([
            {"index": 0, "item": "a"},
            {"index": 1, "item": "flaky"},
            {"index": 2, "item": "c"}
        ]))
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_instance_fails_the_task_and_a_retry_reruns_only_what_did_not_complete() {
    let (engine, calls) = started("bad").await;
    let params = json!({ "items": ["a", "bad", "c"], "fail": true });
    let id = engine.execute("bad", params).await.unwrap().execution_id;
    let failed = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(failed.summary.status, ExecutionStatus::Failed);
    assert_eq!(
        failed.summary.error.as_deref(),
        Some("task `each` failed: instance 1 failed: bad item")
    );
    assert_eq!(failed.task("sum").unwrap().status, TaskStatus::Skipped);
    let before = calls.by_item.lock().unwrap().clone();

    // The item stays bad: a retry runs it again, and starts over any instance cancelled before it
    // started; the completed ones are kept.
    engine.retry(id).await.unwrap();
    let again = engine.wait_for_timeout(id, LIMIT).await.unwrap();
    assert_eq!(again.summary.status, ExecutionStatus::Failed);
    let after = calls.by_item.lock().unwrap().clone();
    for run in failed.tasks.iter().filter(|t| t.plan.instance.is_some()) {
        let item = run.plan.instance.as_ref().unwrap().item.to_string();
        let runs = after.get(&item).copied().unwrap_or(0) - before.get(&item).copied().unwrap_or(0);
        match run.status {
            TaskStatus::Completed => assert_eq!(runs, 0, "{} completed: kept, not run again", run.task_id),
            TaskStatus::Failed => assert_eq!(runs, 1, "{} failed: it ran again", run.task_id),
            // Cancelled before it started: it starts over, and may be cancelled again before it
            // starts when the bad item fails first.
            _ => assert!(runs <= 1, "{} ({:?}) ran {runs} times", run.task_id, run.status),
        }
    }
    assert!(
        failed
            .tasks
            .iter()
            .any(|t| t.task_id == "each[1]" && t.status == TaskStatus::Failed),
        "the bad item's instance failed"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_fan_outs_that_cannot_work() {
    let engine = engine();
    engine.register("f", |_ctx| async { Ok(json!(null)) });
    let refused = |def: JobDefinition| {
        let engine = engine.clone();
        async move {
            match engine.register_definition(def).await {
                Err(Error::InvalidDefinition { problems, .. }) => {
                    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    let reads_item = JobDefinition::builder("w")
        .task(TaskBuilder::new("a", "f").for_each("params.xs").when("item > 1"))
        .build();
    let text = refused(reads_item).await;
    assert!(
        text.contains("task `a` has an invalid `when` condition: it reads `item`"),
        "{text}"
    );
    let sleeping = JobDefinition::builder("s")
        .task(TaskBuilder::sleep("a", Duration::from_secs(1)).for_each("params.xs"))
        .build();
    let text = refused(sleeping).await;
    assert!(
        text.contains("task `a` has an invalid `forEach`: a fan-out runs a function per item"),
        "{text}"
    );
    let too_many = JobDefinition::builder("m")
        .task(TaskBuilder::new("a", "f").for_each("params.xs").max_fan_out(10_001))
        .build();
    let text = refused(too_many).await;
    assert!(text.contains("`maxFanOut`: 10001 is over the limit of 10000"), "{text}");
    let alone = JobDefinition::builder("n")
        .task(TaskBuilder::new("a", "f").max_fan_out(5))
        .build();
    let text = refused(alone).await;
    assert!(text.contains("`maxFanOut`: it needs a `forEach`"), "{text}");
    let syntax = JobDefinition::builder("x")
        .task(TaskBuilder::new("a", "f").for_each("params.xs["))
        .build();
    let text = refused(syntax).await;
    assert!(text.contains("task `a` has an invalid `forEach`: line 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_a_thousand_instances_completes() {
    let (engine, calls) = started("thousand").await;
    let items: Vec<i64> = (0..1_000).collect();
    let began = Instant::now();
    let done = run(&engine, "thousand", json!({ "items": items }), Duration::from_secs(120)).await;
    let took = began.elapsed();
    assert_eq!(
        done.summary.status,
        ExecutionStatus::Completed,
        "{:?}",
        done.summary.error
    );
    assert_eq!(done.task("sum").unwrap().output, Some(json!(999 * 1_000)));
    assert_eq!(calls.by_item.lock().unwrap().len(), 1_000);
    println!("a fan-out of 1,000 instances on the in-memory store: {took:?}");
    engine.shutdown().await;
}
