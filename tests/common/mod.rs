//! Helpers for tests that run the real server binary (`examples/server`) as processes.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use naxos::serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const SAMPLE_2: &str = r#"{ "id": "sample-2", "name": "Parallel Task Execution",
  "tasks": { "task1": {"id":"task1","name":"Initial Task","maxRetry":3,"functionName":"Task1"},
             "task2": {"id":"task2","name":"Parallel Task A","maxRetry":2,"functionName":"Task2"},
             "task3": {"id":"task3","name":"Parallel Task B","maxRetry":2,"functionName":"Task3"},
             "task4": {"id":"task4","name":"Final Task","maxRetry":1,"functionName":"Task4"} },
  "graph": { "task1": [], "task2": ["task1"], "task3": ["task1"], "task4": ["task2","task3"] } }"#;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/server`, which `cargo test` builds with the other examples.
pub fn server_binary() -> PathBuf {
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

pub fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(server_binary());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NAXOS_")) {
        cmd.env_remove(k);
    }
    // `NAXOS_TEST_SERVER_LOG=<filter>` shows the servers' logs (on stderr) at that filter.
    let log = std::env::var("NAXOS_TEST_SERVER_LOG").ok();
    cmd.env("RUST_LOG", log.as_deref().unwrap_or("warn"))
        .envs(env.iter().copied());
    let stderr = if log.is_some() {
        Stdio::inherit()
    } else {
        Stdio::piped()
    };
    cmd.stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
    cmd
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub banner: String,
    /// The LMDB data directory this helper chose (removed when the server is dropped); `None`
    /// when the test chose it (`NAXOS_LMDB_PATH` in its environment), which then owns it.
    pub data: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.data {
            let _ = self.child.start_kill();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh path for a server's LMDB data (not created).
pub fn scratch_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("naxos-test-{what}-{}", naxos::uuid::Uuid::new_v4().simple()))
}

/// Starts the server on port 0 and reads the address from its banner.
pub async fn start() -> Server {
    start_with(&[]).await
}

/// Starts the server on port 0 with more environment, and reads the address from its banner.
pub async fn start_with(env: &[(&str, &str)]) -> Server {
    let mut all = vec![("NAXOS_SERVER_PORT", "0")];
    // Each server its own data directory, unless the test names one (to start again on it).
    let data = (!env.iter().any(|(k, _)| *k == "NAXOS_LMDB_PATH")).then(|| scratch_dir("data"));
    let data_str = data.as_ref().map(|d| d.display().to_string());
    if let Some(d) = &data_str {
        all.push(("NAXOS_LMDB_PATH", d.as_str()));
    }
    all.extend_from_slice(env);
    let mut child = command(&all).spawn().expect("spawn server");
    // Its log is read to the end and dropped: a server that logs more than a pipe holds (64 KiB)
    // would otherwise block on its next line.
    if let Some(mut stderr) = child.stderr.take() {
        tokio::spawn(async move { tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await });
    }
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
    Server {
        child,
        base,
        banner,
        data,
    }
}

