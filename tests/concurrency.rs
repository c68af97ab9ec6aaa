//! Concurrency limits (`"concurrency": {"limit", "key"}`, DESIGN §8) over HTTP on the real
//! server binary. On each of its Stores (memory, LMDB — the default —, PostgreSQL): a limit of
//! 2 is reached and never exceeded, from the start and end times of every attempt, while the
//! runs over it wait QUEUED with `blockedBy: "concurrency"`; a limit of 1 per `params.tenant`
//! holds per tenant while the two tenants run side by side. On two nodes sharing PostgreSQL and
//! RabbitMQ: 200 executions under a limit of 2, one node killed with SIGKILL while it holds a
//! slot — its attempt ends EXPIRED when its lease runs out, the limit holds throughout (the dead
//! attempt counting until its recorded end), and every execution completes.

mod common;

use std::time::Duration;

use common::{call, execute, finished, on_lmdb, on_postgres, start_with, stop_gracefully, task};
use hyper::{Method, StatusCode};
use naxos::chrono::{DateTime, Utc};
use naxos::serde_json::json;
use naxos_postgres::sqlx::{self, Connection, PgConnection};
use tokio::time::Instant;

/// One task, the demo `sleep` (`params.ms`), at most 2 runs at once across all executions.
const THROTTLED: &str = r#"{ "id": "throttled", "tasks": {
    "work": {"id": "work", "functionName": "sleep", "concurrency": {"limit": 2}} },
  "graph": { "work": [] } }"#;

/// The same at most 1 run at once per `params.tenant`.
const PER_TENANT: &str = r#"{ "id": "per-tenant", "tasks": {
    "work": {"id": "work", "functionName": "sleep", "concurrency": {"limit": 1, "key": "params.tenant"}} },
  "graph": { "work": [] } }"#;

/// Executions of `throttled` on one server, and how long each sleeps (ms).
const THROTTLED_RUNS: usize = 30;
const THROTTLED_MS: u64 = 100;

/// Executions of `per-tenant` per tenant, and how long each sleeps (ms): each tenant's runs
/// follow one another for 3 × 400 ms, so the two tenants' sequences, started together, can only
/// miss each other if one waits for the other — if the key did not split the limit.
const TENANT_RUNS: usize = 3;
const TENANT_MS: u64 = 400;

