//! Helpers shared by the engine tests.
#![allow(dead_code, unreachable_pub)]

pub mod queue;

use std::time::Duration;

use naxos_core::model::{BackoffPolicy, Execution, JobDefinition, TaskBuilder};
use naxos_core::{Engine, EngineConfig, ExecutionId};

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

/// Registers a definition `bad` of the one task `task` and expects it refused, with a problem
/// that names `field` (in backquotes).
pub async fn assert_refused(engine: &Engine, task: TaskBuilder, field: &str) {
    let err = engine
        .register_definition(JobDefinition::builder("bad").task(task).build())
        .await
        .unwrap_err();
    let naxos_core::Error::InvalidDefinition { problems, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        problems.iter().any(|p| p.to_string().contains(&format!("`{field}`"))),
        "{field}: {err}"
    );
}

/// The longest any test waits for an execution.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls the execution until `ready` holds of it, for at most [`DEADLINE`].
pub async fn until(engine: &Engine, id: ExecutionId, ready: impl Fn(&Execution) -> bool) -> Execution {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let exec = engine.execution(id).await.unwrap();
        if ready(&exec) {
            return exec;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition never held: {exec:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Log lines collected in memory.
#[derive(Clone, Default)]
pub struct Lines(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Collects this thread's logs (every level up to DEBUG; as JSON lines with the current span
/// if `json`) until the guard drops.
pub fn capture_logs(json: bool) -> (Lines, tracing::subscriber::DefaultGuard) {
    let lines = Lines::default();
    let writer = lines.clone();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone());
    let guard = if json {
        tracing::subscriber::set_default(builder.json().with_current_span(true).finish())
    } else {
        tracing::subscriber::set_default(builder.finish())
    };
    (lines, guard)
}
