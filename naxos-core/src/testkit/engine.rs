//! What the engine tests of every backend share: settings that make recovery quick, and a task
//! function that counts its runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::engine::{Engine, EngineConfig};
use crate::model::ExecutionId;

/// Settings for node `node` with leases, sweeps and republishing quick enough for a test:
/// 16 workers, a 1.5 s lease renewed every 300 ms, a sweep every 200 ms.
pub fn quick_config(node: &str) -> EngineConfig {
    EngineConfig {
        node_id: node.into(),
        concurrency: 16,
        lease_ttl: Duration::from_millis(1_500),
        heartbeat_interval: Some(Duration::from_millis(300)),
        sweep_interval: Duration::from_millis(200),
        republish_after: Duration::from_millis(800),
        cancel_grace: Duration::from_millis(200),
        ..EngineConfig::default()
    }
}

/// How many times each (execution, task) ran, across every engine that shares it.
pub type Runs = Arc<Mutex<HashMap<(ExecutionId, String), u32>>>;

/// Registers function `f` on `engine`: it sleeps `sleep`, counts its run in `runs`, and returns
/// `{"task": <its task id>}`.
pub fn register_counted(engine: &Engine, runs: &Runs, sleep: Duration) {
    let runs = runs.clone();
    engine.register("f", move |ctx| {
        let runs = runs.clone();
        async move {
            tokio::time::sleep(sleep).await;
            *runs
                .lock()
                .expect("the run counts' lock")
                .entry((ctx.execution_id(), ctx.task_id().to_string()))
                .or_default() += 1;
            Ok(json!({ "task": ctx.task_id() }))
        }
    });
}

/// Registers a counted `f` and a diamond on `engine`, starts it, runs `n` diamonds, and checks
/// that every one completed with each task run exactly once (one attempt, an output). Returns
/// the finished executions for the caller's own checks.
pub async fn diamonds_run_once(engine: &Engine, n: usize) -> Vec<crate::model::Execution> {
    let runs: Runs = Arc::default();
    register_counted(engine, &runs, Duration::ZERO);
    let def = super::diamond();
    engine
        .register_definition(def.clone())
        .await
        .expect("the diamond registers");
    engine.start().expect("the engine starts");
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(engine.execute(&def.id, json!({})).await.expect("a submit").execution_id);
    }
    let mut done = Vec::with_capacity(n);
    for id in ids {
        let exec = engine
            .wait_for_timeout(id, Duration::from_secs(60))
            .await
            .expect("the execution ends in time");
        assert_eq!(exec.status, crate::model::ExecutionStatus::Completed);
        assert!(exec.tasks.iter().all(|t| t.attempts == 1 && t.output.is_some()));
        done.push(exec);
    }
    let runs = runs.lock().expect("the run counts' lock");
    assert_eq!(runs.len(), n * 4);
    assert!(runs.values().all(|&count| count == 1));
    done
}
