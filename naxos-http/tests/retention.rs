//! Retention over HTTP, in process: the definition's `retention` is validated (422 naming the
//! field), stored and read back; an execution of a definition with a short one is pruned (its
//! status answers 404) while one without keeps its own.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use naxos_core::serde_json::{json, Value};
use naxos_core::Engine;
use naxos_http::{router, HttpConfig};

const WAIT: Duration = Duration::from_secs(20);

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = common::call(app, method, uri, body).await;
    (status, naxos_core::serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn define(app: &Router, body: Value) -> (StatusCode, Value) {
    call(app, "POST", "/api/v1/job-definitions", &body.to_string()).await
}

/// Runs one execution of `definition` to its end; returns its id.
async fn run(app: &Router, definition: &str) -> String {
    let (status, body) = call(app, "POST", &format!("/api/v1/jobs/{definition}/execute"), "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let (_, exec) = call(app, "GET", &format!("/api/v1/jobs/{id}/status"), "").await;
        if exec["status"] == "COMPLETED" {
            return id;
        }
        assert!(started.elapsed() < WAIT, "not completed in time: {exec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn one_task(id: &str, retention: Option<Value>) -> Value {
    let mut def = json!({"id": id, "tasks": {"t": {"id": "t", "functionName": "ok"}}});
    if let Some(r) = retention {
        def["retention"] = r;
    }
    def
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_retention_prunes_its_execution_and_the_default_keeps_the_other() {
    // The default retention (7 days) for definitions without one; a sweep every 50 ms.
    let engine = Engine::builder()
        .sweep_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    engine.register("ok", |_ctx| async { Ok(json!("ok")) });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());

    let (status, body) = define(&app, one_task("brief", Some(json!({"completedMs": 200})))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, stored) = call(&app, "GET", "/api/v1/job-definitions/brief", "").await;
    assert_eq!(stored["retention"], json!({"completedMs": 200}), "{stored}");
    let (status, body) = define(&app, one_task("kept", None)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let brief = run(&app, "brief").await;
    let kept = run(&app, "kept").await;
    let started = Instant::now();
    loop {
        let (status, body) = call(&app, "GET", &format!("/api/v1/jobs/{brief}/status"), "").await;
        if status == StatusCode::NOT_FOUND {
            assert_eq!(body["error"]["code"], "not_found", "{body}");
            break;
        }
        assert!(started.elapsed() < WAIT, "not pruned in time: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call(&app, "GET", &format!("/api/v1/jobs/{kept}/status"), "").await;
    assert_eq!(status, StatusCode::OK, "pruned with the short one: {body}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_bad_retention_is_a_422_naming_the_field() {
    let engine = Engine::in_memory();
    engine.register("ok", |_ctx| async { Ok(json!("ok")) });
    let app = router(engine, HttpConfig::default());
    let (status, body) = define(&app, one_task("bad", Some(json!({"completedMs": 0, "failedMs": 1000})))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("retention.completedMs"), "{text}");
    assert!(!text.contains("retention.failedMs"), "{text}");
    // An unknown period is refused by name too.
    let (status, body) = define(&app, one_task("bad", Some(json!({"cancelledMs": 5})))).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body.to_string().contains("cancelledMs"), "{body}");
}
