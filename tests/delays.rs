//! Delayed executions over HTTP on the real server binary, on its durable Stores (LMDB — the
//! default — and PostgreSQL): `?delayMs=` answers 202 with `scheduledFor`, the status shows it
//! PENDING until then, a bad value is a 400 naming the parameter; the server is killed
//! (SIGKILL) before the execution's time and started again on the same data, and the execution
//! still starts (from the new process's sweeper: no timer survived) and runs each task once,
//! while one cancelled before the kill never starts.

mod common;

use std::time::Duration;

use common::{call, finished, on_lmdb, on_postgres, start_with, task};
use hyper::{Method, StatusCode};
use naxos::chrono::{self, DateTime, Utc};
use naxos::serde_json::Value;

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

async fn delayed(base: &str, ms: u64) -> (String, DateTime<Utc>) {
    let path = format!("/api/v1/jobs/sample-2/execute?delayMs={ms}");
    let (status, ack) = call(base, Method::POST, &path, "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(ack["status"], "PENDING");
    (
        ack["executionId"].as_str().unwrap().to_string(),
        time(&ack["scheduledFor"]),
    )
}

async fn a_delayed_run_survives_kill_9(env: &[(&str, &str)]) {
    const SWEEP_MS: i64 = 500;
    let mut all = env.to_vec();
    all.push(("NAXOS_SWEEP_INTERVAL_MS", "500"));
    let mut first = start_with(&all).await;
    let base = first.base.clone();

    let (status, body) = call(&base, Method::POST, "/api/v1/jobs/sample-2/execute?delayMs=-1", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("delayMs"), "{body}");

    let (id, at) = delayed(&base, 2_000).await;
    let (cancelled, _) = delayed(&base, 1_000).await;
    let (status, _) = call(&base, Method::POST, &format!("/api/v1/jobs/{cancelled}/cancel"), "").await;
    assert_eq!(status, StatusCode::OK);
    let (_, exec) = call(&base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
    assert_eq!(
        (&exec["status"], time(&exec["scheduledFor"])),
        (&Value::from("PENDING"), at)
    );
    assert!(exec["startTime"].is_null(), "{exec}");

    let killed = Utc::now();
    assert!(killed < at, "killed before its time");
    first.child.kill().await.expect("SIGKILL");
    let second = start_with(&all).await;
    let restart = Utc::now() - killed;
    let exec = finished(&second.base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let started = time(&exec["startTime"]);
    let latest = at + chrono::Duration::milliseconds(SWEEP_MS) + restart + chrono::Duration::seconds(1);
    assert!(
        started >= at && started <= latest,
        "due at {at}, started at {started} (restart took {restart}, latest {latest})"
    );
    for t in ["task1", "task2", "task3", "task4"] {
        assert_eq!(task(&exec, t)["attempts"], 1, "{t} ran once: {exec}");
    }
    // The cancelled one's time passed before the other's start: nothing started it.
    let (_, exec) = call(
        &second.base,
        Method::GET,
        &format!("/api/v1/jobs/{cancelled}/status"),
        "",
    )
    .await;
    assert_eq!(exec["status"], "CANCELLED", "{exec}");
    assert!(exec["startTime"].is_null(), "{exec}");
    assert_eq!(task(&exec, "task1")["attempts"], 0);
    drop(first);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_run_survives_kill_9_on_lmdb() {
    on_lmdb("delay-restart", a_delayed_run_survives_kill_9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_run_survives_kill_9_on_postgres() {
    on_postgres("naxos_delay_restart", a_delayed_run_survives_kill_9).await;
}

/// Not a durable store, but the server's default path of a delayed execution: the node's timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_run_starts_at_its_time_in_memory() {
    let mut server = start_with(&[("NAXOS_STORE", "memory")]).await;
    let (id, at) = delayed(&server.base, 300).await;
    let exec = finished(&server.base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    assert!(time(&exec["startTime"]) >= at, "{exec}");
    tokio::time::timeout(Duration::from_secs(5), server.child.kill())
        .await
        .unwrap()
        .unwrap();
}
