//! RabbitMQ and then PostgreSQL restarted under a running server: `/health` says 503 while a
//! service is down and 200 when it is back, and every execution completes. Its own test
//! binary, so nothing else uses the services while they are down.

mod common;

use std::time::{Duration, Instant};

use common::{call, finished, fresh_database, services, start_with, stop_gracefully};
use hyper::{Method, StatusCode};
use naxos_core::testkit::service_url;

/// Polls `/health` until it answers `want`, naming what is down when it is 503.
async fn health_becomes(base: &str, want: StatusCode, down: Option<&str>) {
    let started = Instant::now();
    loop {
        let (status, body) = call(base, Method::GET, "/health", "").await;
        if status == want {
            if let Some(name) = down {
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(name), "503 must name {name}: {body}");
            }
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/health stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_and_database_restarts_mid_run_lose_nothing() {
    let Some((pg, amqp)) = common::both_services() else {
        return;
    };
    service_url("NAXOS_SERVICES_DIR").expect("the running services' directory");
    let db_url = fresh_database(&pg, "naxos_restart").await;
    let prefix = naxos_core::testkit::unique_id("restart");
    let mut server = start_with(&[
        ("NAXOS_POSTGRES_URL", &db_url),
        ("NAXOS_AMQP_URL", &amqp),
        ("NAXOS_AMQP_PREFIX", &prefix),
        ("NAXOS_LEASE_TTL_MS", "3000"),
        ("NAXOS_REPUBLISH_AFTER_MS", "1000"),
        ("NAXOS_SWEEP_INTERVAL_MS", "200"),
    ])
    .await;
    let base = server.base.clone();
    let mut ids = Vec::new();
    for _ in 0..60 {
        let (status, body) = call(
            &base,
            Method::POST,
            "/api/v1/jobs/sample-2/execute",
            r#"{"sleepMs": 100}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["executionId"].as_str().unwrap().to_string());
    }
    health_becomes(&base, StatusCode::OK, None).await;

    services("stop-rabbitmq").await;
    health_becomes(&base, StatusCode::SERVICE_UNAVAILABLE, Some("queue")).await;
    services("start-rabbitmq").await;
    health_becomes(&base, StatusCode::OK, None).await;

    services("stop-postgres").await;
    health_becomes(&base, StatusCode::SERVICE_UNAVAILABLE, Some("store")).await;
    services("start-postgres").await;
    health_becomes(&base, StatusCode::OK, None).await;

    for id in &ids {
        let exec = finished(&base, id).await;
        assert_eq!(exec["status"], "COMPLETED", "{exec}");
        for task in exec["tasks"].as_array().unwrap() {
            assert_eq!(task["output"]["sleptMs"], 100, "{task}");
        }
    }
    stop_gracefully(&mut server).await;
}
