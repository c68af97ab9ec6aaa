//! Bulk cancel and retry by filter (`POST /api/v1/jobs/cancel`, `/api/v1/jobs/retry`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, ExecutionId, ExecutionStatus, TaskError};
use naxos_http::{router, HttpConfig};

const WAIT: Duration = Duration::from_secs(20);

/// An engine with `ok` (fails until switched on) and `waits` (runs until cancelled).
fn app() -> (Engine, Router, Arc<AtomicBool>) {
    let engine = Engine::in_memory();
    let on = Arc::new(AtomicBool::new(false));
    let switch = on.clone();
    engine.register("switch", move |_ctx| {
        let on = switch.load(Ordering::SeqCst);
        async move {
            if on {
                Ok(json!("on"))
            } else {
                Err(TaskError::fatal("switched off"))
            }
        }
    });
    engine.register("wait", |ctx| async move {
        ctx.cancelled().await;
        Err::<Value, _>(TaskError::fatal("cancelled"))
    });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());
    (engine, app, on)
}

async fn post(app: &Router, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = common::call(app, "POST", uri, body).await;
    (status, naxos_core::serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn define(app: &Router, id: &str, function: &str) {
    let body = format!(r#"{{"id":"{id}","tasks":{{"t":{{"id":"t","functionName":"{function}"}}}}}}"#);
    let (status, text) = post(app, "/api/v1/job-definitions", &body).await;
    assert!(status.is_success(), "{status} {text}");
}

async fn run(app: &Router, definition: &str) -> ExecutionId {
    let (status, body) = post(app, &format!("/api/v1/jobs/{definition}/execute"), "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["executionId"].as_str().unwrap().parse().unwrap()
}

async fn status(engine: &Engine, id: ExecutionId) -> ExecutionStatus {
    engine.execution(id).await.unwrap().status
}

/// A filter that names nothing, misspells a field, or carries a bad status or time is a 422
/// naming it, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_empty_filter_is_refused() {
    let (engine, app, _) = app();
    define(&app, "waits", "wait").await;
    let running = run(&app, "waits").await;
    for (body, names) in [
        ("{}", "at least one of definitionId, status, createdBefore"),
        (r#"{"definitionID":"waits"}"#, "definitionID"),
        (r#"{"status":"DONE"}"#, "status `DONE`"),
        (r#"{"createdBefore":"yesterday"}"#, "createdBefore `yesterday`"),
    ] {
        for route in ["/api/v1/jobs/cancel", "/api/v1/jobs/retry"] {
            let (status, reply) = post(&app, route, body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{route} {body}: {reply}");
            assert_eq!(reply["error"]["code"], "invalid_filter");
            let message = reply["error"]["message"].as_str().unwrap();
            assert!(message.contains(names), "{message}");
        }
    }
    let (status, _) = post(&app, "/api/v1/jobs/cancel", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        !self::status(&engine, running).await.is_terminal(),
        "nothing was cancelled"
    );
}

/// Cancel by definition takes every unfinished execution of it, over several pages (150 with
/// pages of 100), and leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_definition_takes_every_page() {
    let (engine, app, on) = app();
    on.store(true, Ordering::SeqCst);
    define(&app, "waits", "wait").await;
    define(&app, "ok", "switch").await;
    // First, while worker slots are free: the waiting ones hold every slot.
    let other = run(&app, "ok").await;
    engine.wait_for_timeout(other, WAIT).await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..150 {
        waiting.push(run(&app, "waits").await);
    }
    let (code, reply) = post(&app, "/api/v1/jobs/cancel", r#"{"definitionId":"waits"}"#).await;
    assert_eq!(
        (code, reply.clone()),
        (StatusCode::OK, json!({ "matched": 150 })),
        "{reply}"
    );
    for id in &waiting {
        assert_eq!(status(&engine, *id).await, ExecutionStatus::Cancelled);
    }
    assert_eq!(
        status(&engine, other).await,
        ExecutionStatus::Completed,
        "another definition"
    );
    let (_, again) = post(&app, "/api/v1/jobs/cancel", r#"{"definitionId":"waits"}"#).await;
    assert_eq!(again, json!({ "matched": 0 }), "finished ones are not counted");
}

/// Retry by status and creation time: only the FAILED executions created before the instant
/// run again; a second retry matches none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_by_status_and_creation_time() {
    let (engine, app, on) = app();
    define(&app, "ok", "switch").await;
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(run(&app, "ok").await);
    }
    for id in &old {
        engine.wait_for_timeout(*id, WAIT).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cut = naxos_core::chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let new = run(&app, "ok").await;
    engine.wait_for_timeout(new, WAIT).await.unwrap();
    assert_eq!(status(&engine, new).await, ExecutionStatus::Failed);
    on.store(true, Ordering::SeqCst);
    let filter = json!({ "status": "FAILED", "createdBefore": cut.to_rfc3339() }).to_string();
    let (code, reply) = post(&app, "/api/v1/jobs/retry", &filter).await;
    assert_eq!(
        (code, reply.clone()),
        (StatusCode::OK, json!({ "matched": 3 })),
        "{reply}"
    );
    for id in &old {
        assert_eq!(
            engine.wait_for_timeout(*id, WAIT).await.unwrap().status,
            ExecutionStatus::Completed
        );
    }
    assert_eq!(
        status(&engine, new).await,
        ExecutionStatus::Failed,
        "created after the cut"
    );
    let (_, again) = post(&app, "/api/v1/jobs/retry", &filter).await;
    assert_eq!(again, json!({ "matched": 0 }));
}
