//! The OpenAPI document as a client generator or a stateful fuzzer reads it: unique
//! operationIds, links that name real operations and real fields and lead somewhere when
//! followed, and schemas whose rules are validation's (what the schema allows, the API takes).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use naxos_core::engine::EngineConfig;
use naxos_core::model::{is_valid_id, Limits};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, TaskError};
use naxos_http::{router, HttpConfig};
use regex::Regex;
use tower::ServiceExt;

/// One request in-process; the status and the body (JSON, or `null` for none or a stream).
async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    if response
        .headers()
        .get("content-type")
        .is_some_and(|t| t == "text/event-stream")
    {
        return (status, Value::Null);
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// An engine whose definition limits are not the defaults, with two functions, and its API.
fn api() -> (Engine, Router) {
    let engine = Engine::builder()
        .config(EngineConfig {
            limits: Limits {
                max_tasks: 3,
                max_retry: 5,
            },
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    engine.register("step", |_ctx| async { Ok(json!("done")) });
    engine.register("hold", |ctx| async move {
        ctx.cancelled().await;
        Err::<Value, _>(TaskError::fatal("cancelled"))
    });
    engine.start().unwrap();
    let app = router(engine.clone(), HttpConfig::default());
    (engine, app)
}

async fn document(app: &Router) -> Value {
    let (status, doc) = call(app, "GET", "/api/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// Every operation by its operationId: (method, path, operation).
fn operations(doc: &Value) -> BTreeMap<String, (String, String, Value)> {
    let mut found = BTreeMap::new();
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            count += 1;
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            found.insert(id.to_string(), (method.clone(), path.clone(), op.clone()));
        }
    }
    assert_eq!(found.len(), count, "operationIds are unique: {:?}", found.keys());
    found
}

/// Whether `pointer` (segments of a JSON pointer) leads somewhere in answers of `schema`:
/// through `$ref`s, `allOf`, object properties and array items.
fn resolves(doc: &Value, schema: &Value, pointer: &[&str]) -> bool {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.strip_prefix("#/components/schemas/").unwrap();
        return resolves(doc, &doc["components"]["schemas"][name], pointer);
    }
    let Some((first, rest)) = pointer.split_first() else {
        return true;
    };
    if schema["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|part| resolves(doc, part, pointer))
    {
        return true;
    }
    if first.parse::<usize>().is_ok() && schema["type"] == "array" {
        return resolves(doc, &schema["items"], rest);
    }
    schema["properties"].get(*first).is_some_and(|p| resolves(doc, p, rest))
}

#[tokio::test]
async fn every_link_names_an_operation_and_a_field_of_its_answer() {
    let (engine, app) = api();
    let doc = document(&app).await;
    let ops = operations(&doc);
    let mut links = 0;
    for (source, (_, _, op)) in &ops {
        for (status, response) in op["responses"].as_object().unwrap() {
            let Some(response_links) = response["links"].as_object() else {
                continue;
            };
            let schema = &response["content"]["application/json"]["schema"];
            for (name, link) in response_links {
                links += 1;
                let target = link["operationId"].as_str().expect("a link names its operation by id");
                let (_, path, target_op) = ops
                    .get(target)
                    .unwrap_or_else(|| panic!("{source} {status} links to {target}, which does not exist"));
                assert_eq!(name, target);
                for (parameter, expression) in link["parameters"].as_object().unwrap() {
                    let (place, parameter) = parameter.split_once('.').unwrap();
                    assert_eq!(place, "path");
                    assert!(
                        path.contains(&format!("{{{parameter}}}")),
                        "{target} has no path {parameter}"
                    );
                    assert!(
                        target_op["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == parameter && p["in"] == "path"),
                        "{target} declares {parameter}"
                    );
                    let pointer = expression
                        .as_str()
                        .and_then(|e| e.strip_prefix("$response.body#/"))
                        .unwrap_or_else(|| panic!("{expression} reads the answer's body"));
                    let segments: Vec<&str> = pointer.split('/').collect();
                    assert!(
                        resolves(&doc, schema, &segments),
                        "{source} {status}: its answer has no /{pointer}: {schema}"
                    );
                }
            }
        }
    }
    assert!(links >= 25, "{links} links");
    // What the issue asked for: execute leads to status, cancel, retry and events.
    for status in ["200", "202"] {
        let execute = &ops["executeJob"].2["responses"][status]["links"];
        let targets: Vec<&String> = execute.as_object().unwrap().keys().collect();
        assert_eq!(
            targets,
            [
                "cancelExecution",
                "getExecutionStatus",
                "retryExecution",
                "streamExecutionEvents"
            ]
        );
        for link in execute.as_object().unwrap().values() {
            assert_eq!(link["parameters"], json!({"path.id": "$response.body#/executionId"}));
        }
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_links_of_execute_reaches_the_execution() {
    let (engine, app) = api();
    let doc = document(&app).await;
    let ops = operations(&doc);
    let definition = r#"{"id":"held","tasks":{"wait":{"id":"wait","functionName":"hold"}}}"#;
    assert_eq!(
        call(&app, "POST", "/api/v1/job-definitions", definition).await.0,
        StatusCode::CREATED
    );
    let (status, answer) = call(&app, "POST", "/api/v1/jobs/held/execute", "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // In the links' (alphabetical) order: cancel the running execution, read it, retry it,
    // watch it. Each is a 2xx only if the id reached the right operation.
    let links = doc["paths"]["/api/v1/jobs/{id}/execute"]["post"]["responses"]["202"]["links"]
        .as_object()
        .unwrap();
    let mut followed = Vec::new();
    for link in links.values() {
        let target = link["operationId"].as_str().unwrap();
        let (method, path, _) = &ops[target];
        let pointer = link["parameters"]["path.id"]
            .as_str()
            .unwrap()
            .strip_prefix("$response.body#")
            .unwrap();
        let id = answer.pointer(pointer).and_then(Value::as_str).unwrap();
        let uri = path.replace("{id}", id);
        let (status, body) = call(&app, &method.to_uppercase(), &uri, "").await;
        assert!(status.is_success(), "{target} {uri}: {status} {body}");
        followed.push((target.to_string(), status.as_u16()));
    }
    assert_eq!(
        followed,
        [
            ("cancelExecution".to_string(), 200),
            ("getExecutionStatus".to_string(), 200),
            ("retryExecution".to_string(), 202),
            ("streamExecutionEvents".to_string(), 200),
        ]
    );
    // The retried task holds until cancelled: cancel it, so the engine stops at once.
    let id = answer["executionId"].as_str().unwrap();
    let (status, _) = call(&app, "POST", &format!("/api/v1/jobs/{id}/cancel"), "").await;
    assert_eq!(status, StatusCode::OK);
    engine.shutdown().await;
}

/// Ids at the edges of the rule, and past them.
fn candidate_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "a",
        "Z",
        "0",
        "_",
        ".",
        "-",
        "..",
        "sample-2.v1_x",
        "",
        " ",
        "a b",
        "a/b",
        "a?b",
        "a#b",
        "a:b",
        "a+b",
        "a\tb",
        "é",
        "ü-task",
        "日本",
        "a\u{0}",
        "\u{1F600}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("a".repeat(128));
    ids.push("a".repeat(129));
    ids.push(format!("{}é", "a".repeat(127)));
    ids.extend((0x20u8..0x7f).map(|b| format!("x{}", b as char)));
    ids
}

/// Whether a string schema (`pattern`, `minLength`, `maxLength`) allows `text`, as JSON
/// Schema counts: lengths in characters, the pattern anywhere in the text.
fn string_allowed(schema: &Value, text: &str) -> bool {
    let pattern = Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
    let length = text.chars().count() as u64;
    pattern.is_match(text)
        && schema["minLength"].as_u64().is_none_or(|min| length >= min)
        && schema["maxLength"].as_u64().is_none_or(|max| length <= max)
}

#[tokio::test]
async fn the_id_rules_in_the_schemas_are_validations() {
    let (engine, app) = api();
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let job_id = &schemas["JobDefinition"]["properties"]["id"];
    let task_key = &schemas["JobDefinition"]["properties"]["tasks"]["propertyNames"];
    let task_id = &schemas["TaskDefinition"]["properties"]["id"];
    let schedule_id = &schemas["Schedule"]["properties"]["id"];
    let sub_job_definition = &schemas["SubJob"]["properties"]["definitionId"];
    for schema in [
        task_key,
        task_id,
        schedule_id,
        &schemas["Schedule"]["properties"]["definitionId"],
        sub_job_definition,
    ] {
        assert_eq!(schema["pattern"], job_id["pattern"]);
        assert_eq!(
            (&schema["minLength"], &schema["maxLength"]),
            (&job_id["minLength"], &job_id["maxLength"])
        );
    }
    let (mut accepted, mut refused) = (0, 0);
    for id in candidate_ids() {
        let allowed = string_allowed(job_id, &id);
        assert_eq!(
            allowed,
            is_valid_id(&id),
            "the schema and validation disagree on {id:?}"
        );
        assert_eq!(allowed, string_allowed(task_key, &id), "{id:?}");
        // The API agrees: as a definition id, and as a task's key and id.
        let body = json!({"id": id, "tasks": {"t": {"id": "t", "functionName": "step"}}}).to_string();
        let (status, answer) = call(&app, "POST", "/api/v1/job-definitions", &body).await;
        let expected = if allowed {
            StatusCode::CREATED
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!(status, expected, "definition id {id:?}: {answer}");
        let body = json!({"id": "keys", "tasks": {&id: {"id": &id, "functionName": "step"}}}).to_string();
        let (status, answer) = call(&app, "POST", "/api/v1/job-definitions", &body).await;
        assert!(
            status.is_success() == allowed && (allowed || status == StatusCode::UNPROCESSABLE_ENTITY),
            "task id {id:?}: {status} {answer}"
        );
        // As a sub-job's definition: one the schema refuses is refused naming the field (an
        // allowed one is refused too unless registered: the first test above registered it).
        let body = json!({"id": "parent", "tasks": {"s": {"id": "s", "subJob": {"definitionId": &id}}}}).to_string();
        let (status, answer) = call(&app, "POST", "/api/v1/job-definitions", &body).await;
        assert!(
            status.is_success() == allowed && (allowed || answer.to_string().contains("subJob.definitionId")),
            "sub-job definition id {id:?}: {status} {answer}"
        );
        if allowed {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted >= 60 && refused >= 40,
        "{accepted} accepted, {refused} refused"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn the_limits_in_the_schemas_are_the_engines_and_the_api_keeps_them() {
    let (engine, app) = api();
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let job = &schemas["JobDefinition"]["properties"];
    let task = &schemas["TaskDefinition"]["properties"];
    assert_eq!(
        (
            job["tasks"]["minProperties"].as_u64(),
            job["tasks"]["maxProperties"].as_u64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(task["maxRetry"]["maximum"], 5);
    assert_eq!(task["functionName"]["enum"], json!(["hold", "step"]));
    assert_eq!(
        (
            job["timeoutMs"]["minimum"].as_u64(),
            task["timeoutMs"]["minimum"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(job["graph"]["additionalProperties"]["uniqueItems"], true);
    let backoff = &schemas["BackoffPolicy"]["properties"];
    assert_eq!(
        (
            backoff["multiplier"]["minimum"].as_f64(),
            backoff["jitter"]["maximum"].as_f64()
        ),
        (Some(1.0), Some(1.0))
    );
    let body = &doc["paths"]["/api/v1/job-definitions"]["post"]["requestBody"]["description"];
    assert!(body.as_str().unwrap().contains("at most 1048576 bytes"), "{body}");
    let no_nul = Regex::new(job["name"]["pattern"].as_str().unwrap()).unwrap();
    assert!(no_nul.is_match("any name at all, ü") && !no_nul.is_match("a\u{0}b"));
    let sub_job = &schemas["SubJob"]["properties"];
    assert_eq!(sub_job["version"]["minimum"], 1);
    assert_eq!(sub_job["params"]["pattern"], job["name"]["pattern"]);
    let params = sub_job["params"]["description"].as_str().unwrap();
    assert!(params.contains("CEL") && params.contains("object"), "{params}");

    let tasks = |n: usize| -> Value {
        (0..n)
            .map(|i| (format!("t{i}"), json!({"id": format!("t{i}"), "functionName": "step"})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // Each pair: a body at the schema's edge (accepted), and one just past it (422).
    let pairs = [
        (
            json!({"id": "n", "tasks": tasks(3)}),
            json!({"id": "n", "tasks": tasks(4)}),
        ),
        (json!({"id": "m", "tasks": tasks(1)}), json!({"id": "m", "tasks": {}})),
        (
            json!({"id": "r", "tasks": {"t": {"id": "t", "functionName": "step", "maxRetry": 5}}}),
            json!({"id": "r", "tasks": {"t": {"id": "t", "functionName": "step", "maxRetry": 6}}}),
        ),
        (
            json!({"id": "f", "tasks": {"t": {"id": "t", "functionName": "hold"}}}),
            json!({"id": "f", "tasks": {"t": {"id": "t", "functionName": "nobody"}}}),
        ),
        (
            json!({"id": "o", "timeoutMs": 1, "tasks": {"t": {"id": "t", "functionName": "step", "timeoutMs": 1}}}),
            json!({"id": "o", "timeoutMs": 0, "tasks": {"t": {"id": "t", "functionName": "step"}}}),
        ),
        (
            json!({"id": "g", "tasks": tasks(2), "graph": {"t1": ["t0"]}}),
            json!({"id": "g", "tasks": tasks(2), "graph": {"t1": ["t0", "t0"]}}),
        ),
        (
            json!({"id": "z", "name": "fine", "tasks": tasks(1)}),
            json!({"id": "z", "name": "nul\u{0}", "tasks": tasks(1)}),
        ),
        (
            json!({"id": "v", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "m", "version": 1}}}}),
            json!({"id": "v", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "m", "version": 0}}}}),
        ),
        (
            json!({"id": "p", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "m", "params": "{'n': 1}"}}}}),
            json!({"id": "p", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "m", "params": "{'n': 1}\u{0}"}}}}),
        ),
        (
            json!({"id": "b", "tasks": {"t": {"id": "t", "functionName": "step", "backoff": {"multiplier": 1.0, "jitter": 1.0}}}}),
            json!({"id": "b", "tasks": {"t": {"id": "t", "functionName": "step", "backoff": {"multiplier": 0.5}}}}),
        ),
    ];
    for (edge, past) in pairs {
        let (status, answer) = call(&app, "POST", "/api/v1/job-definitions", &edge.to_string()).await;
        assert!(status.is_success(), "{edge}: {status} {answer}");
        let (status, answer) = call(&app, "POST", "/api/v1/job-definitions", &past.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{past}: {answer}");
    }
    engine.shutdown().await;
}
