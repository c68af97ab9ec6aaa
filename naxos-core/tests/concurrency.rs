//! Concurrency limits in the engine, on the in-memory store, with more workers than the limit:
//! the limit is reached and never exceeded (a gauge inside the function), a keyed limit counts
//! per key, a fan-out's instances each take a slot, and registration refuses a limit that
//! makes no sense, naming the field.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{engine, until};
use naxos_core::model::{ExecutionStatus, JobDefinition, TaskBuilder};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, ExecutionId, TaskError};

/// How many runs are inside the function at once, per key, and the most there ever were.
#[derive(Default)]
struct Gauge {
    now: HashMap<String, usize>,
    max: HashMap<String, usize>,
}

/// An engine (8 workers) whose function `slow` holds the gauge of its `params.tenant` (or
/// `"all"`) for a few milliseconds.
fn gauged(gauge: Arc<Mutex<Gauge>>) -> Engine {
    let engine = engine();
    engine.register("slow", move |ctx| {
        let gauge = gauge.clone();
        async move {
            let key = ctx.param::<String>("tenant").unwrap_or_else(|| "all".into());
            {
                let mut g = gauge.lock().unwrap();
                let n = {
                    let n = g.now.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                let max = g.max.entry(key.clone()).or_default();
                *max = (*max).max(n);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            *gauge.lock().unwrap().now.get_mut(&key).unwrap() -= 1;
            Ok::<_, TaskError>(json!(ctx.item().cloned().unwrap_or(Value::Null)))
        }
    });
    engine.start().unwrap();
    engine
}

/// Runs `n` executions of `definition` with the params `params(i)` to the end; each COMPLETED.
async fn run_all(engine: &Engine, definition: &str, n: usize, params: impl Fn(usize) -> Value) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(engine.execute(definition, params(i)).await.unwrap().execution_id);
    }
    for &id in &ids {
        let e = until(engine, id, |e| e.summary.status.is_terminal()).await;
        assert_eq!(e.summary.status, ExecutionStatus::Completed, "{e:?}");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_is_reached_and_never_exceeded() {
    let gauge = Arc::new(Mutex::new(Gauge::default()));
    let engine = gauged(gauge.clone());
    engine
        .register_definition(
            JobDefinition::builder("limited")
                .task(TaskBuilder::new("a", "slow").concurrency(2))
                .build(),
        )
        .await
        .unwrap();
    run_all(&engine, "limited", 60, |_| json!({})).await;
    assert_eq!(gauge.lock().unwrap().max["all"], 2, "8 workers, limit 2");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_limit_counts_per_key() {
    let gauge = Arc::new(Mutex::new(Gauge::default()));
    let engine = gauged(gauge.clone());
    engine
        .register_definition(
            JobDefinition::builder("keyed")
                .task(
                    TaskBuilder::new("a", "slow")
                        .concurrency(1)
                        .concurrency_key("params.tenant"),
                )
                .build(),
        )
        .await
        .unwrap();
    let tenants = ["x", "y", "z"];
    run_all(&engine, "keyed", 45, |i| json!({"tenant": tenants[i % 3]})).await;
    let most: Vec<usize> = {
        let g = gauge.lock().unwrap();
        tenants.iter().map(|t| g.max[*t]).collect()
    };
    assert_eq!(most, [1, 1, 1], "one run at a time per tenant");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_outs_instances_each_take_a_slot() {
    let gauge = Arc::new(Mutex::new(Gauge::default()));
    let engine = gauged(gauge.clone());
    engine
        .register_definition(
            JobDefinition::builder("fanned")
                .task(TaskBuilder::new("each", "slow").for_each("params.items").concurrency(3))
                .build(),
        )
        .await
        .unwrap();
    let items: Vec<u32> = (0..20).collect();
    let ids = run_all(&engine, "fanned", 2, |_| json!({"items": items})).await;
    assert_eq!(
        gauge.lock().unwrap().max["all"],
        3,
        "two fan-outs of 20 under one limit of 3"
    );
    let e = engine.execution(ids[0]).await.unwrap();
    assert_eq!(e.task("each").unwrap().output, Some(json!(items)), "outputs in order");
    engine.shutdown().await;
}

#[tokio::test]
async fn registration_refuses_a_limit_that_makes_no_sense() {
    let engine = engine();
    engine.register("f", |_| async { Ok::<_, TaskError>(Value::Null) });
    for (task, field) in [
        (TaskBuilder::new("a", "f").concurrency(0), "concurrency.limit"),
        (
            TaskBuilder::new("a", "f").concurrency(1).concurrency_key("params."),
            "concurrency.key",
        ),
        (
            TaskBuilder::sleep("a", Duration::from_secs(1)).concurrency(1),
            "concurrency",
        ),
    ] {
        common::assert_refused(&engine, task, field).await;
    }
}

#[tokio::test]
async fn a_key_that_does_not_evaluate_fails_the_task() {
    let engine = engine();
    engine.register("f", |_| async { Ok::<_, TaskError>(Value::Null) });
    engine.start().unwrap();
    engine
        .register_definition(
            JobDefinition::builder("keyed")
                .task(
                    TaskBuilder::new("a", "f")
                        .concurrency(1)
                        .concurrency_key("params.tenant"),
                )
                .build(),
        )
        .await
        .unwrap();
    let id = engine.execute("keyed", json!({})).await.unwrap().execution_id;
    let e = until(&engine, id, |e| e.summary.status.is_terminal()).await;
    assert_eq!(e.summary.status, ExecutionStatus::Failed);
    let error = e.task("a").unwrap().error.clone().unwrap_or_default();
    assert!(error.contains("concurrency.key"), "{error}");
    engine.shutdown().await;
}