pub async fn call(base: &str, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
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

/// Submits a `sample-2` execution with `params` (a JSON object), expects 202, returns its id.
pub async fn submit_sample_2(base: &str, params: &str) -> String {
    let (status, body) = call(base, Method::POST, "/api/v1/jobs/sample-2/execute", params).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["executionId"].as_str().unwrap().to_string()
}

/// Polls an execution's status until it is finished, within the deadline.
pub async fn finished(base: &str, id: &str) -> Value {
    finished_within(base, id, DEADLINE).await
}

/// Polls an execution's status until it is finished, within `deadline`.
pub async fn finished_within(base: &str, id: &str, deadline: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, exec) = call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        if matches!(exec["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED")) {
            return exec;
        }
        assert!(started.elapsed() < deadline, "not finished in time: {exec}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database(url: &str, prefix: &str) -> String {
    use naxos_postgres::sqlx::{self, Connection};
    let database = format!("{prefix}_{}", &naxos::uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{}/{database}", url.rsplit_once('/').unwrap().0)
}

/// A server's call log file (`NAXOS_CALL_LOG`): its path, and the file is removed when this is
/// dropped.
pub struct CallLog(PathBuf);

impl std::ops::Deref for CallLog {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the server with more environment and a call log (`NAXOS_CALL_LOG`) in a fresh file,
/// returned beside the server (read it with [`calls`]; removed when dropped).
pub async fn start_logging_calls(env: &[(&str, &str)]) -> (Server, CallLog) {
    let log = CallLog(scratch_dir("calls"));
    let log_str = log.display().to_string();
    let mut all = env.to_vec();
    all.push(("NAXOS_CALL_LOG", log_str.as_str()));
    (start_with(&all).await, log)
}

/// The calls a server's `NAXOS_CALL_LOG` recorded, in order: (execution id, task id).
pub fn calls(log: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let execution = words.next().unwrap_or_default().to_string();
            (execution, words.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// Runs `test` with the environment of a server on LMDB in a fresh data directory named after
/// `what` (removed afterwards).
pub async fn on_lmdb(what: &str, test: impl AsyncFnOnce(&[(&str, &str)])) {
    let data = scratch_dir(what);
    let path = data.display().to_string();
    test(&[("NAXOS_LMDB_PATH", path.as_str())]).await;
    let _ = std::fs::remove_dir_all(&data);
}

/// Runs `test` with the environment of a server on PostgreSQL, in a fresh database named after
/// `prefix`; without the test PostgreSQL it returns (under `CI=true` it fails instead).
pub async fn on_postgres(prefix: &str, test: impl AsyncFnOnce(&[(&str, &str)])) {
    let Some(url) = naxos_core::testkit::service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let db = fresh_database(&url, prefix).await;
    test(&[("NAXOS_POSTGRES_URL", db.as_str())]).await;
}

/// Sends SIGTERM and expects a clean exit (status 0) within the deadline.
pub async fn stop_gracefully(server: &mut Server) {
    let pid = server.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let exit = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
}

/// A GET whose body is read whole as text (for server-sent events, which end with the stream).
pub async fn get_text(base: &str, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("{base}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.request(req).await.expect("request");
    let status = res.status();
    let body = tokio::time::timeout(DEADLINE, res.into_body().collect())
        .await
        .expect("the body ends within the deadline")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Runs `scripts/services.sh <command>` (a restart of the test run's PostgreSQL or RabbitMQ).
pub async fn services(command: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
    let status = tokio::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "services.sh {command}");
}

/// The URLs of the test PostgreSQL and RabbitMQ, or `None` to skip (outside CI, when they are not
/// configured; under `CI=true` a missing one fails instead).
pub fn both_services() -> Option<(String, String)> {
    let pg = naxos_core::testkit::service_url("NAXOS_TEST_POSTGRES_URL");
    let amqp = naxos_core::testkit::service_url("NAXOS_TEST_AMQP_URL");
    pg.zip(amqp)
}

/// A node (API and worker) named `id` on the backends of `env`.
pub async fn named_node(env: &[(&str, &str)], id: &str) -> Server {
    let mut all = env.to_vec();
    all.push(("NAXOS_NODE_ID", id));
    let server = start_with(&all).await;
    assert!(server.banner.contains(&format!("node {id},")), "{}", server.banner);
    server
}

/// Polls the executions `ids` until one shows its task `task_id` QUEUED with `blockedBy`
/// `reason`, within [`DEADLINE`]; returns that task.
pub async fn until_blocked(base: &str, ids: &[String], task_id: &str, reason: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut last = Value::Null;
        for id in ids {
            let (status, exec) = call(base, hyper::Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
            assert_eq!(status, hyper::StatusCode::OK, "{exec}");
            let run = task(&exec, task_id);
            if run["status"] == "QUEUED" && run["blockedBy"] == reason {
                return run.clone();
            }
            last = exec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run seen blocked by `{reason}`; the last: {last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The task `id` of an execution's status JSON.
pub fn task<'a>(exec: &'a Value, id: &str) -> &'a Value {
    exec["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskId"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {exec}"))
}

/// Starts an execution of `definition` with `params`, expects 202, returns its id.
pub async fn execute(base: &str, definition: &str, params: Value) -> String {
    let path = format!("/api/v1/jobs/{definition}/execute");
    let (status, body) = call(base, Method::POST, &path, &params.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["executionId"].as_str().unwrap().to_string()
}
