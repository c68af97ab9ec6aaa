//! Pausing and resuming a definition over HTTP, in-process on a started in-memory engine:
//! `POST /api/v1/job-definitions/{id}/pause` · `/resume` answer 200 `{id, paused}` (again
//! too) and 404 for an unknown definition, the listing says `paused`, a task (and a fan-out's
//! instance) the pause holds back is QUEUED with `blockedBy: "paused"` and its function is
//! not called, and after the resume everything completes, each function called once.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use naxos_core::serde_json::{self, json, Value};
use naxos_core::Engine;
use naxos_http::{router, HttpConfig};

const WAIT: Duration = Duration::from_secs(20);

/// `first` then `second`, both calling `step`.
const PAIR: &str = r#"{ "id": "pair", "tasks": {
    "first": {"id": "first", "functionName": "step"},
    "second": {"id": "second", "functionName": "step"} },
  "graph": { "second": ["first"] } }"#;

/// `each` runs `step` once per item of `params.items`.
const FAN: &str = r#"{ "id": "fan", "tasks": {
    "each": {"id": "each", "functionName": "step", "forEach": "params.items"} } }"#;

struct Api {
    engine: Engine,
    app: Router,
    /// Calls of `step`, by (execution id, task id).
    calls: Arc<Mutex<BTreeMap<(String, String), u32>>>,
}

