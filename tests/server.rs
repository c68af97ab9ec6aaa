//! The real server binary (`examples/server`), started on a free port and driven over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{call, command, finished, fresh_database, start, start_with, submit_sample_2, DEADLINE, SAMPLE_2};
use hyper::{Method, StatusCode};
use naxos::serde_json::json;

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
    let (status, metrics) = common::get_text(&base, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("naxos_executions_finished_total{definition=\"sample-2\",status=\"COMPLETED\"} 1"),
        "{metrics}"
    );

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
    for (env, variable) in [
        (&[("NAXOS_SERVER_PORT", "eighty")][..], "NAXOS_SERVER_PORT"),
        (&[("NAXOS_WORKER_CONCURRENCY", "0")], "NAXOS_WORKER_CONCURRENCY"),
        (&[("NAXOS_RUN_READY_HERE", "maybe")], "NAXOS_RUN_READY_HERE"),
        (&[("NAXOS_ROLE", "boss")], "NAXOS_ROLE"),
        (&[("NAXOS_STORE", "cloud")], "NAXOS_STORE"),
        (&[("NAXOS_STORE", "postgres")], "NAXOS_STORE"),
        (
            &[
                ("NAXOS_STORE", "memory"),
                ("NAXOS_POSTGRES_URL", "postgres://127.0.0.1:1/x"),
            ],
            "NAXOS_STORE",
        ),
        (&[("NAXOS_LMDB_MAP_SIZE", "0")], "NAXOS_LMDB_MAP_SIZE"),
        (&[("NAXOS_RETENTION_COMPLETED_MS", "0")], "NAXOS_RETENTION_COMPLETED_MS"),
        (&[("NAXOS_RETENTION_FAILED_MS", "soon")], "NAXOS_RETENTION_FAILED_MS"),
        (&[("NAXOS_API_TOKEN", "short")], "NAXOS_API_TOKEN"),
    ] {
        let out = command(env).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(variable), "{env:?}: {stderr}");
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
    let db_url = fresh_database(&url, "naxos_kill").await;
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
        ids.push(submit_sample_2(&first.base, r#"{"sleepMs": 150}"#).await);
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

/// docker-compose.yml cannot run here, so this keeps it honest: every `NAXOS_*` variable it sets
/// is one the server reads, and its topology is 1 api + 2 workers on the shared backends.
#[test]
fn compose_file_uses_only_variables_the_server_reads() {
    let compose = include_str!("../docker-compose.yml");
    let config = include_str!("../examples/server/config.rs");
    let mut seen = 0;
    for word in compose.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("NAXOS_") {
            seen += 1;
            assert!(
                config.contains(&format!("\"{word}\"")),
                "the server does not read {word}"
            );
        }
    }
    assert!(seen >= 8, "expected the compose file to configure the nodes");
    assert_eq!(compose.matches("NAXOS_ROLE: worker").count(), 2);
    assert_eq!(compose.matches("NAXOS_ROLE: api").count(), 1);
    for needed in ["NAXOS_POSTGRES_URL:", "NAXOS_AMQP_URL:", "condition: service_healthy"] {
        assert!(compose.contains(needed), "{needed}");
    }
}

/// SIGTERM while a client streams the events of an execution that will not end soon: the
/// stream ends with a final snapshot, the node stops taking work at once, and the process exits
/// (it used to wait for the stream, that is for the execution, while still claiming work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_event_stream_open_stops_the_node() {
    let dir = std::env::temp_dir().join(format!("naxos-sse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pause.json");
    std::fs::write(
        &file,
        r#"{"id":"pause","name":"A long pause","tasks":{"wait":{"id":"wait","name":"wait","functionName":"sleep"}}}"#,
    )
    .unwrap();
    let mut server = start_with(&[
        ("NAXOS_DEFINITIONS_FILE", file.to_str().unwrap()),
        ("NAXOS_SHUTDOWN_GRACE_MS", "300"),
    ])
    .await;
    let (status, ack) = call(
        &server.base,
        Method::POST,
        "/api/v1/jobs/pause/execute",
        r#"{"ms": 600000}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    let id = ack["executionId"].as_str().unwrap().to_string();
    let (base, events) = (server.base.clone(), format!("/api/v1/jobs/{id}/events"));
    let stream = tokio::spawn(async move { common::get_text(&base, &events).await });
    // Once the task runs, stop the node.
    let started = Instant::now();
    loop {
        let (_, exec) = call(&server.base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        if exec["tasks"][0]["status"] == "RUNNING" {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the task never started: {exec}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::stop_gracefully(&mut server).await;
    let (status, text) = stream.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let last = text.lines().rev().find(|l| l.starts_with("event:")).unwrap_or_default();
    assert_eq!(
        last, "event: snapshot",
        "the stream closes with the state as it stands:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
