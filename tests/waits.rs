//! Durable waits over HTTP on the real server binary, on each of its Stores (memory, LMDB — the
//! default —, PostgreSQL): `waitFor` with a signal sent before and after the task waits, `sleep`,
//! the signal route's errors, a sleep across a `kill -9` and a restart, and sleeps that hold no
//! worker slot.

mod common;

use std::time::{Duration, Instant};

use common::{call, execute, finished, on_lmdb, on_postgres, start_with, task};
use hyper::{Method, StatusCode};
use naxos::chrono::{self, DateTime, Utc};
use naxos::serde_json::{json, Value};

/// `a` (the demo `sleep` function, `params.ms` long) → `approval` (waits for `approve`) → `nap`
/// (sleeps 300 ms) → `pay` (echo).
const APPROVAL: &str = r#"{ "id": "approval", "name": "Approve, then pay",
  "tasks": { "a": {"id": "a", "functionName": "sleep"},
             "approval": {"id": "approval", "waitFor": {"signal": "approve", "timeoutMs": 600000}},
             "nap": {"id": "nap", "sleep": {"ms": 300}},
             "pay": {"id": "pay", "functionName": "echo"} },
  "graph": { "approval": ["a"], "nap": ["approval"], "pay": ["nap"] } }"#;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_sleeps_over_http_in_memory() {
    signals_and_sleeps(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_sleeps_over_http_on_lmdb() {
    signals_and_sleeps(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_sleeps_over_http_on_postgres() {
    on_postgres("naxos_waits", signals_and_sleeps).await;
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

async fn signal(base: &str, id: &str, name: &str, body: &str) -> (StatusCode, Value) {
    call(base, Method::POST, &format!("/api/v1/jobs/{id}/signals/{name}"), body).await
}

/// Polls the execution until its task `task` is `status`; returns the execution.
async fn task_becomes(base: &str, id: &str, task_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let (code, exec) = call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(code, StatusCode::OK, "{exec}");
        if task(&exec, task_id)["status"] == status {
            return exec;
        }
        assert!(started.elapsed() < DEADLINE, "{task_id} never became {status}: {exec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn signals_and_sleeps(env: &[(&str, &str)]) {
    let mut server = start_with(env).await;
    let base = server.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", APPROVAL).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A signal sent while `a` still runs is kept, and taken the moment `approval` waits.
    let early = execute(&base, "approval", json!({"ms": 1_000})).await;
    let (status, ack) = signal(&base, &early, "approve", r#"{"by": "ann"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(ack["signal"], "approve");
    assert!(ack.get("deliveredTo").is_none(), "kept, not delivered: {ack}");
    let exec = finished(&base, &early).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let approval = task(&exec, "approval");
    assert_eq!(approval["output"], json!({"by": "ann"}));
    assert_eq!(approval["waitFor"], json!({"signal": "approve", "timeoutMs": 600000}));
    assert_eq!(approval["attempts"], 0, "no worker ran it");
    let nap = task(&exec, "nap");
    assert_eq!((&nap["output"], &nap["sleep"]), (&Value::Null, &json!({"ms": 300})));
    let slept = time(&nap["endTime"]) - time(&nap["startTime"]);
    assert!(slept >= chrono::Duration::milliseconds(300), "slept {slept}");
    assert_eq!(
        task(&exec, "pay")["output"]["upstream"],
        json!({"nap": null}),
        "pay ran after the sleep"
    );

    // A task that waits shows it; a signal then completes it at once.
    let late = execute(&base, "approval", json!({"ms": 0})).await;
    let exec = task_becomes(&base, &late, "approval", "WAITING").await;
    let due = time(&task(&exec, "approval")["dueAt"]);
    assert!(
        due > Utc::now() + chrono::Duration::seconds(500),
        "due at its timeout: {due}"
    );
    let (status, ack) = signal(&base, &late, "approve", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(ack["deliveredTo"], "approval");
    let exec = finished(&base, &late).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    assert_eq!(task(&exec, "approval")["output"], Value::Null, "an empty body is null");

    // The route's errors: finished 409, unknown execution 404, a name no task waits for 422,
    // malformed JSON 400.
    let (status, body) = signal(&base, &late, "approve", "1").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let unknown = naxos::uuid::Uuid::now_v7();
    let (status, body) = signal(&base, &unknown.to_string(), "approve", "1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let open = execute(&base, "approval", json!({"ms": 5_000})).await;
    let (status, body) = signal(&base, &open, "reject", "1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`reject`"),
        "{body}"
    );
    let (status, body) = signal(&base, &open, "approve", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(&base, Method::POST, &format!("/api/v1/jobs/{open}/cancel"), "").await;
    assert_eq!(status, StatusCode::OK);

    // Definitions that mix kinds or name a bad signal are refused, naming the task and field.
    let both = APPROVAL
        .replace(
            r#""id": "nap", "sleep""#,
            r#""id": "nap", "functionName": "echo", "sleep""#,
        )
        .replace(r#""id": "approval", "name""#, r#""id": "both", "name""#);
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", &both).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("task `nap` has `functionName` and `sleep`"),
        "{message}"
    );
    let bad = APPROVAL
        .replace(r#""signal": "approve""#, r#""signal": "no spaces""#)
        .replace(r#""id": "approval", "name""#, r#""id": "bad-signal", "name""#);
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("task `approval` has an invalid `waitFor.signal`"),
        "{message}"
    );

    server.child.kill().await.unwrap();
}

/// A 3 s sleep; the server is killed (SIGKILL) while it sleeps and started again on the same
/// data: the sleep still ends, between its due time and due + one sweep interval + the restart
/// + 1 s, and what follows it runs.
async fn a_sleep_survives_kill_9(env: &[(&str, &str)]) {
    const NAP: &str = r#"{ "id": "nap", "tasks": {
        "nap": {"id": "nap", "sleep": {"ms": 3000}},
        "after": {"id": "after", "functionName": "echo"} },
      "graph": { "after": ["nap"] } }"#;
    const SWEEP_MS: i64 = 500;
    let mut all = env.to_vec();
    all.push(("NAXOS_SWEEP_INTERVAL_MS", "500"));
    let mut first = start_with(&all).await;
    let base = first.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", NAP).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = execute(&base, "nap", json!({})).await;
    let exec = task_becomes(&base, &id, "nap", "WAITING").await;
    let due = time(&task(&exec, "nap")["dueAt"]);

    let killed = Utc::now();
    first.child.kill().await.expect("SIGKILL");
    let second = start_with(&all).await;
    let restart = Utc::now() - killed;
    let exec = finished(&second.base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let ended = time(&task(&exec, "nap")["endTime"]);
    let latest = due + chrono::Duration::milliseconds(SWEEP_MS) + restart + chrono::Duration::seconds(1);
    assert!(
        ended >= due && ended <= latest,
        "the sleep due at {due} ended at {ended} (restart took {restart}, latest {latest})"
    );
    assert_eq!(task(&exec, "after")["status"], "COMPLETED");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_survives_kill_9_on_lmdb() {
    on_lmdb("sleep-restart", a_sleep_survives_kill_9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_survives_kill_9_on_postgres() {
    on_postgres("naxos_sleep_restart", a_sleep_survives_kill_9).await;
}

/// One worker slot, 100 executions sleeping for an hour: other work still runs, one after
/// another, and no sleep is RUNNING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sleeps_hold_no_worker_slot_over_http() {
    const SLEEPY: &str = r#"{ "id": "sleepy", "tasks": {
        "nap": {"id": "nap", "sleep": {"ms": 3600000}} } }"#;
    const WORK: &str = r#"{ "id": "work", "tasks": { "w": {"id": "w", "functionName": "echo"} } }"#;
    let mut server = start_with(&[("NAXOS_STORE", "memory"), ("NAXOS_WORKER_CONCURRENCY", "1")]).await;
    let base = server.base.clone();
    for def in [SLEEPY, WORK] {
        let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", def).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut sleepers = Vec::new();
    for _ in 0..100 {
        sleepers.push(execute(&base, "sleepy", json!({})).await);
    }
    for id in &sleepers {
        task_becomes(&base, id, "nap", "WAITING").await;
    }
    for _ in 0..10 {
        let id = execute(&base, "work", json!({})).await;
        assert_eq!(finished(&base, &id).await["status"], "COMPLETED");
    }
    let (_, page) = call(&base, Method::GET, "/api/v1/jobs?status=RUNNING&limit=1000", "").await;
    let running = page["executions"].as_array().unwrap().len();
    assert_eq!(
        running, 100,
        "a sleeping execution has started: RUNNING, not PENDING: {page}"
    );
    server.child.kill().await.unwrap();
}
