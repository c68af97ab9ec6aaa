//! Fan-outs (`forEach`) over HTTP on the real server binary, on each of its Stores (memory,
//! LMDB — the default —, PostgreSQL): the instances in the status, the outputs in order for
//! the task below, a failed instance, the 422s of registration, a fan-out across a `kill -9`,
//! and wide fan-outs (their time printed, for BENCHMARKS.md).

mod common;

use std::time::{Duration, Instant};

use common::{
    call, calls, execute, finished, finished_within, fresh_database, on_lmdb, on_postgres, scratch_dir,
    start_logging_calls, start_with, task,
};
use hyper::{Method, StatusCode};
use naxos::serde_json::{json, Value};

/// `each` echoes each item of `params.items` (the demo `echo`: its params, upstream, item and
/// index); `join` echoes what it got.
const FANOUT: &str = r#"{ "id": "fanout", "tasks": {
    "each": {"id": "each", "functionName": "echo", "forEach": "params.items", "maxFanOut": 5},
    "join": {"id": "join", "functionName": "echo"} },
  "graph": { "join": ["each"] } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_over_http_in_memory() {
    fan_outs(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_over_http_on_lmdb() {
    on_lmdb("fanout", fan_outs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_over_http_on_postgres() {
    on_postgres("naxos_fanout", fan_outs).await;
}

async fn fan_outs(env: &[(&str, &str)]) {
    let mut server = start_with(env).await;
    let base = server.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", FANOUT).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let id = execute(&base, "fanout", json!({"items": ["a", "b", "c"]})).await;
    let exec = finished(&base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let each = task(&exec, "each");
    assert_eq!(
        (&each["forEach"], &each["maxFanOut"]),
        (&json!("params.items"), &json!(5))
    );
    let items: Vec<(Value, Value)> = each["output"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {each}"))
        .iter()
        .map(|o| (o["index"].clone(), o["item"].clone()))
        .collect();
    assert_eq!(
        items,
        [(json!(0), json!("a")), (json!(1), json!("b")), (json!(2), json!("c"))],
        "one output per item, in order"
    );
    let instances = each["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("instances: {each}"));
    let summary: Vec<(Value, Value, Value)> = instances
        .iter()
        .map(|i| (i["index"].clone(), i["status"].clone(), i["attempts"].clone()))
        .collect();
    assert_eq!(
        summary,
        (0..3)
            .map(|i| (json!(i), json!("COMPLETED"), json!(1)))
            .collect::<Vec<_>>()
    );
    assert_eq!(instances[1]["output"], each["output"][1]);
    let ids: Vec<&str> = exec["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["taskId"].as_str())
        .collect();
    assert_eq!(ids, ["each", "join"], "instances are folded under their task");
    assert_eq!(task(&exec, "join")["output"]["upstream"]["each"], each["output"]);

    // An empty list completes at once; a list over maxFanOut fails naming both.
    let empty = finished(&base, &execute(&base, "fanout", json!({"items": []})).await).await;
    assert_eq!(empty["status"], "COMPLETED", "{empty}");
    assert_eq!(
        (&task(&empty, "each")["output"], &task(&empty, "each")["instances"]),
        (&json!([]), &json!([]))
    );
    let long = finished(
        &base,
        &execute(&base, "fanout", json!({"items": [1, 2, 3, 4, 5, 6]})).await,
    )
    .await;
    assert_eq!(long["status"], "FAILED");
    assert_eq!(
        long["error"],
        "task `each` failed: forEach gave 6 items, more than maxFanOut 5"
    );

    // An instance that fails for good fails its task and the execution, naming it.
    const FAILING: &str = r#"{ "id": "failing", "tasks": {
        "each": {"id": "each", "functionName": "fail", "forEach": "params.items"} } }"#;
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", FAILING).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let failed = finished(&base, &execute(&base, "failing", json!({"items": [1, 2]})).await).await;
    assert_eq!(failed["status"], "FAILED");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("task `each` failed: instance ") && error.ends_with("failed: this task always fails"),
        "{error}"
    );

    // Registration refuses, naming the task and the field.
    for (definition, expected) in [
        (
            r#"{"id": "bad1", "tasks": {"t": {"id": "t", "functionName": "echo", "forEach": "params.xs",
                "when": "item > 1"}}}"#,
            "task `t` has an invalid `when` condition: it reads `item`",
        ),
        (
            r#"{"id": "bad2", "tasks": {"t": {"id": "t", "waitFor": {"signal": "go"}, "forEach": "params.xs"}}}"#,
            "task `t` has an invalid `forEach`: a fan-out runs a function per item",
        ),
        (
            r#"{"id": "bad3", "tasks": {"t": {"id": "t", "functionName": "echo", "forEach": "params.xs",
                "maxFanOut": 20000}}}"#,
            "task `t` has an invalid `maxFanOut`: 20000 is over the limit of 10000",
        ),
    ] {
        let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", definition).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains(expected), "{body}");
    }
    server.child.kill().await.unwrap();
}

