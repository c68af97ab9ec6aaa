//! RabbitMQ stopped and started again mid-run: every execution completes, and the queue's
//! health check reports the outage while it lasts. Its own test binary, so nothing else
//! shares the broker while it is down.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use naxos_core::serde_json::json;
use naxos_core::testkit::{diamond, service_url};
use naxos_core::{Engine, EngineConfig, ExecutionStatus};

/// Runs `scripts/services.sh <command>` against the services of this test run.
async fn services(command: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let status = tokio::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .status()
        .await
        .expect("run services.sh");
    assert!(status.success(), "services.sh {command} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_survive_a_broker_restart() {
    let Some(queue) = common::queue().await else { return };
    // The restart needs the running broker's directory, which scripts/test.sh exports.
    service_url("NAXOS_SERVICES_DIR").expect("NAXOS_SERVICES_DIR");
    let engine = Engine::builder()
        .queue(Arc::new(queue))
        .config(EngineConfig {
            concurrency: 16,
            sweep_interval: Duration::from_millis(200),
            republish_after: Duration::from_secs(1),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    engine.register("f", |_ctx| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(json!("done"))
    });
    let def = diamond();
    engine.register_definition(def.clone()).await.unwrap();
    engine.start().unwrap();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(engine.execute(&def.id, json!({})).await.unwrap().execution_id);
    }
    // Let part of the work happen first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = engine.store().counts().await.unwrap();
        if counts.executions.get(&ExecutionStatus::Completed).copied().unwrap_or(0) >= 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    services("stop-rabbitmq").await;
    assert!(
        engine.health().await.queue.is_err(),
        "health must report the broker down"
    );
    services("start-rabbitmq").await;

    for id in &ids {
        let done = engine.wait_for_timeout(*id, Duration::from_secs(90)).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed, "{id}: {:?}", done.error);
        assert!(done.tasks.iter().all(|t| t.output == Some(json!("done"))));
    }
    assert!(
        engine.health().await.queue.is_ok(),
        "health must report the broker back"
    );
    engine.shutdown().await;
}
