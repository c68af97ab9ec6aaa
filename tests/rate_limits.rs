//! Rate limits (`"rateLimit": {"perSecond", "burst", "key"}`, DESIGN §8) over HTTP on the real
//! server binary: "a rate limit R with burst B never starts more than B + R·t tasks in any
//! window t". On each of its Stores (memory, LMDB — the default —, PostgreSQL): 40 executions
//! submitted at once under 20 a second with a burst of 3 wait QUEUED with
//! `blockedBy: "rateLimit"` and a `dueAt`, all complete, and their starts (from the status)
//! keep the bound; a limit of 5 a second per `params.tenant` keeps it per tenant while the
//! two tenants start side by side. On two nodes sharing PostgreSQL and RabbitMQ: 100
//! executions under 50 a second with a burst of 5, submitted through both nodes, keep the bound
//! across the two nodes' starts (from `naxos_attempts`).

mod common;

use std::time::Duration;

use common::{call, execute, finished, on_lmdb, on_postgres, start_with, stop_gracefully, task};
use futures_util::future::join_all;
use hyper::{Method, StatusCode};
use naxos::chrono::{DateTime, Utc};
use naxos::serde_json::{json, Value};
use naxos_postgres::sqlx::{self, Connection, PgConnection};
use tokio::time::Instant;

/// One task, the demo `sleep` (`params.ms`), at most 3 + 20·t starts in any t seconds across
/// all executions.
const BURSTY: &str = r#"{ "id": "bursty", "tasks": {
    "work": {"id": "work", "functionName": "sleep", "rateLimit": {"perSecond": 20, "burst": 3}} },
  "graph": { "work": [] } }"#;
const BURSTY_RATE: f64 = 20.0;
const BURSTY_BURST: usize = 3;

/// The same at most 1 + 5·t starts in any t seconds per `params.tenant` (`burst` left to its
/// default, 1).
const PER_TENANT: &str = r#"{ "id": "per-tenant", "tasks": {
    "work": {"id": "work", "functionName": "sleep", "rateLimit": {"perSecond": 5, "key": "params.tenant"}} },
  "graph": { "work": [] } }"#;
const TENANT_RATE: f64 = 5.0;
const TENANT_BURST: usize = 1;

/// Executions of `bursty` on one server, and how long each sleeps (ms).
const BURSTY_RUNS: usize = 40;
const RUN_MS: u64 = 5;

/// Executions of `per-tenant` per tenant: each tenant's 4 starts span at least
/// (4 − 1) / 5 = 0.6 s; under one shared limit, the second tenant's would all come after the
/// first's.
const TENANT_RUNS: usize = 4;

