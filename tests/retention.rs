//! Retention on the real server: a definition with a short `retention` has its execution
//! pruned (its status answers 404) while one without keeps its own; the server's default for
//! failed executions comes from `NAXOS_RETENTION_FAILED_MS`. On PostgreSQL and on the default
//! LMDB store.

mod common;

use std::time::{Duration, Instant};

use common::{call, finished, on_postgres, start_with, DEADLINE};
use hyper::{Method, StatusCode};
use naxos::serde_json::json;

/// Registers `body` (a definition), expecting it created.
async fn define(base: &str, body: naxos::serde_json::Value) {
    let (status, reply) = call(base, Method::POST, "/api/v1/job-definitions", &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

/// Runs one execution of `definition` to its end; returns its id.
async fn run(base: &str, definition: &str) -> String {
    let (status, body) = call(base, Method::POST, &format!("/api/v1/jobs/{definition}/execute"), "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    finished(base, &id).await;
    id
}

async fn status_of(base: &str, id: &str) -> StatusCode {
    call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "")
        .await
        .0
}

/// The check, on a server started with `env`.
async fn short_retention_goes_and_the_rest_stays(env: &[(&str, &str)]) {
    let mut all = vec![
        ("NAXOS_SWEEP_INTERVAL_MS", "100"),
        // Failed executions of definitions without a retention: 300 ms; completed: the default 7 days.
        ("NAXOS_RETENTION_FAILED_MS", "300"),
    ];
    all.extend_from_slice(env);
    let server = start_with(&all).await;
    let base = server.base.as_str();
    define(
        base,
        json!({"id": "brief", "retention": {"completedMs": 300},
               "tasks": {"t": {"id": "t", "functionName": "echo"}}}),
    )
    .await;
    let (_, stored) = call(base, Method::GET, "/api/v1/job-definitions/brief", "").await;
    assert_eq!(stored["retention"], json!({"completedMs": 300}), "{stored}");
    define(
        base,
        json!({"id": "kept", "tasks": {"t": {"id": "t", "functionName": "echo"}}}),
    )
    .await;
    define(
        base,
        json!({"id": "failing", "tasks": {"t": {"id": "t", "functionName": "fail"}}}),
    )
    .await;
    let brief = run(base, "brief").await;
    let kept = run(base, "kept").await;
    let failing = run(base, "failing").await;

    let started = Instant::now();
    while status_of(base, &brief).await != StatusCode::NOT_FOUND
        || status_of(base, &failing).await != StatusCode::NOT_FOUND
    {
        assert!(started.elapsed() < DEADLINE, "not pruned in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pruned sweeps after it ended; a completed execution of a definition without a retention
    // follows the default (7 days) and is still there.
    let (status, body) = call(base, Method::GET, &format!("/api/v1/jobs/{kept}/status"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_short_retention_prunes_and_the_default_keeps() {
    on_postgres("naxos_retention", short_retention_goes_and_the_rest_stays).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lmdb_a_short_retention_prunes_and_the_default_keeps() {
    short_retention_goes_and_the_rest_stays(&[]).await;
}
