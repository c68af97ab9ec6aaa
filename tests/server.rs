//! The real server binary (`examples/server`), started on a free port and driven over HTTP.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use naxos::serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SAMPLE_2: &str = r#"{ "id": "sample-2", "name": "Parallel Task Execution",
  "tasks": { "task1": {"id":"task1","name":"Initial Task","maxRetry":3,"functionName":"Task1"},
             "task2": {"id":"task2","name":"Parallel Task A","maxRetry":2,"functionName":"Task2"},
             "task3": {"id":"task3","name":"Parallel Task B","maxRetry":2,"functionName":"Task3"},
             "task4": {"id":"task4","name":"Final Task","maxRetry":1,"functionName":"Task4"} },
  "graph": { "task1": [], "task2": ["task1"], "task3": ["task1"], "task4": ["task2","task3"] } }"#;

const DEADLINE: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/server`, which `cargo test` builds with the other examples.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let bin = dir.join("examples").join("server");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds the examples",
        bin.display()
    );
    bin
}

fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(server_binary());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NAXOS_")) {
        cmd.env_remove(k);
    }
    cmd.env("RUST_LOG", "warn").envs(env.iter().copied());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd
}

struct Server {
    child: Child,
    base: String,
    banner: String,
}

/// Starts the server on port 0 and reads the address from its banner.
async fn start() -> Server {
    start_with(&[]).await
}

/// Starts the server on port 0 with more environment, and reads the address from its banner.
async fn start_with(env: &[(&str, &str)]) -> Server {
    let mut all = vec![("NAXOS_SERVER_PORT", "0")];
    all.extend_from_slice(env);
    let mut child = command(&all).spawn().expect("spawn server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let banner = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a banner within the deadline")
        .unwrap()
        .expect("the server printed a banner");
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in banner: {banner}"))
        .to_string();
    Server { child, base, banner }
}

async fn call(base: &str, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = client.request(req).await.expect("request");
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, naxos::serde_json::from_slice(&bytes).expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_sample_runs_to_completion_over_http() {
    let mut server = start().await;
    let base = server.base.clone();

    let (status, list) = call(&base, Method::GET, "/api/v1/job-definitions", "").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["sample-1", "sample-2"], "both samples are pre-registered");

    // The original's JSON, verbatim, is identical to the pre-registered sample.
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", SAMPLE_2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["id"].clone(), body["version"].clone()),
        (json!("sample-2"), json!(1))
    );

    let (status, body) = call(
        &base,
        Method::POST,
        "/api/v1/jobs/sample-2/execute",
        r#"{"sleepMs": 20}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();

    let started = Instant::now();
    let exec = loop {
        let (status, exec) = call(&base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(status, StatusCode::OK);
        if exec["status"] == "COMPLETED" || exec["status"] == "FAILED" {
            break exec;
        }
        assert!(started.elapsed() < DEADLINE, "not finished in time: {exec}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    for task in exec["tasks"].as_array().unwrap() {
        assert_eq!(task["status"], "COMPLETED");
        assert_eq!(task["output"]["sleptMs"], 20);
    }

    let (status, sys) = call(&base, Method::GET, "/api/v1/system/status", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sys["executedJobs"], 1);
    let (status, _) = call(&base, Method::GET, "/health", "").await;
    assert_eq!(status, StatusCode::OK);

    // SIGTERM: a graceful stop that exits 0.
    let pid = server.child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    for (variable, value) in [
        ("NAXOS_SERVER_PORT", "eighty"),
        ("NAXOS_WORKER_CONCURRENCY", "0"),
        ("NAXOS_ROLE", "boss"),
        ("NAXOS_LMDB_PATH", "/tmp/nowhere"),
        ("NAXOS_API_TOKEN", "secret"),
    ] {
        let out = command(&[(variable, value)]).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(variable), "{variable}={value}: {stderr}");
    }
}

/// Polls an execution's status until it is finished, within the deadline.
async fn finished(base: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, exec) = call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        if matches!(exec["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED")) {
            return exec;
        }
        assert!(started.elapsed() < DEADLINE, "not finished in time: {exec}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server on PostgreSQL is killed with SIGKILL mid-run and started again on the same
/// database: every execution completes, and no task that had completed runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_on_postgres_loses_nothing() {
    kill_9_mid_run(None).await;
}

/// The same on the full stack, PostgreSQL and RabbitMQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_on_postgres_and_rabbitmq_loses_nothing() {
    let Some(amqp) = naxos_core::testkit::service_url("NAXOS_TEST_AMQP_URL") else {
        return;
    };
    kill_9_mid_run(Some(amqp)).await;
}

async fn kill_9_mid_run(amqp: Option<String>) {
    use naxos_postgres::sqlx::{self, Connection};
    let Some(url) = naxos_core::testkit::service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let database = format!("naxos_kill_{}", &naxos::uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let db_url = format!("{}/{database}", url.rsplit_once('/').unwrap().0);
    let mut env = vec![
        ("NAXOS_POSTGRES_URL", db_url.as_str()),
        ("NAXOS_LEASE_TTL_MS", "1500"),
        ("NAXOS_REPUBLISH_AFTER_MS", "1000"),
        ("NAXOS_SWEEP_INTERVAL_MS", "200"),
    ];
    if let Some(amqp) = &amqp {
        env.push(("NAXOS_AMQP_URL", amqp.as_str()));
    }
    let mut first = start_with(&env).await;
    assert!(first.banner.contains(if amqp.is_some() {
        "queue rabbitmq"
    } else {
        "queue memory"
    }));
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (status, body) = call(
            &first.base,
            Method::POST,
            "/api/v1/jobs/sample-2/execute",
            r#"{"sleepMs": 150}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["executionId"].as_str().unwrap().to_string());
    }
    let mut db = sqlx::PgConnection::connect(&db_url).await.unwrap();
    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_tasks WHERE status = 'COMPLETED'")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if done >= 20 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().await.expect("SIGKILL");
    let completed: Vec<(naxos::ExecutionId, String)> =
        sqlx::query_as("SELECT execution_id, task_id FROM naxos_tasks WHERE status = 'COMPLETED'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_tasks WHERE status <> 'COMPLETED'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(unfinished > 0, "the kill should land mid-run");

    let mut second = start_with(&env).await;
    for id in &ids {
        let exec = finished(&second.base, id).await;
        assert_eq!(exec["status"], "COMPLETED", "{exec}");
        for task in exec["tasks"].as_array().unwrap() {
            assert_eq!(task["status"], "COMPLETED");
            assert_eq!(task["output"]["sleptMs"], 150);
            let key = (id.parse().unwrap(), task["taskId"].as_str().unwrap().to_string());
            if completed.contains(&key) {
                assert_eq!(task["attempts"], 1, "{key:?} completed before the kill and ran again");
            }
        }
    }
    second.child.kill().await.unwrap();
    db.close().await.unwrap();
}