/// How much a start time may be off as the API prints it (rounding), no more.
const ROUNDING: Duration = Duration::from_millis(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_hold_in_memory() {
    rates_hold(&[("NAXOS_STORE", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_hold_on_lmdb() {
    on_lmdb("rate-limits", rates_hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_hold_on_postgres() {
    on_postgres("naxos_rate_limits", rates_hold).await;
}

/// Both definitions run at once on one server: `bursty` keeps 3 + 20·t and was held back by
/// it; `per-tenant` keeps 1 + 5·t per tenant, and the tenants do not wait for each other.
async fn rates_hold(env: &[(&str, &str)]) {
    let mut server = start_with(env).await;
    let base = server.base.clone();
    for definition in [BURSTY, PER_TENANT] {
        let (status, body) = call(&base, Method::POST, "/api/v1/job-definitions", definition).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Tenant a's runs, then tenant b's: under one shared limit b's would wait behind a's.
    let mut tenants = Vec::new();
    for tenant in ["a", "b"] {
        let params = vec![json!({"tenant": tenant, "ms": RUN_MS}); TENANT_RUNS];
        tenants.extend(submit_all(&[base.as_str()], "per-tenant", params).await);
    }
    let bursty = submit_all(&[base.as_str()], "bursty", vec![json!({"ms": RUN_MS}); BURSTY_RUNS]).await;
    // While they run, the runs over the limit wait QUEUED, blocked by it until their turn (the
    // tenants' for the shorter time, so first).
    blocked_seen(&base, &tenants).await;
    blocked_seen(&base, &bursty).await;

    let mut starts = Vec::new();
    for id in &bursty {
        starts.push(completed_once(&base, id).await);
    }
    let first_to_last = keeps_bound(&starts, BURSTY_BURST, BURSTY_RATE, "`bursty`");
    println!(
        "rate limits {env:?}: {BURSTY_RUNS} starts at {BURSTY_RATE}/s, burst {BURSTY_BURST}, took {first_to_last:?}"
    );
    // The limit held them back: N starts under B + R·t take (N − B) / R.
    let least = Duration::from_secs_f64((BURSTY_RUNS - BURSTY_BURST) as f64 / BURSTY_RATE) - ROUNDING;
    assert!(
        first_to_last >= least,
        "`bursty`'s {BURSTY_RUNS} starts took {first_to_last:?}, under the {least:?} its limit needs: {starts:?}"
    );

    let mut by_tenant: [Vec<DateTime<Utc>>; 2] = [Vec::new(), Vec::new()];
    for (i, id) in tenants.iter().enumerate() {
        by_tenant[i / TENANT_RUNS].push(completed_once(&base, id).await);
    }
    for (tenant, starts) in ["a", "b"].iter().zip(&by_tenant) {
        keeps_bound(starts, TENANT_BURST, TENANT_RATE, &format!("tenant {tenant}"));
    }
    // The key splits the limit: b, submitted after a (whose turns a shared limit would give
    // first), starts before a's last start.
    let [a, b] = &by_tenant;
    let a_last = a.iter().max().unwrap();
    assert!(
        b.iter().any(|s| s < a_last),
        "tenant b waited for tenant a (the key did not split the limit): a {a:?}, b {b:?}"
    );
    server.child.kill().await.unwrap();
}

/// Submits one execution of `definition` per item of `params`, all at once, spread over the
/// servers at `bases` in turn; returns their ids in the order of `params`.
async fn submit_all(bases: &[&str], definition: &str, params: Vec<Value>) -> Vec<String> {
    join_all(
        params
            .into_iter()
            .enumerate()
            .map(|(i, p)| execute(bases[i % bases.len()], definition, p)),
    )
    .await
}

/// Polls the executions `ids` until one shows its task QUEUED with `blockedBy: "rateLimit"`
/// and a `dueAt` (its booked turn), within the tests' deadline.
async fn blocked_seen(base: &str, ids: &[String]) {
    let work = common::until_blocked(base, ids, "work", "rateLimit").await;
    let due = work["dueAt"].as_str().unwrap_or_else(|| panic!("no dueAt: {work}"));
    due.parse::<DateTime<Utc>>()
        .unwrap_or_else(|e| panic!("dueAt `{due}`: {e}"));
}

/// Waits for execution `id` to finish and expects it COMPLETED, its one task run once (so its
/// `startTime` is that of its only attempt), no longer blocked; returns that start.
async fn completed_once(base: &str, id: &str) -> DateTime<Utc> {
    let exec = finished(base, id).await;
    assert_eq!(exec["status"], "COMPLETED", "{exec}");
    let work = task(&exec, "work");
    assert_eq!(work["attempts"], 1, "{exec}");
    assert!(work.get("blockedBy").is_none(), "{exec}");
    assert_eq!(work["output"], json!({"sleptMs": RUN_MS}), "{exec}");
    let text = work["startTime"]
        .as_str()
        .unwrap_or_else(|| panic!("startTime of {exec}"));
    text.parse().unwrap_or_else(|e| panic!("startTime `{text}`: {e}"))
}

/// Asserts that in every window between two of `starts`, ends included, at most
/// `burst + per_second × t` of them fall (`t` its length, plus the API's rounding); returns the
/// time from the first start to the last.
fn keeps_bound(starts: &[DateTime<Utc>], burst: usize, per_second: f64, what: &str) -> Duration {
    let mut sorted = starts.to_vec();
    sorted.sort();
    if let Some((count, t)) = worst_window(&sorted, burst, per_second) {
        panic!("{what}: {count} starts in {t:?} (at most {burst} + {per_second}·t allowed): {sorted:?}");
    }
    span_of(&sorted)
}

/// The first window between two of the sorted `starts` holding more than
/// `burst + per_second × (t + ROUNDING)` of them, as (how many, `t`); `None` when none does.
fn worst_window(sorted: &[DateTime<Utc>], burst: usize, per_second: f64) -> Option<(usize, Duration)> {
    for (i, first) in sorted.iter().enumerate() {
        for (j, last) in sorted.iter().enumerate().skip(i) {
            let t = (*last - *first).to_std().expect("sorted");
            let allowed = burst as f64 + per_second * (t + ROUNDING).as_secs_f64();
            if (j - i + 1) as f64 > allowed {
                return Some((j - i + 1, t));
            }
        }
    }
    None
}

/// The time from the earliest of `starts` to the latest.
fn span_of(starts: &[DateTime<Utc>]) -> Duration {
    match (starts.iter().min(), starts.iter().max()) {
        (Some(first), Some(last)) => (*last - *first).to_std().expect("ordered"),
        _ => Duration::ZERO,
    }
}

#[test]
fn worst_window_counts_starts_between_two_starts() {
    let t = |ms: i64| DateTime::<Utc>::UNIX_EPOCH + naxos::chrono::Duration::milliseconds(ms);
    let ms = Duration::from_millis;
    assert_eq!(worst_window(&[], 1, 10.0), None);
    // 10 a second, burst 2: 2 at once, then one each 100 ms.
    assert_eq!(worst_window(&[t(0), t(0), t(100), t(200)], 2, 10.0), None);
    assert_eq!(worst_window(&[t(0), t(0), t(0)], 2, 10.0), Some((3, ms(0))));
    assert_eq!(worst_window(&[t(0), t(0), t(90)], 2, 10.0), Some((3, ms(90))));
    assert_eq!(
        worst_window(&[t(0), t(0), t(100), t(100)], 2, 10.0),
        Some((4, ms(100))),
        "4 in 100 ms: 2 + 1 allowed"
    );
    // 1 ms of rounding, no more.
    assert_eq!(worst_window(&[t(0), t(99)], 1, 10.0), None);
    assert_eq!(worst_window(&[t(0), t(0), t(99)], 2, 10.0), None);
    assert_eq!(worst_window(&[t(0), t(98)], 1, 10.0), Some((2, ms(98))));
}

/// Executions of the cluster's definition, and its limit: `burst + perSecond × t`.
const CLUSTER_RUNS: usize = 100;
const CLUSTER_RATE: f64 = 50.0;
const CLUSTER_BURST: usize = 5;
const CLUSTER: &str = r#"{ "id": "cluster-rate", "tasks": {
    "work": {"id": "work", "functionName": "sleep", "rateLimit": {"perSecond": 50, "burst": 5}} },
  "graph": { "work": [] } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_holds_across_nodes() {
    let Some((pg, amqp)) = common::both_services() else {
        return;
    };
    let db_url = common::fresh_database(&pg, "naxos_rate_cluster").await;
    let prefix = naxos_core::testkit::unique_id("rate");
    let env: Vec<(&str, &str)> = vec![
        ("NAXOS_POSTGRES_URL", &db_url),
        ("NAXOS_AMQP_URL", &amqp),
        ("NAXOS_AMQP_PREFIX", &prefix),
    ];
    let mut nodes = vec![
        common::named_node(&env, "node-1").await,
        common::named_node(&env, "node-2").await,
    ];
    let mut db = PgConnection::connect(&db_url).await.unwrap();
    let (status, body) = call(&nodes[0].base, Method::POST, "/api/v1/job-definitions", CLUSTER).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Submitted at once through both nodes.
    let bases: Vec<&str> = nodes.iter().map(|n| n.base.as_str()).collect();
    submit_all(&bases, "cluster-rate", vec![json!({"ms": RUN_MS}); CLUSTER_RUNS]).await;

    let started = Instant::now();
    let mut blocked_seen = false;
    loop {
        let (done, blocked): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM naxos_executions WHERE status = 'COMPLETED'),
                    (SELECT count(*) FROM naxos_tasks
                     WHERE status = 'QUEUED' AND blocked_by = 'rateLimit' AND due_at IS NOT NULL)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        blocked_seen |= blocked > 0;
        if done == CLUSTER_RUNS as i64 {
            break;
        }
        assert!(
            started.elapsed() < common::DEADLINE,
            "{done} of {CLUSTER_RUNS} executions COMPLETED"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        blocked_seen,
        "no run seen QUEUED, blocked by the rate limit with a dueAt"
    );

    // Every execution COMPLETED, as the API lists them.
    let (status, page) = call(
        &nodes[1].base,
        Method::GET,
        "/api/v1/jobs?definitionId=cluster-rate&limit=1000",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = page["executions"].as_array().unwrap();
    assert_eq!(listed.len(), CLUSTER_RUNS, "{page}");
    assert!(listed.iter().all(|e| e["status"] == "COMPLETED"), "{page}");

    // One attempt per execution, COMPLETED; both nodes started some.
    let rows: Vec<(DateTime<Utc>, String, Option<String>)> =
        sqlx::query_as("SELECT started_at, node, outcome FROM naxos_attempts")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(rows.len(), CLUSTER_RUNS, "one attempt per execution: {rows:?}");
    assert!(rows.iter().all(|r| r.2.as_deref() == Some("COMPLETED")), "{rows:?}");
    let on_node_1 = rows.iter().filter(|r| r.1 == "node-1").count();
    assert!(
        on_node_1 > 0 && on_node_1 < CLUSTER_RUNS,
        "{on_node_1} of {CLUSTER_RUNS} starts on node-1: both nodes should start runs"
    );

    let starts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.0).collect();
    let first_to_last = keeps_bound(&starts, CLUSTER_BURST, CLUSTER_RATE, "across the nodes");
    let least = Duration::from_secs_f64((CLUSTER_RUNS - CLUSTER_BURST) as f64 / CLUSTER_RATE) - ROUNDING;
    assert!(
        first_to_last >= least,
        "{CLUSTER_RUNS} starts took {first_to_last:?}, under the {least:?} the limit needs"
    );
    println!(
        "rate cluster: {CLUSTER_RUNS} executions, {on_node_1} started on node-1, first to last \
         start {first_to_last:?}"
    );

    for survivor in &mut nodes {
        stop_gracefully(survivor).await;
    }
    db.close().await.unwrap();
}
