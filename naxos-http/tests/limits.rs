//! Concurrency and rate limits over HTTP, in-process on a started in-memory engine: a
//! definition with `"concurrency": {"limit": 1}` is accepted and shown with its limit, a run over
//! the limit is QUEUED with `blockedBy: "concurrency"` and its function not called until the
//! holder ends, then everything completes; a run over a `rateLimit` waits QUEUED with
//! `blockedBy: "rateLimit"` and its turn in `dueAt`, then completes; a limit that makes no sense
//! is a 422 naming the field; the OpenAPI document describes the fields.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use naxos_core::serde_json::{self, json, Value};
use naxos_core::Engine;
use naxos_http::{router, HttpConfig};

const WAIT: Duration = Duration::from_secs(20);

/// One task `hold`, at most one run at a time, that waits for the gate when `params.gate`.
const ONE_AT_A_TIME: &str = r#"{ "id": "one", "tasks": {
    "hold": {"id": "hold", "functionName": "hold", "concurrency": {"limit": 1}} } }"#;

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = common::call(app, method, uri, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"));
    (status, value)
}

async fn execute(app: &Router, params: Value) -> String {
    let (status, body) = call(app, "POST", "/api/v1/jobs/one/execute", &params.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["executionId"].as_str().unwrap().to_string()
}

/// Polls the status of `id` until `ready` holds of its task `hold`, within [`WAIT`].
async fn until(app: &Router, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, exec) = call(app, "GET", &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        if ready(&exec["tasks"][0]) {
            return exec;
        }
        assert!(started.elapsed() < WAIT, "{what} within {WAIT:?}: {exec}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_the_limit_waits_queued_until_the_holder_ends() {
    let engine = Engine::in_memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (seen, opened) = (calls.clone(), gate.clone());
    engine.register("hold", move |ctx| {
        let (seen, opened) = (seen.clone(), opened.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            if ctx.param::<bool>("gate") == Some(true) {
                opened.notified().await;
            }
            Ok(json!("held"))
        }
    });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());
    let (status, body) = call(&app, "POST", "/api/v1/job-definitions", ONE_AT_A_TIME).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, shown) = call(&app, "GET", "/api/v1/job-definitions/one", "").await;
    assert_eq!(shown["tasks"]["hold"]["concurrency"], json!({"limit": 1}), "{shown}");

    let holder = execute(&app, json!({"gate": true})).await;
    until(&app, &holder, "the holder runs", |t| t["status"] == "RUNNING").await;
    let waiter = execute(&app, json!({})).await;
    let waiting = until(&app, &waiter, "the second run waits", |t| {
        t["blockedBy"] == "concurrency"
    })
    .await;
    let task = &waiting["tasks"][0];
    assert_eq!(task["status"], "QUEUED", "{waiting}");
    assert_eq!(task["concurrency"], json!({"limit": 1}), "{waiting}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the waiting run's function is not called"
    );

    gate.notify_one();
    for id in [&holder, &waiter] {
        let done = until(&app, id, "completed", |t| t["status"] == "COMPLETED").await;
        assert!(done["tasks"][0].get("blockedBy").is_none(), "{done}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_limit_that_makes_no_sense_is_a_422_naming_the_field() {
    let engine = Engine::in_memory();
    engine.register("hold", |_| async { Ok(json!(null)) });
    let app = router(engine, HttpConfig::default());
    for (concurrency, field) in [
        (json!({"limit": 0}), "concurrency.limit"),
        (json!({"limit": 2, "key": "params."}), "concurrency.key"),
        (json!({"limit": 2, "key": "params.a", "extra": 1}), "extra"),
    ] {
        let definition =
            json!({"id": "bad", "tasks": {"a": {"id": "a", "functionName": "hold", "concurrency": concurrency}}});
        let (status, body) = call(&app, "POST", "/api/v1/job-definitions", &definition.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains(field), "{field}: {body}");
    }
}

/// One task `tick`, one start a second, one at a time.
const ONE_A_SECOND: &str = r#"{ "id": "slow", "tasks": {
    "tick": {"id": "tick", "functionName": "tick", "rateLimit": {"perSecond": 1}} } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_the_rate_waits_for_its_turn() {
    let engine = Engine::in_memory();
    engine.register("tick", |_| async { Ok(json!("tick")) });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());
    let (status, body) = call(&app, "POST", "/api/v1/job-definitions", ONE_A_SECOND).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, shown) = call(&app, "GET", "/api/v1/job-definitions/slow", "").await;
    assert_eq!(
        shown["tasks"]["tick"]["rateLimit"],
        json!({"perSecond": 1.0}),
        "{shown}"
    );

    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = call(&app, "POST", "/api/v1/jobs/slow/execute", "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["executionId"].as_str().unwrap().to_string());
    }
    // One starts at once; the other waits for its turn, about a second later.
    let mut waiting = None;
    for id in &ids {
        let exec = until(&app, id, "started or waiting", |t| {
            t["status"] == "COMPLETED" || t["blockedBy"] == "rateLimit"
        })
        .await;
        if exec["tasks"][0]["blockedBy"] == "rateLimit" {
            waiting = Some(exec);
        }
    }
    let waiting = waiting.expect("one run waits for its turn");
    let task = &waiting["tasks"][0];
    assert_eq!(task["status"], "QUEUED", "{waiting}");
    assert!(task["dueAt"].is_string(), "its turn is shown: {waiting}");
    for id in &ids {
        until(&app, id, "completed", |t| t["status"] == "COMPLETED").await;
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn a_rate_that_makes_no_sense_is_a_422_naming_the_field() {
    let engine = Engine::in_memory();
    engine.register("tick", |_| async { Ok(json!(null)) });
    let app = router(engine, HttpConfig::default());
    for (rate, field) in [
        (json!({"perSecond": 0}), "rateLimit.perSecond"),
        (json!({"perSecond": -1}), "rateLimit.perSecond"),
        (json!({"perSecond": 1, "burst": 0}), "rateLimit.burst"),
        (json!({"perSecond": 1, "key": "params."}), "rateLimit.key"),
        (json!({"burst": 2}), "perSecond"),
    ] {
        let definition = json!({"id": "bad", "tasks": {"a": {"id": "a", "functionName": "tick", "rateLimit": rate}}});
        let (status, body) = call(&app, "POST", "/api/v1/job-definitions", &definition.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains(field), "{field}: {body}");
    }
}

#[tokio::test]
async fn the_document_describes_the_limit() {
    let engine = Engine::in_memory();
    let app = router(engine, HttpConfig::default());
    let (status, doc) = call(&app, "GET", "/api/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Concurrency"]["properties"]["limit"]["minimum"],
        json!(1),
        "{}",
        schemas["Concurrency"]
    );
    assert!(schemas["Concurrency"]["properties"]["key"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("CEL")));
    let task = schemas["TaskDefinition"]["properties"]["concurrency"].to_string();
    assert!(task.contains("#/components/schemas/Concurrency"), "{task}");
    let rate = &schemas["RateLimit"]["properties"];
    assert_eq!(rate["perSecond"]["exclusiveMinimum"], json!(0), "{rate}");
    assert_eq!(rate["burst"]["minimum"], json!(1), "{rate}");
    let task = schemas["TaskDefinition"]["properties"]["rateLimit"].to_string();
    assert!(task.contains("#/components/schemas/RateLimit"), "{task}");
}
