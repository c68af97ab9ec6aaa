//! Logs carry ids, statuses and timings, never the data users run through naxos: params and
//! outputs stay out of every log line, at every level up to debug.

mod common;

use common::capture_logs;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Engine, ExecutionStatus};

#[tokio::test(flavor = "current_thread")]
async fn params_and_outputs_never_reach_the_logs() {
    let (lines, _guard) = capture_logs(false);

    let engine = Engine::in_memory();
    engine.register("copy", |ctx| async move {
        let secret: String = ctx.param("password").unwrap_or_default();
        Ok(json!({ "token": format!("{secret}-out") }))
    });
    let job = JobDefinition::builder("secrets")
        .task(TaskBuilder::new("a", "copy"))
        .task(TaskBuilder::new("b", "copy").after(["a"]))
        .build();
    engine.register_definition(job).await.unwrap();
    engine.start().unwrap();
    let id = engine
        .execute("secrets", json!({ "password": "hunter2-in-params" }))
        .await
        .unwrap()
        .execution_id;
    let done = engine.wait_for(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    engine.shutdown().await;

    let text = lines.text();
    assert!(text.contains("execution submitted"), "the logs were captured:\n{text}");
    assert!(!text.contains("hunter2"), "a param reached the logs:\n{text}");
}
