//! Rate limits in the engine, on the in-memory store, with 8 workers: the starts (the attempt
//! records' times, the Store's clock) never exceed `burst + perSecond × t` in any window `t`,
//! and the limit binds (the runs take as long as the rate says); a fan-out's instances each
//! count; registration refuses a limit that makes no sense, naming the field.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{engine, until};
use naxos_core::model::{ExecutionStatus, JobDefinition, TaskBuilder};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, TaskError};

/// An engine whose function `quick` returns at once.
fn started() -> Engine {
    let engine = engine();
    engine.register("quick", |ctx| async move {
        Ok::<_, TaskError>(ctx.item().cloned().unwrap_or(Value::Null))
    });
    engine.start().unwrap();
    engine
}

/// In every window `[s_i, s_j]` of the sorted starts, at most `burst + per_second × t` of them.
fn assert_bounded(starts: &mut [DateTime<Utc>], per_second: f64, burst: u32) {
    starts.sort();
    for i in 0..starts.len() {
        for j in i..starts.len() {
            let t = (starts[j] - starts[i]).num_microseconds().unwrap() as f64 / 1e6;
            assert!(
                (j - i + 1) as f64 <= f64::from(burst) + per_second * t + 1e-9,
                "{} starts in {t} s under {per_second}/s, burst {burst}: {starts:?}",
                j - i + 1
            );
        }
    }
}

/// Every attempt's start of every task of `ids`' executions.
async fn starts_of(engine: &Engine, ids: &[naxos_core::ExecutionId]) -> Vec<DateTime<Utc>> {
    let mut starts = Vec::new();
    for &id in ids {
        let e = until(engine, id, |e| e.summary.status.is_terminal()).await;
        assert_eq!(e.summary.status, ExecutionStatus::Completed, "{e:?}");
        starts.extend(e.tasks.iter().flat_map(|t| t.history.iter().map(|a| a.started_at)));
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_never_exceed_burst_plus_rate_times_window() {
    let engine = started();
    let (per_second, burst) = (100.0, 3);
    engine
        .register_definition(
            JobDefinition::builder("rated")
                .task(TaskBuilder::new("a", "quick").rate_limit(per_second, burst))
                .build(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(engine.execute("rated", json!({})).await.unwrap().execution_id);
    }
    let mut starts = starts_of(&engine, &ids).await;
    assert_eq!(starts.len(), 40, "each started once");
    assert_bounded(&mut starts, per_second, burst);
    let took = (starts[39] - starts[0]).num_milliseconds();
    assert!(
        took >= 360,
        "40 starts at 100/s after a burst of 3 take ≥ 370 ms: {took} ms"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_outs_instances_each_count() {
    let engine = started();
    engine
        .register_definition(
            JobDefinition::builder("fanned")
                .task(
                    TaskBuilder::new("each", "quick")
                        .for_each("params.items")
                        .rate_limit(50.0, 2),
                )
                .build(),
        )
        .await
        .unwrap();
    let items: Vec<u32> = (0..12).collect();
    let id = engine
        .execute("fanned", json!({"items": items}))
        .await
        .unwrap()
        .execution_id;
    let mut starts = starts_of(&engine, &[id]).await;
    assert_eq!(starts.len(), 12, "{starts:?}");
    assert_bounded(&mut starts, 50.0, 2);
    let e = engine.execution(id).await.unwrap();
    assert_eq!(e.task("each").unwrap().output, Some(json!(items)), "outputs in order");
    engine.shutdown().await;
}

#[tokio::test]
async fn registration_refuses_a_rate_that_makes_no_sense() {
    let engine = engine();
    engine.register("f", |_| async { Ok::<_, TaskError>(Value::Null) });
    for (task, field) in [
        (TaskBuilder::new("a", "f").rate_limit(0.0, 1), "rateLimit.perSecond"),
        (
            TaskBuilder::new("a", "f").rate_limit(f64::INFINITY, 1),
            "rateLimit.perSecond",
        ),
        (TaskBuilder::new("a", "f").rate_limit(1.0, 0), "rateLimit.burst"),
        (TaskBuilder::new("a", "f").rate_limit(1.0, 1_001), "rateLimit.burst"),
        (
            TaskBuilder::new("a", "f").rate_limit(1.0, 1).rate_limit_key("params."),
            "rateLimit.key",
        ),
        (
            TaskBuilder::sleep("a", Duration::from_secs(1)).rate_limit(1.0, 1),
            "rateLimit",
        ),
    ] {
        common::assert_refused(&engine, task, field).await;
    }
}
