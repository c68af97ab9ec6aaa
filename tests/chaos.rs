//! The chaos suite: a mixed workload (diamonds, chains, a fan-out, sleeping tasks, tasks that
//! fail and are retried) on 1 api + 2 worker processes of the example server, on PostgreSQL and
//! RabbitMQ, with one fault per scenario: PostgreSQL restarted, naxos's database sessions
//! terminated, RabbitMQ restarted, a worker killed with SIGKILL, a worker frozen (SIGSTOP) past
//! its lease and then thawed, and a worker's link to the broker and to the database gone silent.
//!
//! Each node appends every task-function call to a call log and syncs it before the call
//! returns (`NAXOS_CALL_LOG`), so no count is lost with a killed process. For every scenario:
//! no execution lost, no task outcome recorded twice, and no recorded outcome of a function call
//! the call log did not see (a frozen "zombie" worker may run a call again, but must not record
//! it). It prints one table line a scenario (`cargo test --test chaos -- --nocapture`).
//! Its own test binary: it restarts the shared services.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{call, fresh_database, services, start_with, stop_gracefully, Server};
use hyper::{Method, StatusCode};
use naxos_core::testkit::proxy::{host_port, FreezingProxy};
use naxos_core::testkit::{service_url, unique_id};
use naxos_postgres::sqlx::{self, Connection, PgConnection};

const LEASE_TTL_MS: &str = "1500";
/// How long a frozen process or link stays frozen: past the lease.
const FROZEN: Duration = Duration::from_secs(4);
/// How long the whole workload may take to finish after a fault.
const DRAIN: Duration = Duration::from_secs(120);

const FANOUT: &str = r#"{"id":"chaos-fanout","name":"Fan-out","tasks":{
  "a":{"id":"a","functionName":"sleep","maxRetry":1},
  "b1":{"id":"b1","functionName":"sleep"},"b2":{"id":"b2","functionName":"sleep"},
  "b3":{"id":"b3","functionName":"sleep"},"b4":{"id":"b4","functionName":"sleep"},
  "b5":{"id":"b5","functionName":"sleep"},"b6":{"id":"b6","functionName":"sleep"},
  "b7":{"id":"b7","functionName":"sleep"},"b8":{"id":"b8","functionName":"sleep"},
  "z":{"id":"z","functionName":"echo"}},
  "graph":{"a":[],"b1":["a"],"b2":["a"],"b3":["a"],"b4":["a"],"b5":["a"],"b6":["a"],"b7":["a"],"b8":["a"],
           "z":["b1","b2","b3","b4","b5","b6","b7","b8"]}}"#;
const FLAKY: &str = r#"{"id":"chaos-flaky","name":"Fails once, then works","tasks":{
  "try":{"id":"try","functionName":"flaky","maxRetry":3},
  "after":{"id":"after","functionName":"sleep"}},
  "graph":{"try":[],"after":["try"]}}"#;

