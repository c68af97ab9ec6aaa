//! W3C trace context end to end on the in-memory backends: the `traceparent` an execution is
//! submitted with reaches every task attempt, as the `TaskContext`'s trace context and as the
//! fields of the attempt's `task` span (seen here through a JSON log, as a log pipeline or an
//! OpenTelemetry layer keyed on those fields would see them).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{capture_logs, engine, quick_backoff, DEADLINE};
use naxos_core::model::{JobDefinition, TaskBuilder, TraceParent};
use naxos_core::serde_json::{json, Value};
use naxos_core::{ExecuteRequest, ExecutionStatus, TaskError};

const SUBMITTED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What each attempt saw: `(task id, attempt)` → its context's trace context.
type Seen = Arc<Mutex<BTreeMap<(String, u32), Option<TraceParent>>>>;

/// The diamond `a → (b, c) → d`, with `b` failing its first attempt (so it has two).
fn job(id: &str) -> JobDefinition {
    let step = |id: &str| TaskBuilder::new(id, "traced").max_retry(1).backoff(quick_backoff());
    JobDefinition::builder(id)
        .task(step("a"))
        .task(step("b").after(["a"]))
        .task(step("c").after(["a"]))
        .task(step("d").after(["b", "c"]))
        .build()
}

fn register(engine: &naxos_core::Engine, seen: &Seen) {
    let seen = seen.clone();
    engine.register("traced", move |ctx| {
        let seen = seen.clone();
        async move {
            tracing::info!("traced step running");
            let key = (ctx.task_id().to_string(), ctx.attempt());
            seen.lock().unwrap().insert(key, ctx.traceparent().copied());
            if ctx.task_id() == "b" && ctx.attempt() == 1 {
                return Err(TaskError::retryable("b fails once"));
            }
            Ok(json!(null))
        }
    });
}

/// The `span` object of the log line the function wrote in attempt `attempt` of `task`.
fn span_of(lines: &[Value], task: &str, attempt: u32) -> Value {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == "traced step running")
        .map(|l| l["span"].clone())
        .find(|s| s["task_id"] == task && s["attempt"] == attempt)
        .unwrap_or_else(|| panic!("no log line of {task}#{attempt} in its task span"))
}

#[tokio::test(flavor = "current_thread")]
async fn a_submitted_traceparent_reaches_every_attempt_and_its_span() {
    let (lines, _guard) = capture_logs(true);

    let engine = engine();
    let seen = Seen::default();
    register(&engine, &seen);
    engine.register_definition(job("traced-diamond")).await.unwrap();
    engine.start().unwrap();
    let submitted = TraceParent::parse(SUBMITTED).unwrap();
    let request = ExecuteRequest::new("traced-diamond", json!({})).traceparent(submitted);
    let id = engine.submit(request).await.unwrap().execution_id;
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.traceparent, Some(submitted), "the execution record keeps it");
    engine.shutdown().await;

    let seen = seen.lock().unwrap().clone();
    let attempts: Vec<(&str, u32)> = seen.keys().map(|(t, a)| (t.as_str(), *a)).collect();
    assert_eq!(attempts, [("a", 1), ("b", 1), ("b", 2), ("c", 1), ("d", 1)]);
    let text = lines.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| naxos_core::serde_json::from_str(l).unwrap())
        .collect();
    let mut span_ids = Vec::new();
    for ((task, attempt), context) in &seen {
        let context = context.unwrap_or_else(|| panic!("{task}#{attempt} got no trace context"));
        assert_eq!(
            context.trace_id(),
            submitted.trace_id(),
            "{task}#{attempt}: the same trace"
        );
        assert_eq!(context.flags(), submitted.flags());
        assert_ne!(
            context.parent_id(),
            submitted.parent_id(),
            "{task}#{attempt}: the attempt's own span"
        );
        let span = span_of(&lines, task, *attempt);
        assert_eq!(span["name"], "task");
        assert_eq!(span["trace_id"], submitted.trace_id_hex(), "{span}");
        assert_eq!(span["parent_span_id"], submitted.parent_id_hex(), "{span}");
        assert_eq!(span["span_id"], context.parent_id_hex(), "{span}");
        span_ids.push(context.parent_id());
    }
    span_ids.sort_unstable();
    span_ids.dedup();
    assert_eq!(span_ids.len(), seen.len(), "every attempt is a span of its own");
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_traceparent_there_is_no_trace_context() {
    let (lines, _guard) = capture_logs(true);

    let engine = engine();
    let seen = Seen::default();
    register(&engine, &seen);
    engine.register_definition(job("untraced-diamond")).await.unwrap();
    engine.start().unwrap();
    let id = engine
        .execute("untraced-diamond", json!({}))
        .await
        .unwrap()
        .execution_id;
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.traceparent, None);
    engine.shutdown().await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert!(seen.values().all(Option::is_none), "{seen:?}");
    let text = lines.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| naxos_core::serde_json::from_str(l).unwrap())
        .collect();
    let span = span_of(&lines, "d", 1);
    assert_eq!(span["execution_id"], id.to_string(), "the log line is in its task span");
    assert!(
        span.get("trace_id").is_none() && span.get("span_id").is_none(),
        "{span}"
    );
}
