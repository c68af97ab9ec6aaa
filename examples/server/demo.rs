//! The demo task functions and sample definitions the server registers at start.

use std::time::Duration;

use naxos::serde_json::{json, Map, Value};
use naxos::{Engine, JobDefinition, TaskContext, TaskError};

/// The original's sample jobs: `sample-1` (chain) and `sample-2` (diamond), in its JSON format.
pub(crate) const SAMPLES: [&str; 2] = [
    include_str!("samples/sample-1.json"),
    include_str!("samples/sample-2.json"),
];

/// Parses the samples (they are part of the program: a parse error is a bug).
pub(crate) fn samples() -> Vec<JobDefinition> {
    SAMPLES
        .iter()
        .map(|s| JobDefinition::from_json(s).expect("the bundled samples are valid"))
        .collect()
}

/// Registers `Task1`..`Task4`, `echo`, `sleep`, `flaky` and `fail`.
pub(crate) fn register(engine: &Engine) {
    for name in ["Task1", "Task2", "Task3", "Task4"] {
        engine.register(name, move |ctx| async move {
            let ms = ctx.param::<u64>("sleepMs").unwrap_or(0);
            tracing::info!(
                function = name,
                task = ctx.task_id(),
                sleep_ms = ms,
                "running sample task"
            );
            nap(&ctx, ms).await?;
            Ok(json!({ "task": ctx.task_id(), "function": name, "sleptMs": ms }))
        });
    }
    engine.register("echo", |ctx| async move {
        let upstream: Map<String, Value> = ctx.upstream_all().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Ok(json!({ "params": ctx.params(), "upstream": upstream }))
    });
    engine.register("sleep", |ctx| async move {
        let ms = ctx.param::<u64>("ms").unwrap_or(0);
        nap(&ctx, ms).await?;
        Ok(json!({ "sleptMs": ms }))
    });
    engine.register("flaky", |ctx| async move {
        let fail_times = ctx.param::<u32>("failTimes").unwrap_or(1);
        if ctx.attempt() <= fail_times {
            return Err(TaskError::retryable(format!(
                "flaky: attempt {} of the first {fail_times} fails",
                ctx.attempt()
            )));
        }
        Ok(json!({ "attempt": ctx.attempt() }))
    });
    engine.register("fail", |ctx| async move {
        let message = ctx
            .param::<String>("message")
            .unwrap_or_else(|| "this task always fails".into());
        Err::<Value, _>(TaskError::fatal(message))
    });
}

/// Sleeps `ms`, or fails (fatally: the result would be discarded anyway) when cancelled.
async fn nap(ctx: &TaskContext, ms: u64) -> Result<(), TaskError> {
    if ms == 0 {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        _ = ctx.cancelled() => Err(TaskError::fatal(format!("cancelled during a {ms} ms sleep"))),
    }
}