/// The workload: definition, params, how many, tasks each. About 8 s of work for the two
/// workers' 32 slots, so that a fault lands with most of it still to do.
const WORKLOAD: [(&str, &str, usize, i64); 4] = [
    ("sample-2", r#"{"sleepMs": 500}"#, 40, 4),
    ("sample-1", r#"{"sleepMs": 500}"#, 20, 3),
    ("chaos-fanout", r#"{"ms": 500}"#, 6, 10),
    ("chaos-flaky", r#"{"failTimes": 1, "ms": 100}"#, 20, 2),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    PostgresRestart,
    TerminateBackends,
    RabbitmqRestart,
    KillWorker,
    FreezeWorker,
    SilentBrokerLink,
    SilentDatabaseLink,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::PostgresRestart,
        Fault::TerminateBackends,
        Fault::RabbitmqRestart,
        Fault::KillWorker,
        Fault::FreezeWorker,
        Fault::SilentBrokerLink,
        Fault::SilentDatabaseLink,
    ];

    /// Whether the fault is worker-1's own (a crash, a freeze, a silent link).
    fn hits_worker1(self) -> bool {
        matches!(
            self,
            Fault::KillWorker | Fault::FreezeWorker | Fault::SilentBrokerLink | Fault::SilentDatabaseLink
        )
    }

    fn name(self) -> &'static str {
        match self {
            Fault::PostgresRestart => "PostgreSQL restarted",
            Fault::TerminateBackends => "pg_terminate_backend of every naxos session",
            Fault::RabbitmqRestart => "RabbitMQ restarted",
            Fault::KillWorker => "kill -9 of a worker (restarted)",
            Fault::FreezeWorker => "SIGSTOP of a worker for 4 s (lease 1.5 s), then SIGCONT",
            Fault::SilentBrokerLink => "a worker's broker link silent for 4 s",
            Fault::SilentDatabaseLink => "a worker's database link silent for 4 s",
        }
    }
}

/// One api and two workers; worker-1 reaches both services through proxies that can go silent.
struct Cluster {
    api: Server,
    workers: Vec<Server>,
    worker1_env: Vec<(&'static str, String)>,
    pg_link: FreezingProxy,
    amqp_link: FreezingProxy,
}

impl Cluster {
    async fn start(db_url: &str, amqp: &str, logs: &Path) -> Self {
        let prefix = unique_id("chaos");
        let common = |node: &str, pg: &str, amqp: &str| -> Vec<(&'static str, String)> {
            vec![
                ("NAXOS_POSTGRES_URL", pg.to_string()),
                ("NAXOS_AMQP_URL", amqp.to_string()),
                ("NAXOS_AMQP_PREFIX", prefix.clone()),
                ("NAXOS_LEASE_TTL_MS", LEASE_TTL_MS.to_string()),
                ("NAXOS_REPUBLISH_AFTER_MS", "1000".to_string()),
                ("NAXOS_SWEEP_INTERVAL_MS", "200".to_string()),
                ("NAXOS_SHUTDOWN_GRACE_MS", "2000".to_string()),
                ("NAXOS_NODE_ID", node.to_string()),
                ("NAXOS_CALL_LOG", logs.join(format!("{node}.log")).display().to_string()),
            ]
        };
        let pg_link = FreezingProxy::start(host_port(db_url)).await;
        let amqp_link = FreezingProxy::start(host_port(amqp)).await;
        let mut api_env = common("api", db_url, amqp);
        api_env.push(("NAXOS_ROLE", "api".into()));
        let api = node(&api_env).await;
        let mut worker1_env = common("worker-1", &pg_link.url_for(db_url), &amqp_link.url_for(amqp));
        worker1_env.push(("NAXOS_ROLE", "worker".into()));
        let mut worker2_env = common("worker-2", db_url, amqp);
        worker2_env.push(("NAXOS_ROLE", "worker".into()));
        // worker-2 runs the tasks that became ready on it while it has a spare slot; worker-1
        // sends every task through the queue (the default): both ways meet every fault.
        worker2_env.push(("NAXOS_RUN_READY_HERE", "true".into()));
        let workers = vec![node(&worker1_env).await, node(&worker2_env).await];
        Self {
            api,
            workers,
            worker1_env,
            pg_link,
            amqp_link,
        }
    }

    fn worker1_pid(&self) -> String {
        self.workers[0].child.id().expect("worker-1 runs").to_string()
    }

    async fn stop(mut self) {
        for w in &mut self.workers {
            stop_gracefully(w).await;
        }
        stop_gracefully(&mut self.api).await;
    }
}

async fn node(env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_with(&env).await
}

fn signal(pid: &str, sig: &str) {
    let sent = std::process::Command::new("kill").args([sig, pid]).status().unwrap();
    assert!(sent.success(), "kill {sig} {pid}");
}

/// Connects to the test database, retrying while it restarts.
async fn connect(db_url: &str) -> PgConnection {
    let started = Instant::now();
    loop {
        match PgConnection::connect(db_url).await {
            Ok(c) => return c,
            Err(e) => assert!(started.elapsed() < DRAIN, "cannot reach the database: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scalar(db_url: &str, sql: &'static str) -> i64 {
    let started = Instant::now();
    loop {
        let mut db = connect(db_url).await;
        match sqlx::query_scalar(sql).fetch_one(&mut db).await {
            Ok(n) => return n,
            Err(e) => assert!(started.elapsed() < DRAIN, "`{sql}`: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits one execution, trying again while the API answers 503 (a backend coming back).
async fn submit(base: &str, definition: &str, params: &str) -> String {
    let started = Instant::now();
    loop {
        let (status, body) = call(
            base,
            Method::POST,
            &format!("/api/v1/jobs/{definition}/execute"),
            params,
        )
        .await;
        if status == StatusCode::ACCEPTED {
            return body["executionId"].as_str().unwrap().to_string();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(started.elapsed() < DRAIN, "the API never took the submit: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// From the end of the fault: how long a new diamond takes to complete.
async fn recovery(base: &str, db_url: &str) -> Duration {
    let started = Instant::now();
    let id = submit(base, "sample-2", r#"{"sleepMs": 0}"#).await;
    let mut db = connect(db_url).await;
    loop {
        let done: Option<bool> =
            sqlx::query_scalar("SELECT status = 'COMPLETED' FROM naxos_executions WHERE id = $1::uuid")
                .bind(&id)
                .fetch_optional(&mut db)
                .await
                .unwrap_or(None);
        if done == Some(true) {
            return started.elapsed();
        }
        assert!(started.elapsed() < DRAIN, "the probe execution never completed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn inject(fault: Fault, cluster: &mut Cluster, db_url: &str) {
    match fault {
        Fault::PostgresRestart => {
            services("stop-postgres").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            services("start-postgres").await;
        }
        Fault::TerminateBackends => {
            let mut db = connect(db_url).await;
            let terminated: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            )
            .fetch_one(&mut db)
            .await
            .unwrap();
            assert!(terminated > 0, "no naxos session to terminate");
        }
        Fault::RabbitmqRestart => {
            services("stop-rabbitmq").await;
            services("start-rabbitmq").await;
        }
        Fault::KillWorker => {
            cluster.workers[0].child.kill().await.expect("SIGKILL worker-1");
            cluster.workers[0] = node(&cluster.worker1_env).await;
        }
        Fault::FreezeWorker => {
            let pid = cluster.worker1_pid();
            signal(&pid, "-STOP");
            tokio::time::sleep(FROZEN).await;
            signal(&pid, "-CONT");
        }
        Fault::SilentBrokerLink => {
            cluster.amqp_link.freeze();
            tokio::time::sleep(FROZEN).await;
            cluster.amqp_link.thaw();
        }
        Fault::SilentDatabaseLink => {
            cluster.pg_link.freeze();
            tokio::time::sleep(FROZEN).await;
            cluster.pg_link.thaw();
        }
    }
}

/// `(execution, task, attempt)` of every call in the nodes' call logs, and how many lines.
fn calls(logs: &Path) -> (HashSet<(String, String, i32)>, usize) {
    let mut seen = HashSet::new();
    let mut lines = 0;
    for entry in std::fs::read_dir(logs).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "a torn call-log line: {line:?}");
            seen.insert((f[0].to_string(), f[1].to_string(), f[2].parse().unwrap()));
            lines += 1;
        }
    }
    (seen, lines)
}

/// One scenario's line of the table.
struct Outcome {
    executions: i64,
    /// Tasks worker-1 was running when the fault came.
    held: i64,
    /// Attempts whose lease expired (taken over by another node).
    expired: i64,
    lost: i64,
    duplicates: i64,
    unlogged: usize,
    calls: usize,
    recorded: usize,
    recovery: Duration,
}

async fn scenario(fault: Fault, pg: &str, amqp: &str) -> Outcome {
    let db_url = fresh_database(pg, "naxos_chaos").await;
    let logs = std::env::temp_dir().join(unique_id("naxos-chaos-calls"));
    std::fs::create_dir_all(&logs).unwrap();
    let mut cluster = Cluster::start(&db_url, amqp, &logs).await;
    let base = cluster.api.base.clone();
    for definition in [FANOUT, FLAKY] {
        let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", definition).await;
        assert!(status.is_success(), "{body}");
    }
    // Submitted all at once, the workload then runs for several seconds.
    let submits = WORKLOAD
        .iter()
        .flat_map(|&(definition, params, n, _)| (0..n).map(move |_| (definition, params)));
    futures_util::future::join_all(submits.map(|(definition, params)| submit(&base, definition, params))).await;
    let mut total: i64 = WORKLOAD.iter().map(|w| w.2 as i64).sum();
    let tasks: i64 = WORKLOAD.iter().map(|w| w.2 as i64 * w.3).sum();
    // The fault lands mid-run: once a quarter of the tasks completed.
    let started = Instant::now();
    while scalar(&db_url, "SELECT count(*) FROM naxos_tasks WHERE status = 'COMPLETED'").await < tasks / 4 {
        assert!(started.elapsed() < DRAIN, "no progress before the fault");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fault of worker-1 lands while it runs tasks, so that it has something to lose.
    let held_sql = "SELECT count(*) FROM naxos_tasks WHERE status = 'RUNNING' AND lease_owner = 'worker-1'";
    let mut held = scalar(&db_url, held_sql).await;
    while fault.hits_worker1() && held < 2 {
        assert!(started.elapsed() < DRAIN, "worker-1 never ran two tasks at once");
        tokio::time::sleep(Duration::from_millis(5)).await;
        held = scalar(&db_url, held_sql).await;
    }
    inject(fault, &mut cluster, &db_url).await;
    let recovery = recovery(&base, &db_url).await;
    total += 1;

    let started = Instant::now();
    while scalar(
        &db_url,
        "SELECT count(*) FROM naxos_executions WHERE status IN ('PENDING', 'RUNNING')",
    )
    .await
        > 0
    {
        assert!(started.elapsed() < DRAIN, "{}: executions never finished", fault.name());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;

    let mut db = connect(&db_url).await;
    let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_executions")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(executions, total, "every submit made one execution");
    let lost: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_executions WHERE status <> 'COMPLETED'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    // A task whose attempts disagree with its history, or that completed other than once.
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM naxos_tasks t WHERE t.attempts <> (
             SELECT count(*) FROM naxos_attempts a WHERE a.execution_id = t.execution_id AND a.task_id = t.task_id)
         OR 1 <> (SELECT count(*) FROM naxos_attempts a
                  WHERE a.execution_id = t.execution_id AND a.task_id = t.task_id AND a.outcome = 'COMPLETED')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    // Every outcome a function call produced, as recorded.
    let recorded: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT execution_id::text, task_id, attempt FROM naxos_attempts
         WHERE outcome IN ('COMPLETED', 'RETRYING', 'FAILED')",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let expired: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_attempts WHERE outcome = 'EXPIRED'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let (seen, lines) = calls(&logs);
    let unlogged = recorded.iter().filter(|r| !seen.contains(*r)).count();
    let _ = std::fs::remove_dir_all(&logs);
    Outcome {
        executions,
        held,
        expired,
        lost,
        duplicates,
        unlogged,
        calls: lines,
        recorded: recorded.len(),
        recovery,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_loses_nothing_and_records_each_outcome_once() {
    let Some((pg, amqp)) = common::both_services() else {
        return;
    };
    service_url("NAXOS_SERVICES_DIR").expect("the running services' directory");
    println!(
        "| scenario | executions | tasks worker-1 held | leases expired | lost | outcomes recorded twice \
         | outcomes no call made | calls logged | outcomes recorded | recovery |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // NAXOS_CHAOS_ONLY=<words> runs the scenarios whose name contains them (for debugging).
    let only = std::env::var("NAXOS_CHAOS_ONLY").unwrap_or_default();
    for fault in Fault::ALL.into_iter().filter(|f| f.name().contains(only.as_str())) {
        let o = scenario(fault, &pg, &amqp).await;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ms |",
            fault.name(),
            o.executions,
            o.held,
            o.expired,
            o.lost,
            o.duplicates,
            o.unlogged,
            o.calls,
            o.recorded,
            o.recovery.as_millis()
        );
        assert_eq!(o.lost, 0, "{}: executions lost", fault.name());
        assert_eq!(o.duplicates, 0, "{}: outcomes recorded twice", fault.name());
        assert_eq!(o.unlogged, 0, "{}: outcomes recorded of calls never made", fault.name());
        assert!(o.calls >= o.recorded, "{}: fewer calls than outcomes", fault.name());
    }
}
