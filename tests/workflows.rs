//! The workflow features over HTTP on the real server binary, on each of its Stores (memory,
//! LMDB — the default —, PostgreSQL): `when` conditions and `trigger` rules.

mod common;

use common::{call, calls, execute, finished, on_postgres, start_logging_calls, task};
use hyper::{Method, StatusCode};
use naxos::serde_json::{json, Value};

/// `a → (b when params.x > 1, c when params.x <= 1) → join (noneFailed)`, every task `echo`.
const BRANCH: &str = r#"{ "id": "branch", "name": "Branch and join",
  "tasks": { "a": {"id": "a", "functionName": "echo"},
             "b": {"id": "b", "functionName": "echo", "when": "params.x > 1"},
             "c": {"id": "c", "functionName": "echo", "when": "params.x <= 1"},
             "join": {"id": "join", "functionName": "echo", "trigger": "noneFailed"} },
  "graph": { "b": ["a"], "c": ["a"], "join": ["b", "c"] } }"#;

/// A condition that reads a key the params lack: it fails when evaluated.
const BROKEN: &str = r#"{ "id": "broken", "tasks": {
    "a": {"id": "a", "functionName": "echo"},
    "b": {"id": "b", "functionName": "echo", "when": "params.missing > 1"} },
  "graph": { "b": ["a"] } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_and_triggers_over_http_in_memory() {
    conditions_and_triggers(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_and_triggers_over_http_on_lmdb() {
    // The server's default Store.
    conditions_and_triggers(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_and_triggers_over_http_on_postgres() {
    on_postgres("naxos_when", conditions_and_triggers).await;
}

async fn register(base: &str, definition: &str) -> (StatusCode, Value) {
    call(base, Method::POST, "/api/v1/job-definitions", definition).await
}

async fn conditions_and_triggers(env: &[(&str, &str)]) {
    let (mut server, log) = start_logging_calls(env).await;
    let base = server.base.clone();

    // The branch not taken is skipped and never runs; the join runs once; the execution COMPLETES.
    let (status, body) = register(&base, BRANCH).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = execute(&base, "branch", json!({"x": 2})).await;
    let exec = finished(&base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let c = task(&exec, "c");
    assert_eq!(
        (&c["status"], &c["error"], &c["attempts"]),
        (&json!("SKIPPED"), &json!("condition false"), &json!(0))
    );
    assert_eq!(c["when"], "params.x <= 1", "the status shows the condition");
    let join = task(&exec, "join");
    assert_eq!((&join["status"], &join["attempts"]), (&json!("COMPLETED"), &json!(1)));
    assert_eq!(join["trigger"], "noneFailed");
    let upstream = join["output"]["upstream"].as_object().unwrap();
    assert_eq!(
        upstream.keys().collect::<Vec<_>>(),
        ["b"],
        "the join sees what completed: {join}"
    );
    let mine: Vec<String> = calls(&log)
        .into_iter()
        .filter(|(e, _)| *e == id)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(mine, ["a", "b", "join"], "c never ran, the join ran once");

    // The other side of the branch, with the same definition.
    let other = execute(&base, "branch", json!({"x": 0})).await;
    let exec = finished(&base, &other).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    assert_eq!(task(&exec, "b")["error"], "condition false");
    assert_eq!(task(&exec, "c")["status"], "COMPLETED");

    // A condition that fails when evaluated FAILS its task with the evaluation error.
    let (status, body) = register(&base, BROKEN).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let broken = execute(&base, "broken", json!({"x": 2})).await;
    let exec = finished(&base, &broken).await;
    assert_eq!(exec["status"], "FAILED", "{exec}");
    let b = task(&exec, "b");
    assert_eq!(b["status"], "FAILED");
    assert_eq!(b["error"], "`when` could not be evaluated: No such key: missing");
    assert_eq!(b["attempts"], 0, "its function never ran");
    assert!(exec["error"].as_str().unwrap().contains("`b`"), "{exec}");

    // A condition that does not compile, and an unknown trigger: 422 naming the task and field.
    let bad_when = BRANCH
        .replace("params.x > 1", "params.x >")
        .replace("\"branch\"", "\"bad-when\"");
    let (status, body) = register(&base, &bad_when).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("task `b` has an invalid `when` condition"),
        "{message}"
    );
    let bad_trigger = BRANCH
        .replace("noneFailed", "sometimes")
        .replace("\"branch\"", "\"bad-trigger\"");
    let (status, body) = register(&base, &bad_trigger).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tasks.join.trigger") && message.contains("sometimes"),
        "{message}"
    );
    for id in ["bad-when", "bad-trigger"] {
        let (status, _) = call(&base, Method::GET, &format!("/api/v1/job-definitions/{id}"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id} was not registered");
    }

    server.child.kill().await.unwrap();
}

/// `a → (b, c) → d`, every task `echo`.
const DIAMOND: &str = r#"{ "id": "echo-diamond", "tasks": {
    "a": {"id": "a", "functionName": "echo"}, "b": {"id": "b", "functionName": "echo"},
    "c": {"id": "c", "functionName": "echo"}, "d": {"id": "d", "functionName": "echo"} },
  "graph": { "b": ["a"], "c": ["a"], "d": ["b", "c"] } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_a_task_over_http_in_memory() {
    restart_from_a_task(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_a_task_over_http_on_postgres() {
    on_postgres("naxos_retry_from", restart_from_a_task).await;
}

/// A COMPLETED diamond restarted from `b`: `b` and `d` run again, `a` and `c` do not (the call
/// log says so) and `d` sees `c`'s kept output; 409 while an execution runs, 404 for a task
/// that does not exist.
async fn restart_from_a_task(env: &[(&str, &str)]) {
    let (mut server, log) = start_logging_calls(env).await;
    let base = server.base.clone();
    let (status, body) = register(&base, DIAMOND).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = execute(&base, "echo-diamond", json!({"n": 1})).await;
    let first = finished(&base, &id).await;
    assert_eq!(first["status"], "COMPLETED", "{first}");

    let retry = |from: &str| format!("/api/v1/jobs/{id}/retry?from={from}");
    let (status, body) = call(&base, Method::POST, &retry("nope"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(&base, Method::POST, &retry("b"), "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "RUNNING");
    let again = finished(&base, &id).await;
    assert_eq!(again["status"], "COMPLETED", "{again}");
    let mine: Vec<String> = calls(&log)
        .into_iter()
        .filter(|(e, _)| *e == id)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(mine.len(), 6, "{mine:?}");
    let mut rerun = mine[4..].to_vec();
    rerun.sort();
    assert_eq!(rerun, ["b", "d"], "only b and d ran again: {mine:?}");
    assert_eq!(task(&again, "a")["attempts"], 1);
    assert_eq!(task(&again, "b")["attempts"], 2, "b started twice");
    assert_eq!(
        task(&again, "d")["output"]["upstream"]["c"],
        task(&first, "c")["output"],
        "d saw c's kept output"
    );

    // Not while it runs.
    let slow = r#"{ "id": "slow", "tasks": { "s": {"id": "s", "functionName": "sleep"} } }"#;
    let (status, body) = register(&base, slow).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let running = execute(&base, "slow", json!({"ms": 3_000})).await;
    let path = format!("/api/v1/jobs/{running}/retry?from=s");
    let (status, body) = call(&base, Method::POST, &path, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a finished execution"),
        "{body}"
    );

    server.child.kill().await.unwrap();
}
