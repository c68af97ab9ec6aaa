//! Cron schedules across processes: two example-server nodes on one PostgreSQL, both running
//! the scheduler, a schedule ticking every second. Every tick starts exactly one execution —
//! none twice, none skipped — also when the node that fired a tick is killed with SIGKILL and
//! later started again.

mod common;

use std::time::{Duration, Instant};

use common::{call, fresh_database, start_with, stop_gracefully, Server};
use hyper::{Method, StatusCode};
use naxos::chrono::{self, DateTime, Utc};
use naxos_postgres::sqlx::{self, Connection, PgConnection};

const SCHEDULE: &str = "every-second";

async fn node(db_url: &str, id: &str) -> Server {
    start_with(&[("NAXOS_POSTGRES_URL", db_url), ("NAXOS_NODE_ID", id)]).await
}

/// The ticks fired so far, in order, with how many executions each started.
async fn ticks(db: &mut PgConnection) -> Vec<(DateTime<Utc>, i64)> {
    sqlx::query_as(
        "SELECT schedule_tick, count(*) FROM naxos_executions WHERE schedule_id = $1
         GROUP BY schedule_tick ORDER BY schedule_tick",
    )
    .bind(SCHEDULE)
    .fetch_all(db)
    .await
    .unwrap()
}

/// Waits until at least `at_least` ticks have fired; returns them.
async fn until_ticks(db: &mut PgConnection, at_least: usize) -> Vec<(DateTime<Utc>, i64)> {
    let started = Instant::now();
    loop {
        let fired = ticks(db).await;
        if fired.len() >= at_least {
            return fired;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {at_least} ticks fired",
            fired.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node that fired `tick`: its execution's first task ran there (each node here has its
/// own in-memory queue, so the node that created an execution runs its root task).
async fn fired_by(db: &mut PgConnection, tick: DateTime<Utc>) -> String {
    let started = Instant::now();
    loop {
        let node: Option<String> = sqlx::query_scalar(
            "SELECT a.node FROM naxos_attempts a JOIN naxos_executions e ON e.id = a.execution_id
             WHERE e.schedule_id = $1 AND e.schedule_tick = $2 AND a.task_id = 'task1' ORDER BY a.attempt LIMIT 1",
        )
        .bind(SCHEDULE)
        .bind(tick)
        .fetch_optional(&mut *db)
        .await
        .unwrap();
        if let Some(node) = node {
            return node;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the tick's execution never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fire_each_tick_once_also_when_the_firing_node_is_killed() {
    let Some(pg) = naxos_core::testkit::service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let db_url = fresh_database(&pg, "naxos_schedules").await;
    let mut nodes = vec![node(&db_url, "node-1").await, node(&db_url, "node-2").await];
    let mut db = PgConnection::connect(&db_url).await.unwrap();

    let body = format!(r#"{{"id": "{SCHEDULE}", "definitionId": "sample-2", "cron": "* * * * * *"}}"#);
    let (status, created) = call(&nodes[0].base, Method::POST, "/api/v1/schedules", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let before_kill = until_ticks(&mut db, 4).await;
    let (last, _) = *before_kill.last().unwrap();
    let victim = fired_by(&mut db, last).await;
    let index = if victim == "node-1" { 0 } else { 1 };
    nodes[index]
        .child
        .kill()
        .await
        .expect("SIGKILL the node that fired the last tick");
    let killed_at = before_kill.len();

    // The other node carries on alone, then the killed one comes back.
    until_ticks(&mut db, killed_at + 4).await;
    nodes[index] = node(&db_url, &victim).await;
    let restarted_at = ticks(&mut db).await.len();
    let fired = until_ticks(&mut db, restarted_at + 4).await;

    let twice: Vec<_> = fired.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        twice.is_empty(),
        "ticks that started more than one execution: {twice:?}"
    );
    let gaps: Vec<_> = fired
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 != chrono::Duration::seconds(1))
        .map(|w| (w[0].0, w[1].0))
        .collect();
    assert!(
        gaps.is_empty(),
        "ticks skipped between: {gaps:?} (of {} ticks)",
        fired.len()
    );
    let (status, page) = call(
        &nodes[0].base,
        Method::GET,
        &format!("/api/v1/jobs?scheduleId={SCHEDULE}&limit=1000"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["executions"].as_array().unwrap().len() >= fired.len(), "{page}");
    println!(
        "schedules across nodes: {} ticks, each fired once; {victim} (which fired the tick of {last}) was \
         killed after tick {killed_at} and restarted after tick {restarted_at}",
        fired.len()
    );

    let (status, _) = call(
        &nodes[0].base,
        Method::POST,
        &format!("/api/v1/schedules/{SCHEDULE}/pause"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for n in &mut nodes {
        stop_gracefully(n).await;
    }
    db.close().await.unwrap();
}
