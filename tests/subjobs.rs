//! Sub-jobs (`subJob`) over HTTP on the real server binary, on each of its Stores (memory,
//! LMDB — the default —, PostgreSQL): the parent task completes with the child's outputs, the
//! links both ways in the status, a sub-job cancelled from the parent (the child is cancelled
//! and its running task stops, and nothing runs again), and the 422s of registration.

mod common;

use std::time::Duration;

use common::{call, calls, execute, finished, on_lmdb, on_postgres, start_logging_calls, task};
use hyper::{Method, StatusCode};
use naxos::serde_json::{json, Value};

/// `pack` echoes; `wait` sleeps `params.ms` (the demo `sleep`, which stops when cancelled).
const SHIPPING: &str = r#"{ "id": "shipping", "tasks": {
    "pack": {"id": "pack", "functionName": "echo"},
    "wait": {"id": "wait", "functionName": "sleep"} },
  "graph": { "wait": ["pack"] } }"#;

/// `ship` runs `shipping` with params from an expression; `notify` echoes what it got.
const ORDER: &str = r#"{ "id": "order", "tasks": {
    "prepare": {"id": "prepare", "functionName": "echo"},
    "ship": {"id": "ship", "subJob": {"definitionId": "shipping", "params": "{'ms': params.ms, 'order': params.order}"}},
    "notify": {"id": "notify", "functionName": "echo"} },
  "graph": { "ship": ["prepare"], "notify": ["ship"] } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_jobs_over_http_in_memory() {
    sub_jobs(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_jobs_over_http_on_lmdb() {
    on_lmdb("subjobs", sub_jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_jobs_over_http_on_postgres() {
    on_postgres("naxos_subjobs", sub_jobs).await;
}

async fn sub_jobs(env: &[(&str, &str)]) {
    let (mut server, log) = start_logging_calls(env).await;
    let base = server.base.clone();
    register(&base).await;

    // Completes with the child's outputs; links both ways.
    let id = execute(&base, "order", json!({"order": 7, "ms": 0})).await;
    let exec = finished(&base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let ship = task(&exec, "ship");
    assert_eq!(ship["subJob"]["definitionId"], "shipping");
    assert_eq!(ship["subJob"]["version"], 1, "pinned when the parent was created");
    let child_id = ship["childExecutionId"].as_str().unwrap_or_else(|| panic!("{ship}"));
    assert_eq!(ship["output"]["pack"]["params"], json!({"ms": 0, "order": 7}), "{ship}");
    assert_eq!(ship["output"]["wait"], json!({"sleptMs": 0}));
    assert_eq!(task(&exec, "notify")["output"]["upstream"]["ship"], ship["output"]);
    let (status, child) = call(&base, Method::GET, &format!("/api/v1/jobs/{child_id}/status"), "").await;
    assert_eq!(status, StatusCode::OK, "{child}");
    assert_eq!(
        (&child["parentExecutionId"], &child["parentTaskId"]),
        (&json!(id), &json!("ship"))
    );
    assert_eq!(child["status"], "COMPLETED");
    assert!(exec.get("parentExecutionId").is_none(), "a root has no parent: {exec}");

    // Cancelled from the parent: the child is cancelled, its running task stops.
    let id = execute(&base, "order", json!({"order": 8, "ms": 60_000})).await;
    let child_id = child_waiting(&base, &id).await;
    let (status, body) = call(&base, Method::POST, &format!("/api/v1/jobs/{id}/cancel"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let child = until(&base, &child_id, |e| {
        (e["status"] != "PENDING" && e["status"] != "RUNNING").then(|| e.clone())
    })
    .await;
    assert_eq!(child["status"], "CANCELLED", "{child}");
    assert_eq!(task(&child, "wait")["status"], "CANCELLED");
    let parent = finished(&base, &id).await;
    assert_eq!(parent["status"], "CANCELLED", "{parent}");
    assert_eq!(task(&parent, "ship")["status"], "CANCELLED");
    assert_eq!(task(&parent, "notify")["status"], "CANCELLED");
    let waits = calls(&log)
        .iter()
        .filter(|(execution, task)| *execution == child_id && task == "wait")
        .count();
    assert!(waits <= 1, "the child's task ran once at most: {waits}");

    // Registration names the bad field.
    for (definition, field) in [
        (
            r#"{"id": "bad", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "nowhere"}}}}"#,
            "subJob.definitionId",
        ),
        (
            r#"{"id": "bad", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "shipping", "version": 9}}}}"#,
            "subJob.version",
        ),
        (
            r#"{"id": "bad", "tasks": {"s": {"id": "s", "subJob": {"definitionId": "shipping", "params": "{"}}}}"#,
            "subJob.params",
        ),
        (
            r#"{"id": "bad", "tasks": {"s": {"id": "s", "functionName": "echo", "subJob": {"definitionId": "shipping"}}}}"#,
            "subJob",
        ),
    ] {
        let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", definition).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains(field), "{field}: {body}");
    }
    server.child.kill().await.unwrap();
}

/// A parent whose sub-job's child runs a 1 s task; the server is killed (SIGKILL) while the
/// child's task runs, and started again on the same data: the child's task runs again after
/// its lease, the child completes, and that completes the parent's task and the parent, with
/// `notify` run once.
async fn a_sub_job_survives_kill_9(env: &[(&str, &str)]) {
    let mut all = env.to_vec();
    all.extend([("NAXOS_LEASE_TTL_MS", "1500"), ("NAXOS_SWEEP_INTERVAL_MS", "300")]);
    let (mut first, log) = start_logging_calls(&all).await;
    let base = first.base.clone();
    register(&base).await;
    let id = execute(&base, "order", json!({"order": 9, "ms": 1_000})).await;
    let child_id = child_waiting(&base, &id).await;
    first.child.kill().await.expect("SIGKILL");

    let log_path = log.display().to_string();
    let mut again = all.clone();
    again.push(("NAXOS_CALL_LOG", log_path.as_str()));
    let mut second = common::start_with(&again).await;
    let exec = finished(&second.base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let ship = task(&exec, "ship");
    assert_eq!(
        ship["childExecutionId"],
        json!(child_id),
        "the same child, not a new one"
    );
    assert_eq!(ship["output"]["wait"], json!({"sleptMs": 1_000}));
    assert_eq!(task(&exec, "notify")["attempts"], 1);
    let notified = calls(&log).iter().filter(|(e, t)| *e == id && t == "notify").count();
    assert_eq!(notified, 1, "notify ran once");
    second.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_job_survives_kill_9_on_lmdb() {
    on_lmdb("subjobs-restart", a_sub_job_survives_kill_9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_job_survives_kill_9_on_postgres() {
    on_postgres("naxos_subjobs_restart", a_sub_job_survives_kill_9).await;
}

/// The child of `order` execution `id`, once its `wait` task runs.
async fn child_waiting(base: &str, id: &str) -> String {
    let child_id = until(base, id, |e| {
        task(e, "ship")["childExecutionId"].as_str().map(str::to_string)
    })
    .await;
    until(base, &child_id, |e| {
        (task(e, "wait")["status"] == "RUNNING").then_some(())
    })
    .await;
    child_id
}

/// Registers `shipping`, then `order`, which runs it.
async fn register(base: &str) {
    for definition in [SHIPPING, ORDER] {
        let (status, body) = call(base, Method::POST, "/api/v1/job-definitions", definition).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Polls an execution's status until `ready` gives something, for at most 20 s.
async fn until<T>(base: &str, id: &str, ready: impl Fn(&Value) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, exec) = call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        if status == StatusCode::OK {
            if let Some(out) = ready(&exec) {
                return out;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready: {exec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
