//! Delayed executions over HTTP, in-process: `?delayMs=` and `?runAt=` on execute (202 with
//! `scheduledFor`, PENDING with nothing started until then, then run), the 400s that name the
//! bad parameter, an idempotency key, a cancel before the start, and the two parameters in the
//! OpenAPI document.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use naxos_core::model::MAX_WAIT_MS;
use naxos_core::serde_json::{json, Value};
use naxos_core::Engine;
use naxos_http::{router, HttpConfig};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(20);

const CHAIN: &str = r#"{ "id": "chain", "tasks": {
    "a": {"id": "a", "functionName": "step"},
    "b": {"id": "b", "functionName": "step"} },
  "graph": { "b": ["a"] } }"#;

async fn call(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn api() -> (Engine, Router) {
    let engine = Engine::in_memory();
    engine.register("step", |ctx| async move { Ok(json!(ctx.task_id())) });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());
    let request = Request::post("/api/v1/job-definitions")
        .header("content-type", "application/json")
        .body(Body::from(CHAIN))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    (engine, app)
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

/// Polls the execution until it is finished.
async fn finished(app: &Router, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, exec) = call(app, "GET", &format!("/api/v1/jobs/{id}/status"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        if matches!(exec["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED")) {
            return exec;
        }
        assert!(started.elapsed() < WAIT, "not finished in time: {exec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_execution_waits_pending_with_scheduled_for_then_runs() {
    let (engine, app) = api().await;
    let before = Utc::now();
    let (status, ack) = call(&app, "POST", "/api/v1/jobs/chain/execute?delayMs=1000", &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(ack["status"], "PENDING");
    let at = time(&ack["scheduledFor"]);
    assert!(at >= before + chrono::Duration::milliseconds(1000), "{ack}");
    assert!(ack["message"]
        .as_str()
        .unwrap()
        .starts_with("Job execution scheduled for "));
    let id = ack["executionId"].as_str().unwrap().to_string();

    let (_, exec) = call(&app, "GET", &format!("/api/v1/jobs/{id}/status"), &[]).await;
    if time(&exec["updatedAt"]) < at && Utc::now() < at {
        // Read before its time: waiting, nothing started.
        assert_eq!(exec["status"], "PENDING", "{exec}");
        assert_eq!(time(&exec["scheduledFor"]), at);
        assert!(exec["startTime"].is_null(), "{exec}");
        assert!(exec["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "PENDING"));
    }
    let (_, page) = call(&app, "GET", "/api/v1/jobs?definitionId=chain", &[]).await;
    assert_eq!(
        time(&page["executions"][0]["scheduledFor"]),
        at,
        "listings carry it too"
    );

    let exec = finished(&app, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    assert!(time(&exec["startTime"]) >= at, "{exec}");
    assert_eq!(time(&exec["scheduledFor"]), at, "kept once started");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_at_an_idempotency_key_and_a_cancel_before_the_start() {
    let (engine, app) = api().await;
    // A time already past starts at once: no `scheduledFor`.
    let past = (Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let uri = format!("/api/v1/jobs/chain/execute?runAt={}", past.replace('+', "%2B"));
    let (status, ack) = call(&app, "POST", &uri, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert!(ack.get("scheduledFor").is_none(), "{ack}");
    let exec = finished(&app, ack["executionId"].as_str().unwrap()).await;
    assert_eq!(exec["status"], "COMPLETED");
    assert!(exec.get("scheduledFor").is_none(), "{exec}");

    // An hour ahead, twice with one key: one execution; cancelled, it never starts.
    let at = "2099-01-01T09:00:00Z";
    let uri = format!("/api/v1/jobs/chain/execute?runAt={at}");
    let key = [("Idempotency-Key", "later-once")];
    let (status, first) = call(&app, "POST", &uri, &key).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "2099 is past the longest delay: {first}"
    );
    let at = (Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let uri = format!("/api/v1/jobs/chain/execute?runAt={at}");
    let (status, first) = call(&app, "POST", &uri, &key).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(time(&first["scheduledFor"]), time(&json!(at)));
    let (status, again) = call(&app, "POST", &uri, &key).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["executionId"], first["executionId"]);
    assert_eq!(again["status"], "PENDING");
    let id = first["executionId"].as_str().unwrap();
    let (status, cancelled) = call(&app, "POST", &format!("/api/v1/jobs/{id}/cancel"), &[]).await;
    assert_eq!((status, &cancelled["status"]), (StatusCode::OK, &json!("CANCELLED")));
    let (_, exec) = call(&app, "GET", &format!("/api/v1/jobs/{id}/status"), &[]).await;
    assert_eq!(exec["status"], "CANCELLED");
    assert!(exec["startTime"].is_null(), "never started: {exec}");
    assert!(exec["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "CANCELLED" && t["attempts"] == 0));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_delay_parameters_are_400s_that_name_them() {
    let (engine, app) = api().await;
    let too_far = (MAX_WAIT_MS + 1).to_string();
    let cases = [
        ("delayMs=-5", "delayMs `-5`"),
        ("delayMs=soon", "delayMs `soon`"),
        ("delayMs=", "delayMs ``"),
        ("delayMs=1.5", "delayMs `1.5`"),
        (&format!("delayMs={too_far}"), "delayMs is too far ahead"),
        ("runAt=tomorrow", "runAt `tomorrow`"),
        ("runAt=2030-01-01", "runAt `2030-01-01`"),
        (
            "delayMs=10&runAt=2030-01-01T00:00:00Z",
            "give delayMs or runAt, not both",
        ),
    ];
    for (query, named) in cases {
        let uri = format!("/api/v1/jobs/chain/execute?{query}");
        let (status, body) = call(&app, "POST", &uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
    let (_, page) = call(&app, "GET", "/api/v1/jobs", &[]).await;
    assert_eq!(page["executions"], json!([]), "none of them created anything");
    let (status, ack) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/chain/execute?delayMs={MAX_WAIT_MS}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "the longest delay is taken: {ack}");
    engine.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_both_parameters() {
    let (engine, app) = api().await;
    let (_, doc) = call(&app, "GET", "/api/v1/openapi.json", &[]).await;
    let params = doc["paths"]["/api/v1/jobs/{id}/execute"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}: {params:?}"))
    };
    let delay = param("delayMs");
    assert_eq!(delay["in"], "query");
    assert_eq!(
        (delay["schema"]["minimum"].as_u64(), delay["schema"]["maximum"].as_u64()),
        (Some(0), Some(MAX_WAIT_MS)),
        "{delay}"
    );
    assert!(delay["description"].as_str().unwrap().contains("scheduledFor"));
    let run_at = param("runAt");
    assert_eq!(run_at["schema"]["format"], "date-time", "{run_at}");
    let summary = &doc["components"]["schemas"]["SummaryView"]["properties"];
    assert_eq!(summary["scheduledFor"]["format"], "date-time");
    engine.shutdown().await;
}
