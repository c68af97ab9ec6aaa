//! Priorities across a cluster on PostgreSQL and RabbitMQ, with real server processes: 2,000
//! executions of priority 0 are queued through an API node, two worker nodes start draining
//! them, and an execution of priority 9 submitted then starts after at most
//! nodes × (prefetch + concurrency) lower-priority starts (the attempts' start times in the
//! Store say which started when).

mod common;

use std::time::{Duration, Instant};

use common::{call, execute, Server};
use hyper::{Method, StatusCode};
use naxos::serde_json::json;
use naxos_postgres::sqlx::{self, Connection, PgConnection};

/// Executions of priority 0 queued before the one of priority 9.
const BACKLOG: usize = 2_000;
/// Each node's workers (and so its prefetch: the engine consumes with one per worker).
const CONCURRENCY: usize = 4;
const NODES: usize = 2;
/// How long each task sleeps: long enough that the backlog lasts while the test looks.
const TASK_MS: u64 = 50;

const DEFINITION: &str = r#"{ "id": "backlog", "tasks": {
    "a": {"id": "a", "functionName": "sleep"} } }"#;

async fn node(env: &[(&str, String)], role: &str, id: &str) -> Server {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("NAXOS_ROLE", role));
    all.push(("NAXOS_NODE_ID", id));
    common::start_with(&all).await
}

/// How many attempts have started, of every execution but `except`.
async fn starts(db: &mut PgConnection, except: naxos::uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM naxos_attempts WHERE execution_id <> $1")
        .bind(except)
        .fetch_one(&mut *db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_9_execution_overtakes_a_backlog_on_rabbitmq() {
    let Some((pg, amqp)) = common::both_services() else {
        return;
    };
    let db_url = common::fresh_database(&pg, "naxos_priorities").await;
    let concurrency = CONCURRENCY.to_string();
    let env = vec![
        ("NAXOS_POSTGRES_URL", db_url.clone()),
        ("NAXOS_AMQP_URL", amqp),
        ("NAXOS_AMQP_PREFIX", naxos_core::testkit::unique_id("priorities")),
        ("NAXOS_WORKER_CONCURRENCY", concurrency),
    ];
    let api = node(&env, "api", "api").await;
    let (status, body) = call(&api.base, Method::POST, "/api/v1/job-definitions", DEFINITION).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The backlog, through the API node alone: nothing consumes it yet.
    let submitted = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let base = api.base.clone();
        clients.spawn(async move {
            for _ in (client..BACKLOG).step_by(8) {
                execute(&base, "backlog", json!({ "ms": TASK_MS })).await;
            }
        });
    }
    clients.join_all().await;
    eprintln!("{BACKLOG} executions submitted in {:?}", submitted.elapsed());

    // Two workers start draining it; once they have started some, priority 9 comes.
    let mut db = PgConnection::connect(&db_url).await.unwrap();
    let _workers = [
        node(&env, "worker", "worker-1").await,
        node(&env, "worker", "worker-2").await,
    ];
    let nobody = naxos::uuid::Uuid::nil();
    let deadline = Instant::now() + common::DEADLINE;
    while starts(&mut db, nobody).await < (NODES * CONCURRENCY) as i64 {
        assert!(Instant::now() < deadline, "the workers never started the backlog");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every start counted from here on, up to its own, overtook it (a few during the submit
    // itself, which counts against the bound).
    let before = starts(&mut db, nobody).await;
    let (status, ack) = call(
        &api.base,
        Method::POST,
        "/api/v1/jobs/backlog/execute?priority=9",
        &json!({ "ms": 1 }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    let urgent: naxos::uuid::Uuid = ack["executionId"].as_str().unwrap().parse().unwrap();
    let done = common::finished(&api.base, &urgent.to_string()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["priority"], 9, "{done}");

    // The lower-priority starts between its submission and its start.
    let (overtaken, left): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE a.started_at < u.started_at),
                (SELECT count(*) FROM naxos_executions WHERE status = 'PENDING')
         FROM naxos_attempts a, naxos_attempts u
         WHERE u.execution_id = $1 AND a.execution_id <> $1",
    )
    .bind(urgent)
    .fetch_one(&mut db)
    .await
    .unwrap();
    let overtaken = overtaken - before;
    let bound = (NODES * (CONCURRENCY + CONCURRENCY)) as i64;
    eprintln!("priority 9 overtaken by {overtaken} starts (bound {bound}); {left} of {BACKLOG} still waiting");
    assert!(
        (0..=bound).contains(&overtaken),
        "{overtaken} lower-priority starts overtook it (bound {bound})"
    );
    assert!(
        left > (BACKLOG / 2) as i64,
        "the backlog was still there when it started: {left} waiting"
    );
}