impl Api {
    async fn new() -> Self {
        let engine = Engine::in_memory();
        let calls: Arc<Mutex<BTreeMap<(String, String), u32>>> = Arc::default();
        let seen = calls.clone();
        engine.register("step", move |ctx| {
            let key = (ctx.execution_id().to_string(), ctx.task_id().to_string());
            *seen.lock().unwrap().entry(key).or_default() += 1;
            async move { Ok(json!("done")) }
        });
        engine.start().unwrap();
        let app = router(engine.clone(), HttpConfig::default());
        let api = Self { engine, app, calls };
        for definition in [PAIR, FAN] {
            let (status, body) = api.call("POST", "/api/v1/job-definitions", definition).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        api
    }

    async fn call(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let (status, text) = common::call(&self.app, method, uri, body).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"));
        (status, value)
    }

    async fn execute(&self, definition: &str, params: Value) -> String {
        let uri = format!("/api/v1/jobs/{definition}/execute");
        let (status, body) = self.call("POST", &uri, &params.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["executionId"].as_str().unwrap().to_string()
    }

    /// Polls the status of `id` until `ready` holds, within [`WAIT`].
    async fn until(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, exec) = self.call("GET", &format!("/api/v1/jobs/{id}/status"), "").await;
            assert_eq!(status, StatusCode::OK, "{exec}");
            if ready(&exec) {
                return exec;
            }
            assert!(started.elapsed() < WAIT, "{what} within {WAIT:?}: {exec}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `paused` of `id` in the listing.
    async fn listed_paused(&self, id: &str) -> Value {
        let (status, list) = self.call("GET", "/api/v1/job-definitions", "").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let line = list.as_array().unwrap().iter().find(|d| d["id"] == id);
        line.unwrap_or_else(|| panic!("{id} listed: {list}"))["paused"].clone()
    }

    fn calls_of(&self, execution: &str) -> BTreeMap<String, u32> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|((e, _), _)| e == execution)
            .map(|((_, task), n)| (task.clone(), *n))
            .collect()
    }
}

fn task<'a>(exec: &'a Value, id: &str) -> &'a Value {
    let tasks = exec["tasks"].as_array().unwrap();
    tasks
        .iter()
        .find(|t| t["taskId"] == id)
        .unwrap_or_else(|| panic!("no task {id}: {exec}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_over_http() {
    let api = Api::new().await;
    assert_eq!(api.listed_paused("pair").await, false, "not paused at first");

    // Paused, and again: 200 both times, the listing says so.
    for _ in 0..2 {
        let (status, body) = api.call("POST", "/api/v1/job-definitions/pair/pause", "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"id": "pair", "paused": true}));
    }
    assert_eq!(api.listed_paused("pair").await, true);
    assert_eq!(api.listed_paused("fan").await, false, "only the definition paused");

    // Each execution's first task waits QUEUED, blocked; nothing runs.
    let ids = [
        api.execute("pair", json!({})).await,
        api.execute("pair", json!({})).await,
    ];
    for id in &ids {
        let exec = api
            .until(id, "the first task blocked", |e| {
                task(e, "first")["blockedBy"] == "paused"
            })
            .await;
        assert_eq!(exec["status"], "PENDING", "{exec}");
        assert_eq!(task(&exec, "first")["status"], "QUEUED", "{exec}");
        assert_eq!(task(&exec, "first")["attempts"], 0, "{exec}");
        assert_eq!(task(&exec, "second")["status"], "PENDING", "{exec}");
        assert!(
            task(&exec, "second").get("blockedBy").is_none(),
            "absent when not blocked: {exec}"
        );
        assert!(api.calls_of(id).is_empty(), "nothing ran: {:?}", api.calls_of(id));
    }

    // Resumed, and again: both complete, each task run once.
    for _ in 0..2 {
        let (status, body) = api.call("POST", "/api/v1/job-definitions/pair/resume", "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"id": "pair", "paused": false}));
    }
    assert_eq!(api.listed_paused("pair").await, false);
    for id in &ids {
        let exec = api.until(id, "completed", |e| e["status"] == "COMPLETED").await;
        for t in ["first", "second"] {
            assert!(task(&exec, t).get("blockedBy").is_none(), "{exec}");
            assert_eq!(task(&exec, t)["attempts"], 1, "{exec}");
        }
        let once: BTreeMap<String, u32> = [("first".into(), 1), ("second".into(), 1)].into();
        assert_eq!(api.calls_of(id), once);
    }

    // 404 in the API's error shape for an unknown definition, both ways.
    for action in ["pause", "resume"] {
        let uri = format!("/api/v1/job-definitions/nowhere/{action}");
        let (status, body) = api.call("POST", &uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("nowhere"), "{body}");
    }
    api.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_outs_instances_show_the_block() {
    let api = Api::new().await;
    let (status, body) = api.call("POST", "/api/v1/job-definitions/fan/pause", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = api.execute("fan", json!({"items": [1, 2]})).await;
    let exec = api
        .until(&id, "both instances blocked", |e| {
            let instances = task(e, "each")["instances"].as_array().cloned().unwrap_or_default();
            instances.len() == 2 && instances.iter().all(|i| i["blockedBy"] == "paused")
        })
        .await;
    for instance in task(&exec, "each")["instances"].as_array().unwrap() {
        assert_eq!(instance["status"], "QUEUED", "{exec}");
    }
    assert!(api.calls_of(&id).is_empty(), "no instance ran");

    let (status, body) = api.call("POST", "/api/v1/job-definitions/fan/resume", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let exec = api.until(&id, "completed", |e| e["status"] == "COMPLETED").await;
    for instance in task(&exec, "each")["instances"].as_array().unwrap() {
        assert!(instance.get("blockedBy").is_none(), "{exec}");
    }
    let once: BTreeMap<String, u32> = [("each[0]".into(), 1), ("each[1]".into(), 1)].into();
    assert_eq!(api.calls_of(&id), once);
    api.engine.shutdown().await;
}

#[tokio::test]
async fn the_document_has_the_routes_and_blocked_by() {
    let api = Api::new().await;
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    for (path, operation) in [
        ("/api/v1/job-definitions/{id}/pause", "pauseDefinition"),
        ("/api/v1/job-definitions/{id}/resume", "resumeDefinition"),
    ] {
        let op = &doc["paths"][path]["post"];
        assert_eq!(op["operationId"], operation, "{path}");
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/DefinitionPaused"
        );
        assert!(op["responses"]["404"].is_object(), "{path} documents its 404");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["BlockedBy"]["enum"],
        json!(["paused", "concurrency", "rateLimit"])
    );
    assert_eq!(schemas["DefinitionPaused"]["required"], json!(["id", "paused"]));
    for view in ["TaskView", "InstanceView"] {
        let blocked = schemas[view]["properties"]["blockedBy"].to_string();
        assert!(blocked.contains("#/components/schemas/BlockedBy"), "{view}: {blocked}");
    }
    assert_eq!(schemas["DefinitionSummary"]["properties"]["paused"]["type"], "boolean");
    api.engine.shutdown().await;
}
