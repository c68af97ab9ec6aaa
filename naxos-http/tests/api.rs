//! Every route in-process (no socket), the happy paths and each error status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, ExecutionId, TaskError};
use naxos_http::{router, HttpConfig};
use tower::ServiceExt;

const SAMPLE_2: &str = r#"{ "id": "sample-2", "name": "Parallel Task Execution",
  "tasks": { "task1": {"id":"task1","name":"Initial Task","maxRetry":3,"functionName":"Task1"},
             "task2": {"id":"task2","name":"Parallel Task A","maxRetry":2,"functionName":"Task2"},
             "task3": {"id":"task3","name":"Parallel Task B","maxRetry":2,"functionName":"Task3"},
             "task4": {"id":"task4","name":"Final Task","maxRetry":1,"functionName":"Task4"} },
  "graph": { "task1": [], "task2": ["task1"], "task3": ["task1"], "task4": ["task2","task3"] } }"#;

const WAIT: Duration = Duration::from_secs(20);

struct Api {
    engine: Engine,
    app: Router,
    switch: Arc<AtomicBool>,
}

impl Api {
    fn new(config: HttpConfig) -> Self {
        let engine = Engine::in_memory();
        for name in ["Task1", "Task2", "Task3", "Task4"] {
            engine.register(name, move |ctx| async move {
                Ok(json!({ "task": ctx.task_id(), "fn": name }))
            });
        }
        engine.register("traced", |ctx| async move {
            Ok(json!({ "traceparent": ctx.traceparent().map(|t| t.to_string()) }))
        });
        engine.register("wait", |ctx| async move {
            ctx.cancelled().await;
            Err::<Value, _>(TaskError::fatal("cancelled"))
        });
        let switch = Arc::new(AtomicBool::new(false));
        let s = switch.clone();
        engine.register("switch", move |_ctx| {
            let on = s.load(Ordering::SeqCst);
            async move {
                if on {
                    Ok(json!("on"))
                } else {
                    Err(TaskError::fatal("switched off"))
                }
            }
        });
        engine.start().unwrap();
        let app = router(engine.clone(), config);
        Self { engine, app, switch }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {bytes:?}"))
        };
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None, &[]).await
    }

    async fn post(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        self.call("POST", uri, Some(body), &[]).await
    }

    async fn define(&self, json: &str) {
        let (status, body) = self.post("/api/v1/job-definitions", json).await;
        assert!(status.is_success(), "{status} {body}");
    }

    async fn run(&self, definition: &str, params: &str) -> ExecutionId {
        let (status, body) = self.post(&format!("/api/v1/jobs/{definition}/execute"), params).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["executionId"].as_str().unwrap().parse().unwrap()
    }

    async fn finish(&self, id: ExecutionId) {
        self.engine.wait_for_timeout(id, WAIT).await.unwrap();
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

fn single(id: &str, function: &str) -> String {
    format!(r#"{{"id":"{id}","tasks":{{"t":{{"id":"t","functionName":"{function}"}}}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_created_versioned_listed_and_read() {
    let api = Api::new(HttpConfig::default());
    let (status, body) = api.post("/api/v1/job-definitions", SAMPLE_2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], "sample-2");
    assert_eq!(body["version"], 1);
    assert_eq!(body["created"], true);
    let (status, body) = api.post("/api/v1/job-definitions", SAMPLE_2).await;
    assert_eq!(
        (status, body["version"].clone(), body["created"].clone()),
        (StatusCode::OK, json!(1), json!(false))
    );
    let changed = SAMPLE_2.replace("Parallel Task Execution", "Renamed");
    let (status, body) = api.post("/api/v1/job-definitions", &changed).await;
    assert_eq!((status, body["version"].clone()), (StatusCode::CREATED, json!(2)));

    let (status, list) = api.get("/api/v1/job-definitions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["id"], "sample-2");
    assert_eq!(list[0]["latestVersion"], 2);
    assert_eq!(list[0]["taskCount"], 4);

    let (_, latest) = api.get("/api/v1/job-definitions/sample-2").await;
    assert_eq!(
        (latest["version"].clone(), latest["name"].clone()),
        (json!(2), json!("Renamed"))
    );
    assert_eq!(latest["graph"]["task4"], json!(["task2", "task3"]));
    assert_eq!(latest["tasks"]["task1"]["maxRetry"], 3);
    let (_, first) = api.get("/api/v1/job-definitions/sample-2?version=1").await;
    assert_eq!(first["name"], "Parallel Task Execution");
    let (status, versions) = api.get("/api/v1/job-definitions/sample-2/versions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions.as_array().unwrap().len(), 2);

    let (status, body) = api.get("/api/v1/job-definitions/sample-2?version=0").await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (status, body) = api.get("/api/v1/job-definitions/sample-2?version=9").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api.get("/api/v1/job-definitions/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    let (status, _) = api.get("/api/v1/job-definitions/nope/versions").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_definitions_get_400_422_and_413() {
    let api = Api::new(HttpConfig {
        max_body_bytes: 2_048,
        ..HttpConfig::default()
    });
    let (status, body) = api.post("/api/v1/job-definitions", "{\"id\": ").await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));

    let (status, body) = api
        .post("/api/v1/job-definitions", r#"{"id":"x","tasks":{},"retries":3}"#)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition")
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("retries"), "{body}");

    let (status, body) = api
        .post(
            "/api/v1/job-definitions",
            r#"{"id":"x","tasks":{"t":{"id":"t","functionName":7}}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks.t.functionName"),
        "{body}"
    );

    let cyclic = r#"{"id":"cyc","tasks":{"a":{"id":"a","functionName":"Task1"},"b":{"id":"b","functionName":"Nope"}},
                    "graph":{"a":["b"],"b":["a"]}}"#;
    let (status, body) = api.post("/api/v1/job-definitions", cyclic).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition")
    );
    let problems = body["error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{body}");
    assert_eq!(problems[0]["code"], "unregistered_function");
    assert_eq!(problems[0]["function"], "Nope");
    assert_eq!(problems[1]["code"], "cycle");
    assert_eq!(problems[1]["tasks"], json!(["a", "b"]));
    assert!(problems[1]["message"].as_str().unwrap().contains("cycle"));

    let nul = r#"{"id":"nul","name":"a\u0000b","tasks":{"t":{"id":"t","functionName":"Task1"}}}"#;
    let (status, body) = api.post("/api/v1/job-definitions", nul).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["problems"][0]["code"], "nul_character");
    assert_eq!(body["error"]["problems"][0]["field"], "name");

    let big = format!(r#"{{"id":"big","description":"{}","tasks":{{}}}}"#, "x".repeat(4_000));
    let (status, body) = api.post("/api/v1/job-definitions", &big).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("2048"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_and_status_show_every_task() {
    let api = Api::new(HttpConfig::default());
    api.define(SAMPLE_2).await;
    let (status, body) = api.post("/api/v1/jobs/sample-2/execute", r#"{"user":"ada"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["message"], "Job execution started");
    let id: ExecutionId = body["executionId"].as_str().unwrap().parse().unwrap();
    api.finish(id).await;
    let (status, exec) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exec["id"], id.to_string());
    assert_eq!(exec["definitionId"], "sample-2");
    assert_eq!(exec["definitionVersion"], 1);
    assert_eq!(exec["status"], "COMPLETED");
    assert_eq!(exec["data"], json!({"user": "ada"}));
    assert_eq!(exec["error"], Value::Null);
    for key in ["startTime", "endTime", "createdAt", "updatedAt"] {
        assert!(exec[key].is_string(), "{key} in {exec}");
    }
    let tasks = exec["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    let t4 = tasks.iter().find(|t| t["taskId"] == "task4").unwrap();
    assert_eq!(t4["name"], "Final Task");
    assert_eq!(t4["functionName"], "Task4");
    assert_eq!(t4["status"], "COMPLETED");
    assert_eq!((t4["attempts"].clone(), t4["retryCount"].clone()), (json!(1), json!(0)));
    assert_eq!(t4["output"], json!({"task": "task4", "fn": "Task4"}));
    assert!(t4["startTime"].is_string() && t4["endTime"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_rejects_bad_input_and_dedups_by_idempotency_key() {
    let api = Api::new(HttpConfig::default());
    api.define(SAMPLE_2).await;
    let (status, body) = api.post("/api/v1/jobs/unknown/execute", "{}").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api.post("/api/v1/jobs/sample-2/execute", "[1,2]").await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (status, body) = api.post("/api/v1/jobs/sample-2/execute", "{nope").await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let (status, _) = api.post("/api/v1/jobs/sample-2/execute?version=x", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.post("/api/v1/jobs/sample-2/execute?version=5", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .post("/api/v1/jobs/sample-2/execute", r#"{"note": ["ok", "a\u0000b"]}"#)
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("U+0000") && message.contains("$.note[1]"), "{body}");

    let empty = api.run("sample-2", "").await;
    api.finish(empty).await;
    let (_, exec) = api.get(&format!("/api/v1/jobs/{empty}/status")).await;
    assert_eq!(exec["data"], json!({}));

    let headers = [("Idempotency-Key", "order-42")];
    let (s1, b1) = api
        .call("POST", "/api/v1/jobs/sample-2/execute", Some("{}"), &headers)
        .await;
    let (s2, b2) = api
        .call("POST", "/api/v1/jobs/sample-2/execute", Some("{}"), &headers)
        .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(b1["executionId"], b2["executionId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_filters_and_pages_with_a_cursor() {
    let api = Api::new(HttpConfig::default());
    api.define(SAMPLE_2).await;
    api.define(&single("off", "switch")).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.run("sample-2", "{}").await);
    }
    let failed = api.run("off", "{}").await;
    for id in ids.iter().chain([&failed]) {
        api.finish(*id).await;
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/jobs?definitionId=sample-2&limit=2".to_string();
    loop {
        let (status, page) = api.get(&uri).await;
        assert_eq!(status, StatusCode::OK);
        for e in page["executions"].as_array().unwrap() {
            assert_eq!(e["status"], "COMPLETED");
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/v1/jobs?definitionId=sample-2&limit=2&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = ids.iter().rev().map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "newest first, each once");
    let (_, page) = api.get("/api/v1/jobs?status=failed").await;
    let only: Vec<&str> = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(only, vec![failed.to_string()]);
    for bad in ["status=DONE", "limit=0", "limit=abc", "limit=5000", "cursor=xyz"] {
        let (status, body) = api.get(&format!("/api/v1/jobs?{bad}")).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_unknown_executions_is_404() {
    let api = Api::new(HttpConfig::default());
    for id in ["not-a-uuid".to_string(), naxos_core::uuid::Uuid::now_v7().to_string()] {
        let (status, body) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, _) = api.post(&format!("/api/v1/jobs/{id}/cancel"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_conflict() {
    let api = Api::new(HttpConfig::default());
    api.define(&single("waits", "wait")).await;
    let id = api.run("waits", "{}").await;
    let (status, body) = api.post(&format!("/api/v1/jobs/{id}/cancel"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "CANCELLED");
    let (status, body) = api.post(&format!("/api/v1/jobs/{id}/cancel"), "").await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "conflict"));
    let (_, exec) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
    assert_eq!(exec["status"], "CANCELLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reruns_the_failed_part_and_refuses_otherwise() {
    let api = Api::new(HttpConfig::default());
    api.define(&single("off", "switch")).await;
    let id = api.run("off", "{}").await;
    api.finish(id).await;
    let (_, exec) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
    assert_eq!(exec["status"], "FAILED");
    assert!(exec["error"].as_str().unwrap().contains("switched off"));
    api.switch.store(true, Ordering::SeqCst);
    let (status, body) = api.post(&format!("/api/v1/jobs/{id}/retry"), "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    api.finish(id).await;
    let (_, exec) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
    assert_eq!(exec["status"], "COMPLETED");
    assert_eq!(exec["tasks"][0]["attempts"], 2);
    let (status, body) = api.post(&format!("/api/v1/jobs/{id}/retry"), "").await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "conflict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_status_and_health() {
    let api = Api::new(HttpConfig::default());
    api.define(SAMPLE_2).await;
    api.define(&single("off", "switch")).await;
    api.define(&single("waits", "wait")).await;
    let done = api.run("sample-2", "{}").await;
    let failed = api.run("off", "{}").await;
    api.finish(done).await;
    api.finish(failed).await;
    let running = api.run("waits", "{}").await;
    api.engine.sweep_once().await.unwrap();
    let (status, sys) = api.get("/api/v1/system/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sys["executedJobs"], 1);
    assert_eq!(sys["failedJobs"], 1);
    assert_eq!(sys["activeCount"], 1);
    assert_eq!(sys["activeJobs"][0]["id"], running.to_string());
    assert!(sys["queuedCount"].is_u64() && sys["updatedAt"].is_string());
    let nodes = sys["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["id"], api.engine.config().node_id);
    assert_eq!(nodes[0]["alive"], true);
    let (status, health) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["checks"], json!({"store": "ok", "queue": "ok"}));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let api = Api::new(HttpConfig::default());
    let (status, body) = api.get("/api/v2/nothing").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api.get("/metrics").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "no recorder configured"
    );
    let (status, body) = api.call("DELETE", "/api/v1/jobs", None, &[]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // Query strings and paths the extractors refuse answer in the same JSON shape.
    for uri in [
        "/api/v1/jobs?limit=1&limit=2",
        "/api/v1/jobs/%FF/status",
        "/api/v1/job-definitions/%FF",
        "/api/v1/job-definitions/a%00b",
        "/api/v1/schedules/a%00b",
        "/api/v1/job-definitions/x?version=1&version=2",
    ] {
        let (status, body) = api.get(uri).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{uri}"
        );
    }
}

/// The `traceparent` header of the execute request reaches every task (as the attempt's own
/// span in the caller's trace) and the status; an invalid one is a 400 naming the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traceparent_header_reaches_every_task() {
    let api = Api::new(HttpConfig::default());
    api.define(
        r#"{"id":"traced","tasks":{"a":{"id":"a","functionName":"traced"},"b":{"id":"b","functionName":"traced"}},
            "graph":{"a":[],"b":["a"]}}"#,
    )
    .await;
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let uri = "/api/v1/jobs/traced/execute";
    let (status, body) = api.call("POST", uri, Some("{}"), &[("traceparent", sent)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id: ExecutionId = body["executionId"].as_str().unwrap().parse().unwrap();
    api.finish(id).await;
    let (_, exec) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
    assert_eq!(exec["status"], "COMPLETED");
    assert_eq!(
        exec["traceparent"], sent,
        "the status shows what the execution was submitted with"
    );
    let mut parents = Vec::new();
    for task in exec["tasks"].as_array().unwrap() {
        let got = task["output"]["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace context reached {task}"));
        let fields: Vec<&str> = got.split('-').collect();
        assert_eq!(
            fields[..2],
            ["00", "4bf92f3577b34da6a3ce929d0e0e4736"],
            "the caller's trace: {got}"
        );
        assert_eq!(fields[3], "01", "the caller's flags: {got}");
        assert_ne!(fields[2], "00f067aa0ba902b7", "the task's own span: {got}");
        parents.push(fields[2].to_string());
    }
    assert_eq!(parents.len(), 2);
    assert_ne!(parents[0], parents[1]);

    let (status, body) = api.call("POST", uri, Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id: ExecutionId = body["executionId"].as_str().unwrap().parse().unwrap();
    api.finish(id).await;
    let (_, exec) = api.get(&format!("/api/v1/jobs/{id}/status")).await;
    assert!(exec.get("traceparent").is_none(), "{exec}");
    assert_eq!(exec["tasks"][0]["output"], json!({ "traceparent": null }));

    let invalid = [
        vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
        vec![("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")],
        vec![("traceparent", "not-a-trace")],
        vec![("traceparent", sent), ("traceparent", sent)],
    ];
    for headers in invalid {
        let (status, body) = api.call("POST", uri, Some("{}"), &headers).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{headers:?}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("the traceparent header"), "{message}");
    }
    let (_, page) = api.get("/api/v1/jobs?definitionId=traced").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 2, "nothing ran for a 400");

    let (_, doc) = api.get("/api/v1/openapi.json").await;
    let params = doc["paths"]["/api/v1/jobs/{id}/execute"]["post"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        params.iter().any(|p| p["name"] == "traceparent" && p["in"] == "header"),
        "the header is documented"
    );
}

#[tokio::test]
async fn with_a_token_the_api_needs_it_and_health_stays_open() {
    let api = Api::new(HttpConfig {
        api_token: Some("s3cret-token-0123456789".into()),
        ..HttpConfig::default()
    });
    let (status, body) = api.get("/api/v1/job-definitions").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let wrong = [("Authorization", "Bearer s3cret-token-0123456788")];
    let (status, _) = api.call("GET", "/api/v1/job-definitions", None, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let basic = [("Authorization", "Basic czNjcmV0")];
    let (status, _) = api
        .call("POST", "/api/v1/jobs/sample-2/execute", Some("{}"), &basic)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "nothing runs without the token");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} s3cret-token-0123456789");
        let (status, _) = api
            .call("GET", "/api/v1/job-definitions", None, &[("Authorization", &value)])
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the scheme `{scheme}` (RFC 7235: any letter case)"
        );
    }
    let (status, _) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK, "/health stays open");
}

/// The backup route: 404 until a directory is configured, then 501 on a Store without an
/// online copy (the in-memory one), naming the operation. (The LMDB store's copy over this
/// route: tests/embedded.rs at the workspace root.)
#[tokio::test]
async fn backups_answer_404_unless_enabled_and_501_where_the_store_has_none() {
    let api = Api::new(HttpConfig::default());
    let (status, body) = api.post("/api/v1/system/backup", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{body}"
    );
    let api = Api::new(HttpConfig {
        backup_dir: Some(std::env::temp_dir().join("naxos-no-backup-here")),
        ..HttpConfig::default()
    });
    let (status, body) = api.post("/api/v1/system/backup", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_IMPLEMENTED, "not_supported"),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("backup"), "{body}");
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_error_shape() {
    let api = Api::new(HttpConfig::default());
    let (status, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("post", "/api/v1/job-definitions"),
        ("get", "/api/v1/job-definitions"),
        ("get", "/api/v1/job-definitions/{id}"),
        ("get", "/api/v1/job-definitions/{id}/versions"),
        ("post", "/api/v1/job-definitions/{id}/pause"),
        ("post", "/api/v1/job-definitions/{id}/resume"),
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs/{id}/execute"),
        ("post", "/api/v1/jobs/{id}/execute-batch"),
        ("get", "/api/v1/jobs/{id}/status"),
        ("post", "/api/v1/jobs/{id}/cancel"),
        ("post", "/api/v1/jobs/{id}/retry"),
        ("post", "/api/v1/jobs/cancel"),
        ("post", "/api/v1/jobs/retry"),
        ("get", "/api/v1/jobs/{id}/events"),
        ("post", "/api/v1/jobs/{id}/signals/{name}"),
        ("get", "/api/v1/system/status"),
        ("post", "/api/v1/system/backup"),
        ("post", "/api/v1/schedules"),
        ("get", "/api/v1/schedules"),
        ("get", "/api/v1/schedules/{id}"),
        ("delete", "/api/v1/schedules/{id}"),
        ("post", "/api/v1/schedules/{id}/pause"),
        ("post", "/api/v1/schedules/{id}/resume"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/health"),
        ("get", "/metrics"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.values().map(|p| p.as_object().unwrap().len()).sum::<usize>(),
        routes.len()
    );
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "JobDefinition",
        "ExecutionView",
        "ErrorBody",
        "Problem",
        "StatusEvent",
        "HealthView",
        "Schedule",
        "ScheduleView",
        "DefinitionPaused",
        "BlockedBy",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    // The job-level retention, by end state.
    let retention = &schemas["JobDefinition"]["properties"]["retention"];
    assert!(
        retention.to_string().contains("#/components/schemas/Retention"),
        "{retention}"
    );
    let periods = &schemas["Retention"]["properties"];
    assert!(
        periods["completedMs"].is_object() && periods["failedMs"].is_object(),
        "{periods}"
    );
    // The workflow fields of a task, in the definition and in the status.
    let task = &schemas["TaskDefinition"]["properties"];
    assert_eq!(task["when"]["type"], json!(["string", "null"]), "{task}");
    assert_eq!(task["trigger"]["$ref"], "#/components/schemas/Trigger", "{task}");
    let triggers: Vec<&str> = schemas["Trigger"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["allSuccess", "allDone", "noneFailed", "anySuccess"]);
    let view = &schemas["TaskView"]["properties"];
    assert!(view["when"].is_object() && view["trigger"].is_object(), "{view}");
    let create = &doc["paths"]["/api/v1/job-definitions"]["post"]["responses"];
    assert_eq!(
        create["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every parameter is where the route reads it: a path parameter is in the path template.
    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    p["in"] == "path",
                    in_path,
                    "{method} {path}: parameter {name} is in {}",
                    p["in"]
                );
            }
        }
    }
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page() {
    let api = Api::new(HttpConfig::default());
    let req = Request::get("/").body(Body::empty()).unwrap();
    let res = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains("<title>naxos</title>") && html.contains("/api/v1/jobs"));
    for external in ["src=\"http", "href=\"http", "@import", "cdn"] {
        assert!(
            !html.contains(external),
            "the page loads nothing from elsewhere ({external})"
        );
    }
    assert!(
        !html.contains("innerHTML"),
        "data is put in the page as text, never as markup"
    );
}