/// A time span, start included, end excluded: a run that starts when another ends does not
/// overlap it.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// An attempt as PostgreSQL records it: started, ended (`None` while it runs), outcome.
type AttemptRow = (DateTime<Utc>, Option<DateTime<Utc>>, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_in_memory() {
    limits_hold(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_on_lmdb() {
    on_lmdb("concurrency", limits_hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_on_postgres() {
    on_postgres("naxos_concurrency", limits_hold).await;
}

/// Both definitions run at once on one server: `throttled` reaches 2 runs at once and never
/// more; `per-tenant` reaches 1 per tenant and never more, and the tenants overlap.
async fn limits_hold(env: &[(&str, &str)]) {
    let mut server = start_with(env).await;
    let base = server.base.clone();
    for definition in [THROTTLED, PER_TENANT] {
        let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", definition).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let mut tenants: Vec<(&str, String)> = Vec::new();
    for _ in 0..TENANT_RUNS {
        for tenant in ["a", "b"] {
            let id = execute(&base, "per-tenant", json!({"tenant": tenant, "ms": TENANT_MS})).await;
            tenants.push((tenant, id));
        }
    }
    // While they run, the runs over the limit wait QUEUED, blocked by it.
    let tenant_ids: Vec<String> = tenants.iter().map(|(_, id)| id.clone()).collect();
    blocked_seen(&base, &tenant_ids).await;
    let mut throttled = Vec::new();
    for _ in 0..THROTTLED_RUNS {
        throttled.push(execute(&base, "throttled", json!({"ms": THROTTLED_MS})).await);
    }
    blocked_seen(&base, &throttled).await;

    let mut spans = Vec::new();
    for id in &throttled {
        spans.push(completed_once(&base, id, THROTTLED_MS).await);
    }
    assert_eq!(max_overlap(&spans), 2, "`throttled` runs at once (limit 2): {spans:?}");

    let mut by_tenant: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
    for (tenant, id) in &tenants {
        by_tenant[usize::from(*tenant == "b")].push(completed_once(&base, id, TENANT_MS).await);
    }
    for (tenant, spans) in ["a", "b"].iter().zip(&by_tenant) {
        assert_eq!(
            max_overlap(spans),
            1,
            "tenant {tenant}'s runs at once (limit 1 per tenant): {spans:?}"
        );
    }
    let all: Vec<Span> = by_tenant.concat();
    assert_eq!(
        max_overlap(&all),
        2,
        "the two tenants' runs overlapped (the key splits the limit): {by_tenant:?}"
    );
    server.child.kill().await.unwrap();
}

/// Polls the executions `ids` until one shows its task QUEUED with `blockedBy: "concurrency"`,
/// within the tests' deadline.
async fn blocked_seen(base: &str, ids: &[String]) {
    common::until_blocked(base, ids, "work", "concurrency").await;
}

/// Waits for execution `id` to finish and expects it COMPLETED, its one task run once (so its
/// `startTime` and `endTime` are those of its only attempt) for `ms`, no longer blocked; returns
/// that attempt's span.
async fn completed_once(base: &str, id: &str, ms: u64) -> Span {
    let exec = finished(base, id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let work = task(&exec, "work");
    assert_eq!(work["attempts"], 1, "{exec}");
    assert!(work.get("blockedBy").is_none(), "{exec}");
    assert_eq!(work["output"], json!({"sleptMs": ms}), "{exec}");
    let time = |field: &str| -> DateTime<Utc> {
        let text = work[field].as_str().unwrap_or_else(|| panic!("{field} of {exec}"));
        text.parse().unwrap_or_else(|e| panic!("{field} `{text}`: {e}"))
    };
    let span = (time("startTime"), time("endTime"));
    assert!(span.0 < span.1, "{exec}");
    span
}

/// The most spans that share an instant (a span ending at the instant another starts does not
/// share it).
fn max_overlap(spans: &[Span]) -> usize {
    // At one instant, ends (-1) before starts (+1).
    let mut edges: Vec<(DateTime<Utc>, i32)> = spans.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    edges.sort();
    let (mut now, mut most) = (0_i32, 0_i32);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or_default()
}

#[test]
fn max_overlap_counts_shared_instants_only() {
    let t = |ms: i64| DateTime::<Utc>::UNIX_EPOCH + naxos::chrono::Duration::milliseconds(ms);
    assert_eq!(max_overlap(&[]), 0);
    assert_eq!(max_overlap(&[(t(0), t(10)), (t(10), t(20))]), 1, "back to back");
    assert_eq!(max_overlap(&[(t(0), t(10)), (t(9), t(20))]), 2);
    assert_eq!(
        max_overlap(&[(t(0), t(30)), (t(5), t(10)), (t(10), t(15)), (t(12), t(40))]),
        3
    );
}

/// Executions of `throttled` on the two nodes; how long most sleep (ms); one in `LONG_EVERY`
/// sleeps `LONG_MS` instead, time to kill its node while it holds a slot.
const CLUSTER_RUNS: usize = 200;
const SHORT_MS: u64 = 30;
const LONG_EVERY: usize = 40;
const LONG_MS: u64 = 800;
/// A long run is killed only while at least this much of it is left (ms).
const KILL_MARGIN_MS: u64 = 400;
const LEASE_TTL_MS: &str = "1500";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_across_nodes_and_a_kill_9() {
    let Some((pg, amqp)) = common::both_services() else {
        return;
    };
    let db_url = common::fresh_database(&pg, "naxos_concurrency_cluster").await;
    let prefix = naxos_core::testkit::unique_id("concurrency");
    let env: Vec<(&str, &str)> = vec![
        ("NAXOS_POSTGRES_URL", &db_url),
        ("NAXOS_AMQP_URL", &amqp),
        ("NAXOS_AMQP_PREFIX", &prefix),
        ("NAXOS_LEASE_TTL_MS", LEASE_TTL_MS),
        ("NAXOS_REPUBLISH_AFTER_MS", "1000"),
        ("NAXOS_SWEEP_INTERVAL_MS", "200"),
    ];
    let mut nodes = vec![
        common::named_node(&env, "node-1").await,
        common::named_node(&env, "node-2").await,
    ];
    let mut db = PgConnection::connect(&db_url).await.unwrap();
    let base = nodes[0].base.clone();
    let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", THROTTLED).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Submitted through both nodes.
    let mut long = Vec::new();
    for i in 0..CLUSTER_RUNS {
        let ms = if i % LONG_EVERY == LONG_EVERY / 2 {
            LONG_MS
        } else {
            SHORT_MS
        };
        let id = execute(&nodes[i % 2].base, "throttled", json!({"ms": ms})).await;
        if ms == LONG_MS {
            long.push(naxos::uuid::Uuid::parse_str(&id).unwrap());
        }
    }

    // A long run that started recently, on the node its attempt names: that node dies while
    // it holds the run's slot.
    let deadline = Instant::now() + common::DEADLINE;
    let (victim, execution, attempt): (String, naxos::uuid::Uuid, i32) = loop {
        let running = sqlx::query_as(
            "SELECT node, execution_id, attempt FROM naxos_attempts
             WHERE ended_at IS NULL AND execution_id = ANY($1)
               AND started_at > now() - make_interval(secs => $2)
             LIMIT 1",
        )
        .bind(&long)
        .bind((LONG_MS - KILL_MARGIN_MS) as f64 / 1000.0)
        .fetch_optional(&mut db)
        .await
        .unwrap();
        if let Some(found) = running {
            break found;
        }
        assert!(Instant::now() < deadline, "no long run seen running");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let killed = nodes
        .iter()
        .position(|n| n.banner.contains(&format!("node {victim},")))
        .unwrap_or_else(|| panic!("no node named {victim}"));
    nodes[killed].child.kill().await.expect("SIGKILL");
    let open: bool =
        sqlx::query_scalar("SELECT ended_at IS NULL FROM naxos_attempts WHERE execution_id = $1 AND attempt = $2")
            .bind(execution)
            .bind(attempt)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(open, "{victim} died while running {execution} attempt {attempt}");
    // Another node takes its place.
    nodes[killed] = common::named_node(&env, "node-3").await;

    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_executions WHERE status = 'COMPLETED'")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if done == CLUSTER_RUNS as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{done} of {CLUSTER_RUNS} executions COMPLETED"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every execution COMPLETED, as the API lists them.
    let (status, page) = call(
        &nodes[0].base,
        Method::GET,
        "/api/v1/jobs?definitionId=throttled&limit=1000",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = page["executions"].as_array().unwrap();
    assert_eq!(listed.len(), CLUSTER_RUNS, "{page}");
    assert!(listed.iter().all(|e| e["status"] == "COMPLETED"), "{page}");

    // The killed attempt ended EXPIRED; a later one on a live node completed the task.
    let attempts: Vec<(i32, String, Option<String>)> =
        sqlx::query_as("SELECT attempt, node, outcome FROM naxos_attempts WHERE execution_id = $1 ORDER BY attempt")
            .bind(execution)
            .fetch_all(&mut db)
            .await
            .unwrap();
    let dead = attempts.iter().find(|(a, ..)| *a == attempt);
    assert_eq!(
        dead.map(|(_, node, outcome)| (node.as_str(), outcome.as_deref())),
        Some((victim.as_str(), Some("EXPIRED"))),
        "{execution}: {attempts:?}"
    );
    let last = attempts.last().unwrap();
    assert!(
        last.0 > attempt && last.1 != victim && last.2.as_deref() == Some("COMPLETED"),
        "{execution}: {attempts:?}"
    );

    // Every attempt of every execution, the expired one until its recorded end: 2 at once, never more.
    let rows: Vec<AttemptRow> = sqlx::query_as("SELECT started_at, ended_at, outcome FROM naxos_attempts")
        .fetch_all(&mut db)
        .await
        .unwrap();
    // Every execution COMPLETED, so this many completed attempts is one each.
    let completed = rows.iter().filter(|r| r.2.as_deref() == Some("COMPLETED")).count();
    assert_eq!(completed, CLUSTER_RUNS, "one completed attempt per execution: {rows:?}");
    let spans: Vec<Span> = rows
        .iter()
        .map(|r| (r.0, r.1.unwrap_or_else(|| panic!("an attempt never ended: {r:?}"))))
        .collect();
    let most = max_overlap(&spans);
    assert_eq!(
        most, 2,
        "runs at once under a limit of 2, across the nodes and the kill"
    );
    println!(
        "concurrency cluster: {CLUSTER_RUNS} executions, {} attempts, {victim} killed holding \
         {execution} attempt {attempt}; at most {most} runs at once",
        rows.len()
    );

    for survivor in &mut nodes {
        stop_gracefully(survivor).await;
    }
    db.close().await.unwrap();
}
