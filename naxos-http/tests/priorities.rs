//! Priorities over HTTP, in-process on an in-memory engine: `?priority=` sets an execution's
//! priority and its status shows it, the definition's job-level `priority` is the default and is
//! shown with the definition, a bad `?priority=` is a 400 naming it (creating nothing), a job
//! `priority` above 9 is a 422 naming it, and the OpenAPI document describes both.

mod common;

use axum::http::StatusCode;
use axum::Router;
use naxos_core::serde_json::{self, json, Value};
use naxos_core::Engine;
use naxos_http::{router, HttpConfig};

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = common::call(app, method, uri, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"));
    (status, value)
}

/// An engine (not started: nothing needs to run) with definitions `plain` (no priority) and
/// `loud` (job-level priority 6).
async fn api() -> Router {
    let engine = Engine::in_memory();
    engine.register("f", |_ctx| async { Ok(json!(1)) });
    let app = router(engine, HttpConfig::default());
    for (id, priority) in [("plain", None), ("loud", Some(6))] {
        let mut def = json!({"id": id, "tasks": {"a": {"id": "a", "functionName": "f"}}});
        if let Some(p) = priority {
            def["priority"] = json!(p);
        }
        let (status, body) = call(&app, "POST", "/api/v1/job-definitions", &def.to_string()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    app
}

/// Executes `definition` with `query` and returns the execution's status document.
async fn executed(app: &Router, definition: &str, query: &str) -> Value {
    let (status, ack) = call(app, "POST", &format!("/api/v1/jobs/{definition}/execute{query}"), "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{query}: {ack}");
    let id = ack["executionId"].as_str().unwrap();
    let (status, exec) = call(app, "GET", &format!("/api/v1/jobs/{id}/status"), "").await;
    assert_eq!(status, StatusCode::OK, "{exec}");
    exec
}

#[tokio::test]
async fn the_query_sets_the_priority_and_the_definition_its_default() {
    let app = api().await;
    for (definition, query, expected) in [
        ("plain", "", 0),
        ("plain", "?priority=9", 9),
        ("loud", "", 6),
        ("loud", "?priority=0", 0),
        ("loud", "?priority=3&delayMs=60000", 3),
    ] {
        let exec = executed(&app, definition, query).await;
        assert_eq!(exec["priority"], json!(expected), "{definition}{query}: {exec}");
    }
    let (_, listed) = call(&app, "GET", "/api/v1/jobs?definitionId=loud", "").await;
    let mut levels: Vec<u64> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["priority"].as_u64().unwrap())
        .collect();
    levels.sort_unstable();
    assert_eq!(levels, [0, 3, 6], "the listing shows them too: {listed}");
    let (_, shown) = call(&app, "GET", "/api/v1/job-definitions/loud", "").await;
    assert_eq!(shown["priority"], json!(6), "{shown}");
    let (_, shown) = call(&app, "GET", "/api/v1/job-definitions/plain", "").await;
    assert!(shown.get("priority").is_none(), "no default, none shown: {shown}");
}

#[tokio::test]
async fn a_bad_priority_is_refused_naming_it() {
    let app = api().await;
    for bad in ["10", "-1", "high", "", "1.5"] {
        let (status, body) = call(&app, "POST", &format!("/api/v1/jobs/plain/execute?priority={bad}"), "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("priority `{bad}`")), "{bad}: {message}");
    }
    let (_, page) = call(&app, "GET", "/api/v1/jobs", "").await;
    assert_eq!(page["executions"], json!([]), "none of them created anything");

    let def = json!({"id": "shrill", "priority": 12, "tasks": {"a": {"id": "a", "functionName": "f"}}});
    let (status, body) = call(&app, "POST", "/api/v1/job-definitions", &def.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("`priority` is 12"), "{body}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_priority() {
    let app = api().await;
    let (status, doc) = call(&app, "GET", "/api/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    let params = doc["paths"]["/api/v1/jobs/{id}/execute"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let priority = params
        .iter()
        .find(|p| p["name"] == "priority")
        .expect("a priority parameter");
    assert_eq!(priority["in"], "query");
    assert_eq!(
        (&priority["schema"]["minimum"], &priority["schema"]["maximum"]),
        (&json!(0), &json!(9))
    );
    let schemas = &doc["components"]["schemas"];
    for schema in ["SummaryView", "JobDefinition", "DefinitionView"] {
        let field = &schemas[schema]["properties"]["priority"];
        assert_eq!(field["maximum"], json!(9), "{schema}: {field}");
    }
}
