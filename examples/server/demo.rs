//! The demo task functions and sample definitions the server registers at start.

use std::future::Future;
use std::time::Duration;

use naxos::serde_json::{json, Map, Value};
use naxos::{Engine, JobDefinition, TaskContext, TaskError};

use crate::call_log::CallLog;

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

/// Registers `Task1`..`Task4`, `echo` (in a fan-out, with its `item` and `index`), `sleep`,
/// `flaky` and `fail`; with a call log, each call
/// is recorded there before it returns.
pub(crate) fn register(engine: &Engine, log: Option<CallLog>) {
    for name in ["Task1", "Task2", "Task3", "Task4"] {
        add(engine, &log, name, move |ctx| async move {
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
    add(engine, &log, "echo", |ctx| async move {
        let upstream: Map<String, Value> = ctx.upstream_all().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut out = json!({ "params": ctx.params(), "upstream": upstream });
        // An instance of a fan-out also echoes its item and index.
        if let (Some(item), Some(index)) = (ctx.item(), ctx.index()) {
            out["item"] = item.clone();
            out["index"] = json!(index);
        }
        Ok(out)
    });
    add(engine, &log, "sleep", |ctx| async move {
        let ms = ctx.param::<u64>("ms").unwrap_or(0);
        nap(&ctx, ms).await?;
        Ok(json!({ "sleptMs": ms }))
    });
    add(engine, &log, "flaky", |ctx| async move {
        // In a fan-out, an item `{"failTimes": N}` sets it for its instance alone.
        let fail_times = ctx
            .item()
            .and_then(|i| i.get("failTimes"))
            .and_then(Value::as_u64)
            .map(|n| n as u32)
            .or_else(|| ctx.param::<u32>("failTimes"))
            .unwrap_or(1);
        if ctx.attempt() <= fail_times {
            return Err(TaskError::retryable(format!(
                "flaky: attempt {} of the first {fail_times} fails",
                ctx.attempt()
            )));
        }
        Ok(json!({ "attempt": ctx.attempt() }))
    });
    add(engine, &log, "fail", |ctx| async move {
        let message = ctx
            .param::<String>("message")
            .unwrap_or_else(|| "this task always fails".into());
        Err::<Value, _>(TaskError::fatal(message))
    });
}

/// Registers `f` as `name`, appending each call to `log` (if any) before its result goes back.
fn add<F, Fut>(engine: &Engine, log: &Option<CallLog>, name: &'static str, f: F)
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    let log = log.clone();
    engine.register(name, move |ctx: TaskContext| {
        let (execution, task, attempt) = (ctx.execution_id(), ctx.task_id().to_string(), ctx.attempt());
        let call = f(ctx);
        let log = log.clone();
        async move {
            let result = call.await;
            if let Some(log) = log {
                log.append(execution, &task, attempt, result.is_ok()).await;
            }
            result
        }
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
