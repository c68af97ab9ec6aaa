//! `POST /api/v1/jobs/{definitionId}/execute-batch`, in-process on a started in-memory engine:
//! the executions are created in order with their own params and run to the end; the query
//! applies to every item; an `Idempotency-Key` keys item i as `<key>/<i>` (a repeat creates
//! nothing, a longer repeat only the new items); a bad body or item is a 400 that names what is
//! wrong and creates nothing.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use naxos_core::serde_json::{self, json, Value};
use naxos_core::{Engine, ExecutionId, ExecutionStatus};
use naxos_http::{router, HttpConfig};
use tower::ServiceExt;

/// Posts `body` to `uri` with an `Idempotency-Key` when given; the status and the JSON answer.
async fn post(app: &Router, uri: &str, key: Option<&str>, body: String) -> (StatusCode, Value) {
    let mut req = Request::post(uri);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{uri}: not JSON ({e})"));
    (status, value)
}

/// A started engine whose definition `echo` returns its params' `n`, and its router.
async fn api() -> (Engine, Router) {
    let engine = Engine::in_memory();
    engine.register("echo", |ctx| async move { Ok(json!(ctx.param::<u64>("n"))) });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());
    let def = json!({"id": "echo", "tasks": {"a": {"id": "a", "functionName": "echo"}}});
    let (status, body) = common::call(&app, "POST", "/api/v1/job-definitions", &def.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (engine, app)
}

fn ids(ack: &Value) -> Vec<ExecutionId> {
    ack["executionIds"]
        .as_array()
        .unwrap_or_else(|| panic!("executionIds: {ack}"))
        .iter()
        .map(|id| id.as_str().unwrap().parse().unwrap())
        .collect()
}

/// How many executions the engine holds of `echo`.
async fn count(engine: &Engine) -> usize {
    let query = naxos_core::backend::ExecutionQuery {
        definition_id: Some("echo".into()),
        ..Default::default()
    };
    engine.executions(&query).await.unwrap().executions.len()
}

#[tokio::test]
async fn a_batch_runs_each_item_with_its_params_in_order() {
    let (engine, app) = api().await;
    let params: Vec<Value> = (0..50).map(|n| json!({ "n": n })).collect();
    let (status, ack) = post(&app, "/api/v1/jobs/echo/execute-batch", None, json!(params).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(ack["created"], json!(50), "{ack}");
    let ids = ids(&ack);
    assert_eq!(ids.len(), 50);
    for (n, id) in ids.iter().enumerate() {
        let done = engine.wait_for_timeout(*id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert_eq!(done.data, json!({ "n": n }), "item {n} ran with its own params");
        assert_eq!(done.task("a").unwrap().output, Some(json!(n)));
    }
}

#[tokio::test]
async fn the_query_applies_to_every_item() {
    let (engine, app) = api().await;
    let body = json!([{ "n": 1 }, null]).to_string();
    let (status, ack) = post(
        &app,
        "/api/v1/jobs/echo/execute-batch?priority=7&delayMs=600000",
        None,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert!(ack["message"].as_str().unwrap().contains("scheduled"), "{ack}");
    for id in ids(&ack) {
        let exec = engine.execution(id).await.unwrap();
        assert_eq!(exec.priority.get(), 7);
        assert!(exec.scheduled_for.is_some(), "delayed as the query says");
        assert_eq!(exec.status, ExecutionStatus::Pending);
    }
}

#[tokio::test]
async fn an_idempotency_key_keys_each_item() {
    let (engine, app) = api().await;
    let uri = "/api/v1/jobs/echo/execute-batch";
    let three = json!([{ "n": 0 }, { "n": 1 }, { "n": 2 }]).to_string();
    let (status, first) = post(&app, uri, Some("order-7"), three.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = post(&app, uri, Some("order-7"), three).await;
    assert_eq!(status, StatusCode::OK, "a repeat creates nothing: {again}");
    assert_eq!((ids(&again), again["created"].clone()), (ids(&first), json!(0)));
    // A batch cut off after three items, sent again whole: only the fourth is new.
    let four = json!([{ "n": 0 }, { "n": 1 }, { "n": 2 }, { "n": 3 }]).to_string();
    let (status, longer) = post(&app, uri, Some("order-7"), four).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{longer}");
    assert_eq!(longer["created"], json!(1), "{longer}");
    assert_eq!(ids(&longer)[..3], ids(&first)[..]);
    assert_eq!(count(&engine).await, 4);
    // Item i is keyed `<key>/<i>`: the single execute with that key finds it.
    let (status, single) = post(&app, "/api/v1/jobs/echo/execute", Some("order-7/3"), "{}".into()).await;
    assert_eq!(status, StatusCode::OK, "{single}");
    assert_eq!(single["executionId"], json!(ids(&longer)[3]));
}

#[tokio::test]
async fn a_bad_body_or_item_is_refused_whole_naming_it() {
    let (engine, app) = api().await;
    let uri = "/api/v1/jobs/echo/execute-batch";
    let too_many = json!(vec![json!({}); naxos_core::MAX_BATCH + 1]).to_string();
    for (body, says) in [
        (String::new(), "JSON array of 1 to 1000"),
        ("{}".to_string(), "JSON array of 1 to 1000"),
        ("[]".to_string(), "not 0"),
        ("[{}, ".to_string(), "not valid JSON"),
        (too_many, "not 1001"),
        (
            json!([{}, {}, [1, 2]]).to_string(),
            "item 2: params must be a JSON object",
        ),
        (json!([{}, {"s": "a\u{0}b"}]).to_string(), "item 1:"),
    ] {
        let (status, answer) = post(&app, uri, None, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:.40}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body:.40}: {message}");
    }
    let (status, answer) = post(&app, &format!("{uri}?priority=10"), None, "[{}]".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("priority"));
    let (status, answer) = post(&app, "/api/v1/jobs/nope/execute-batch", None, "[{}]".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(count(&engine).await, 0, "nothing of a refused batch was created");
}
