//! The server on RabbitMQ when the broker loses its definitions (a wiped data directory, a new
//! cluster node): no work is lost, and the dead-letter queue is reported in `/health` and
//! `/metrics`.

mod common;

use std::time::Instant;

use common::{call, finished, get_text, start_with, stop_gracefully, submit_sample_2, DEADLINE};
use hyper::{Method, StatusCode};
use naxos_amqp::lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use naxos_amqp::lapin::{BasicProperties, Connection, ConnectionProperties};
use naxos_core::testkit::{service_url, unique_id};

/// Submits a `sample-2` execution and returns its id.
async fn submit(base: &str) -> String {
    submit_sample_2(base, r#"{"sleepMs": 0}"#).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_lost_its_topology_loses_no_work_and_dead_letters_are_reported() {
    let Some(amqp) = service_url("NAXOS_TEST_AMQP_URL") else {
        return;
    };
    let prefix = unique_id("topology");
    let mut server = start_with(&[
        ("NAXOS_AMQP_URL", amqp.as_str()),
        ("NAXOS_AMQP_PREFIX", prefix.as_str()),
        ("NAXOS_SWEEP_INTERVAL_MS", "200"),
        ("NAXOS_REPUBLISH_AFTER_MS", "1000"),
    ])
    .await;
    let base = server.base.clone();
    let first = submit(&base).await;
    assert_eq!(finished(&base, &first).await["status"], "COMPLETED");

    // What a broker that lost its data has: none of naxos's queues and exchanges. Deleting a
    // queue cancels its consumers and breaks the channels that publish to it.
    let connection = Connection::connect(&amqp, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in ["tasks", "dead"] {
        let name = format!("{prefix}.{queue}");
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    for exchange in ["tasks", "dead", "events"] {
        let name = format!("{prefix}.{exchange}");
        channel
            .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }

    let ids: Vec<String> = futures_util::future::join_all((0..5).map(|_| submit(&base))).await;
    for id in &ids {
        let exec = finished(&base, id).await;
        assert_eq!(exec["status"], "COMPLETED", "{exec}");
    }

    // Garbage on the task queue is dead-lettered, and the count shows.
    let tasks = format!("{prefix}.tasks");
    for garbage in [&b"not a task"[..], br#"{"executionId": 7}"#] {
        channel
            .basic_publish(
                tasks.as_str().into(),
                tasks.as_str().into(),
                BasicPublishOptions::default(),
                garbage,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    let started = Instant::now();
    loop {
        let (status, health) = call(&base, Method::GET, "/health", "").await;
        assert_eq!(status, StatusCode::OK, "{health}");
        if health["deadLetters"] == 2 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "dead letters never counted: {health}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, metrics) = get_text(&base, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.lines().any(|l| l == "naxos_dead_letters 2"),
        "no dead-letter gauge in:\n{metrics}"
    );
    stop_gracefully(&mut server).await;
}