/// Three instances of the demo `flaky`, the middle one failing twice (`{"failTimes": 2}` as its
/// item) under `maxRetry` 3; then `join`. The failing instance alone is retried (the call log
/// shows the others ran once), and the join runs exactly once, after it.
async fn a_failing_instance_is_retried_alone(env: &[(&str, &str)]) {
    const RETRIED: &str = r#"{ "id": "retried", "tasks": {
        "each": {"id": "each", "functionName": "flaky", "forEach": "params.items", "maxRetry": 3,
                 "backoff": {"initialMs": 50, "maxMs": 100, "multiplier": 2, "jitter": 0}},
        "join": {"id": "join", "functionName": "echo"} },
      "graph": { "join": ["each"] } }"#;
    let (mut server, log) = start_logging_calls(env).await;
    let base = server.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", RETRIED).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let items = json!([{"failTimes": 0}, {"failTimes": 2}, {"failTimes": 0}]);
    let id = execute(&base, "retried", json!({ "items": items })).await;
    let exec = finished(&base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let each = task(&exec, "each");
    let attempts: Vec<&Value> = each["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["attempts"])
        .collect();
    assert_eq!(attempts, [&json!(1), &json!(3), &json!(1)], "{each}");
    assert_eq!(each["output"], json!([{"attempt": 1}, {"attempt": 3}, {"attempt": 1}]));
    let mine: Vec<String> = calls(&log)
        .into_iter()
        .filter(|(e, _)| *e == id)
        .map(|(_, t)| t)
        .collect();
    let count = |t: &str| mine.iter().filter(|m| *m == t).count();
    assert_eq!(
        (count("each[0]"), count("each[1]"), count("each[2]"), count("join")),
        (1, 3, 1, 1),
        "the failing instance alone was retried, and the join ran once: {mine:?}"
    );
    assert_eq!(mine.last().map(String::as_str), Some("join"), "the join ran last");
    server.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_is_retried_alone_in_memory() {
    a_failing_instance_is_retried_alone(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_is_retried_alone_on_postgres() {
    on_postgres("naxos_fanout_retry", a_failing_instance_is_retried_alone).await;
}

/// Eight instances of a 400 ms task on two worker slots; the server is killed (SIGKILL) once
/// one has completed and started again on the same data: the fan-out completes with all eight
/// outputs in order, and the task below runs once.
async fn a_fan_out_survives_kill_9(env: &[(&str, &str)]) {
    const SLOW: &str = r#"{ "id": "slow", "tasks": {
        "each": {"id": "each", "functionName": "sleep", "forEach": "params.items"},
        "after": {"id": "after", "functionName": "echo"} },
      "graph": { "after": ["each"] } }"#;
    let mut all = env.to_vec();
    all.extend([
        ("NAXOS_WORKER_CONCURRENCY", "2"),
        ("NAXOS_LEASE_TTL_MS", "1500"),
        ("NAXOS_SWEEP_INTERVAL_MS", "300"),
    ]);
    let mut first = start_with(&all).await;
    let base = first.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", SLOW).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = execute(&base, "slow", json!({"items": [0, 1, 2, 3, 4, 5, 6, 7], "ms": 400})).await;
    let started = Instant::now();
    loop {
        let (_, exec) = call(&base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        let done = task(&exec, "each")["instances"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["status"] == "COMPLETED"));
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no instance completed: {exec}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().await.expect("SIGKILL");
    let second = start_with(&all).await;
    let exec = finished(&second.base, &id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let each = task(&exec, "each");
    assert_eq!(each["output"], json!(vec![json!({"sleptMs": 400}); 8]));
    let instances = each["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 8);
    assert!(instances.iter().all(|i| i["status"] == "COMPLETED"), "{each}");
    assert_eq!(task(&exec, "after")["attempts"], 1, "the fan-in ran once");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_survives_kill_9_on_lmdb() {
    on_lmdb("fanout-restart", a_fan_out_survives_kill_9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_survives_kill_9_on_postgres() {
    on_postgres("naxos_fanout_restart", a_fan_out_survives_kill_9).await;
}

/// A fan-out of `width` instances of a no-op task (the demo `Task1`), on `env`'s Store; prints
/// how long the execution took from submit to finish.
async fn a_wide_fan_out(env: &[(&str, &str)], store: &str, width: usize) {
    const WIDE: &str = r#"{ "id": "wide", "tasks": {
        "each": {"id": "each", "functionName": "Task1", "forEach": "params.items", "maxFanOut": 10000} } }"#;
    let mut server = start_with(env).await;
    let base = server.base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", WIDE).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let began = Instant::now();
    let id = execute(&base, "wide", json!({"items": (0..width).collect::<Vec<_>>()})).await;
    let exec = finished_within(&base, &id, Duration::from_secs(600)).await;
    let took = began.elapsed();
    assert_eq!(exec["status"], "COMPLETED", "{}", exec["error"]);
    assert_eq!(task(&exec, "each")["output"].as_array().map(Vec::len), Some(width));
    println!("a fan-out of {width} no-op instances over HTTP on {store}: {took:?}");
    server.child.kill().await.unwrap();
}

/// How wide the fan-out of [`wide_fan_outs_complete_on_every_store`] is on a durable Store:
/// `NAXOS_FANOUT_WIDTH`, default 200 (1,000 in memory). A transition of a fan-out loads and
/// writes the execution whole, so a debug build takes minutes for 1,000 on PostgreSQL; the
/// figures for 1,000 come from a release build (BENCHMARKS.md, "Fan-out").
fn width() -> usize {
    std::env::var("NAXOS_FANOUT_WIDTH")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_fan_outs_complete_on_every_store() {
    a_wide_fan_out(&[("NAXOS_STORE", "memory")], "memory", width().max(1_000)).await;
    let data = scratch_dir("fanout-wide");
    let path = data.display().to_string();
    a_wide_fan_out(&[("NAXOS_LMDB_PATH", path.as_str())], "LMDB", width()).await;
    let _ = std::fs::remove_dir_all(&data);
    if let Some(url) = naxos_core::testkit::service_url("NAXOS_TEST_POSTGRES_URL") {
        let db = fresh_database(&url, "naxos_fanout_wide").await;
        a_wide_fan_out(&[("NAXOS_POSTGRES_URL", db.as_str())], "PostgreSQL", width()).await;
    }
}
