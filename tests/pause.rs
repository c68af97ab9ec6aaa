//! Pausing and resuming a definition over HTTP on the real server binary, on each of its Stores
//! (memory, LMDB — the default —, PostgreSQL): a task running when the pause comes finishes; the
//! executions started while paused stay PENDING, their first task QUEUED with
//! `blockedBy: "paused"`, and no task of theirs runs (the call log), across several sweeps and
//! stale-message windows; after the resume they complete, each task run once. Pausing or
//! resuming an unknown definition is a 404.

mod common;

use std::time::Duration;

use common::{call, calls, execute, finished, on_lmdb, on_postgres, start_logging_calls, task};
use hyper::{Method, StatusCode};
use naxos::serde_json::{json, Value};
use tokio::time::Instant;

/// `pack` echoes; `wait` sleeps `params.ms` (the demo `sleep`).
const PARCEL: &str = r#"{ "id": "parcel", "tasks": {
    "pack": {"id": "pack", "functionName": "echo"},
    "wait": {"id": "wait", "functionName": "sleep"} },
  "graph": { "wait": ["pack"] } }"#;

/// The server's sweep interval and the age at which the stale sweep republishes a QUEUED
/// task's message (ms).
const SWEEP_MS: &str = "200";
const REPUBLISH_MS: &str = "300";

/// How long the blocked executions are watched: seven sweeps, five republish ages.
const HOLD: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_in_memory() {
    pause_and_resume(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_on_lmdb() {
    on_lmdb("pause", pause_and_resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_on_postgres() {
    on_postgres("naxos_pause", pause_and_resume).await;
}

async fn pause_and_resume(env: &[(&str, &str)]) {
    let mut all = env.to_vec();
    all.extend([
        ("NAXOS_SWEEP_INTERVAL_MS", SWEEP_MS),
        ("NAXOS_REPUBLISH_AFTER_MS", REPUBLISH_MS),
    ]);
    let (mut server, log) = start_logging_calls(&all).await;
    let base = server.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", PARCEL).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // One execution's `wait` runs when the pause comes: it finishes.
    let running = execute(&base, "parcel", json!({"ms": 800})).await;
    until(&base, &running, "`wait` running", |e| {
        task(e, "wait")["status"] == "RUNNING"
    })
    .await;
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions/parcel/pause", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"id": "parcel", "paused": true}));
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions/parcel/pause", "").await;
    assert_eq!(status, StatusCode::OK, "paused again: {body}");
    assert_eq!(listed_paused(&base).await, true);

    // Two executions started while paused: PENDING, `pack` QUEUED and blocked, nothing run.
    let blocked = [
        execute(&base, "parcel", json!({"ms": 0})).await,
        execute(&base, "parcel", json!({"ms": 0})).await,
    ];
    for id in &blocked {
        until(&base, id, "`pack` blocked", |e| {
            task(e, "pack")["blockedBy"] == "paused"
        })
        .await;
    }
    let held = Instant::now();
    loop {
        for id in &blocked {
            let (status, exec) = call(&base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
            assert_eq!(status, StatusCode::OK, "{exec}");
            assert_eq!(exec["status"], "PENDING", "{exec}");
            let pack = task(&exec, "pack");
            assert_eq!(
                (&pack["status"], &pack["blockedBy"], &pack["attempts"]),
                (&json!("QUEUED"), &json!("paused"), &json!(0)),
                "{exec}"
            );
            assert_eq!(task(&exec, "wait")["status"], "PENDING", "{exec}");
        }
        let ran: Vec<_> = calls(&log).into_iter().filter(|(e, _)| blocked.contains(e)).collect();
        assert!(ran.is_empty(), "no task of a paused definition ran: {ran:?}");
        if held.elapsed() >= HOLD {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exec = finished(&base, &running).await;
    assert_eq!(exec["status"], "COMPLETED", "the running task finished: {exec}");
    assert_eq!(task(&exec, "wait")["output"], json!({"sleptMs": 800}));

    // Resumed: both complete, each task run once.
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions/parcel/resume", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"id": "parcel", "paused": false}));
    assert_eq!(listed_paused(&base).await, false);
    for id in &blocked {
        let exec = finished(&base, id).await;
        assert_eq!(exec["status"], "COMPLETED", "{exec}");
        for t in ["pack", "wait"] {
            assert_eq!(task(&exec, t)["attempts"], 1, "{exec}");
            assert!(task(&exec, t).get("blockedBy").is_none(), "{exec}");
        }
    }
    let log = calls(&log);
    for id in blocked.iter().chain([&running]) {
        for t in ["pack", "wait"] {
            let n = log.iter().filter(|(e, task)| e == id && task == t).count();
            assert_eq!(n, 1, "{id} {t} ran once: {log:?}");
        }
    }

    // An unknown definition: 404 in the API's error shape.
    for action in ["pause", "resume"] {
        let path = format!("/api/v1/job-definitions/nowhere/{action}");
        let (status, body) = call(&base, Method::POST, &path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
    server.child.kill().await.unwrap();
}

/// `paused` of `parcel` in the listing of definitions.
async fn listed_paused(base: &str) -> Value {
    let (status, list) = call(base, Method::GET, "/api/v1/job-definitions", "").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let parcel = list.as_array().unwrap().iter().find(|d| d["id"] == "parcel");
    parcel.unwrap_or_else(|| panic!("parcel listed: {list}"))["paused"].clone()
}

/// Polls an execution's status until `ready` holds, within the tests' deadline.
async fn until(base: &str, id: &str, what: &str, ready: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let (status, exec) = call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        if ready(&exec) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}, never: {exec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
