//! Helpers shared by the engine tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use naxos_core::model::{BackoffPolicy, JobDefinition, TaskBuilder};
use naxos_core::{Engine, EngineConfig};

/// Settings that make recovery fast enough for tests.
pub fn fast_config() -> EngineConfig {
    EngineConfig {
        concurrency: 8,
        lease_ttl: Duration::from_millis(1_500),
        heartbeat_interval: Some(Duration::from_millis(300)),
        sweep_interval: Duration::from_millis(100),
        republish_after: Duration::from_millis(500),
        cancel_grace: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        ..EngineConfig::default()
    }
}

/// An in-memory engine with [`fast_config`].
pub fn engine() -> Engine {
    Engine::builder().config(fast_config()).build().unwrap()
}

/// A short backoff without jitter.
pub fn quick_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial_ms: 10,
        max_ms: 50,
        multiplier: 2.0,
        jitter: 0.0,
    }
}

/// `a → (b, c) → d` with every task running `function`, under `id`.
pub fn diamond(id: &str, function: &str) -> JobDefinition {
    JobDefinition::builder(id)
        .task(TaskBuilder::new("a", function))
        .task(TaskBuilder::new("b", function).after(["a"]))
        .task(TaskBuilder::new("c", function).after(["a"]))
        .task(TaskBuilder::new("d", function).after(["b", "c"]))
        .build()
}

/// The longest any test waits for an execution.
pub const DEADLINE: Duration = Duration::from_secs(20);
