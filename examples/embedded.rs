//! A diamond DAG of closures passing outputs, in-process: `cargo run --example embedded`.
//! The README's first example ("A first job"), same code.
use std::time::Duration;

use naxos::serde_json::json;
use naxos::{Engine, JobDefinition, TaskBuilder, TaskContext, TaskError};

#[tokio::main]
async fn main() -> Result<(), naxos::Error> {
    let engine = Engine::in_memory();
    engine.register("fetch", |ctx| async move {
        let city: String = ctx.param("city").ok_or_else(|| TaskError::fatal("no city given"))?;
        tokio::select! {
            // Fires on a timeout or a cancel; the function then has `cancel_grace` to return.
            _ = ctx.cancelled() => Err(TaskError::retryable("stopped before the reading came")),
            celsius = read_thermometer(&city) => Ok(json!({ "city": city, "celsius": celsius })),
        }
    });
    let celsius = |ctx: &TaskContext| ctx.upstream("fetch").and_then(|v| v["celsius"].as_f64());
    engine.register("fahrenheit", move |ctx| async move {
        Ok(json!(celsius(&ctx).map(|c| c * 1.8 + 32.0)))
    });
    engine.register("kelvin", move |ctx| async move {
        Ok(json!(celsius(&ctx).map(|c| c + 273.15)))
    });
    engine.register("report", |ctx| async move {
        let (f, k) = (ctx.upstream("fahrenheit"), ctx.upstream("kelvin"));
        let city = ctx.params()["city"].as_str().unwrap_or("?").to_string();
        Ok(json!(format!("{city}: {} °F, {} K", f.unwrap(), k.unwrap())))
    });
    let job = JobDefinition::builder("weather")
        .task(
            TaskBuilder::new("fetch", "fetch")
                .max_retry(3)
                .timeout(Duration::from_secs(5)),
        )
        .task(TaskBuilder::new("fahrenheit", "fahrenheit").after(["fetch"]))
        .task(TaskBuilder::new("kelvin", "kelvin").after(["fetch"]))
        .task(TaskBuilder::new("report", "report").after(["fahrenheit", "kelvin"]))
        .build();
    engine.register_definition(job).await?;
    engine.start()?;
    let run = engine.execute("weather", json!({ "city": "Naxos" })).await?;
    let done = engine.wait_for(run.execution_id).await?;
    let report = done.task("report").and_then(|t| t.output.clone()).unwrap_or_default();
    println!("{}: {}", done.status, report.as_str().unwrap_or_default());
    engine.shutdown().await;
    Ok(())
}

/// Stands in for a call to a weather service.
async fn read_thermometer(_city: &str) -> f64 {
    21.5
}
