//! With the Store unreachable: /health says 503 and names it, API calls answer 503 without
//! internal detail (and say when to try again), and the server keeps answering. With too much
//! work waiting to start, a submit answers 503 `overloaded` instead of queueing it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use naxos_core::backend::*;
use naxos_core::model::*;
use naxos_core::serde_json::Value;
use naxos_core::{async_trait, Engine, EngineConfig, Error, Result};

/// A Store whose connection is gone: every call fails as a real driver's would.
#[derive(Debug)]
struct UnreachableStore;

fn down<T>() -> Result<T> {
    Err(Error::transient(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "connect to 10.9.9.9:5432: connection refused (secret-host)",
    )))
}

#[async_trait]
impl Store for UnreachableStore {
    async fn put_definition(&self, _: JobDefinition) -> Result<DefinitionPut> {
        down()
    }
    async fn get_definition(&self, _: &str, _: Option<u32>) -> Result<Arc<StoredDefinition>> {
        down()
    }
    async fn definition_versions(&self, _: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        down()
    }
    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        down()
    }
    async fn create_execution(&self, _: NewExecution) -> Result<Created> {
        down()
    }
    async fn get_execution(&self, _: ExecutionId) -> Result<Execution> {
        down()
    }
    async fn list_executions(&self, _: &ExecutionQuery) -> Result<ExecutionPage> {
        down()
    }
    async fn claim(&self, _: ClaimRequest) -> Result<ClaimedTask> {
        down()
    }
    async fn heartbeat(&self, _: &TaskRef, _: Duration) -> Result<LeaseState> {
        down()
    }
    async fn finish(&self, _: Vec<TaskFinish>) -> Result<FinishReport> {
        down()
    }
    async fn release(&self, _: &TaskRef) -> Result<Changes> {
        down()
    }
    async fn stop_execution(&self, _: ExecutionId, _: StopReason) -> Result<StopOutcome> {
        down()
    }
    async fn retry_execution(&self, _: ExecutionId) -> Result<Changes> {
        down()
    }
    async fn recover_expired(&self, _: u32, _: usize) -> Result<Changes> {
        down()
    }
    async fn take_stale(&self, _: Duration, _: usize) -> Result<Changes> {
        down()
    }
    async fn retry_from(&self, _: ExecutionId, _: &str) -> Result<Changes> {
        down()
    }
    async fn wake(&self, _: &TaskRef) -> Result<Changes> {
        down()
    }
    async fn wake_due(&self, _: usize) -> Result<Changes> {
        down()
    }
    async fn start_delayed(&self, _: ExecutionId) -> Result<Changes> {
        down()
    }
    async fn signal(&self, _: ExecutionId, _: &str, _: Value) -> Result<SignalOutcome> {
        down()
    }
    async fn set_definition_paused(&self, _: &str, _: bool) -> Result<()> {
        down()
    }
    async fn admit_blocked(&self, _: usize) -> Result<Changes> {
        down()
    }
    async fn orphaned_children(&self, _: usize) -> Result<Vec<ExecutionId>> {
        down()
    }
    async fn overdue_executions(&self, _: usize) -> Result<Vec<ExecutionId>> {
        down()
    }
    async fn prune(&self, _: RetentionDefaults, _: usize) -> Result<u64> {
        down()
    }
    async fn counts(&self) -> Result<StoreCounts> {
        down()
    }
    async fn put_node(&self, _: NodeInfo) -> Result<()> {
        down()
    }
    async fn prune_nodes(&self, _: Duration) -> Result<u64> {
        down()
    }
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        down()
    }
    async fn ping(&self) -> Result<()> {
        down()
    }
}

/// The status, the `Retry-After` header and the JSON body of one call.
async fn call(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Option<String>, Value) {
    let (status, headers, text) = common::call_with_headers(app, method, uri, body).await;
    let retry_after = headers.get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, serde_json::from_str(&text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_gives_503s_that_leak_nothing() {
    let engine = Engine::builder().store(Arc::new(UnreachableStore)).build().unwrap();
    engine.register("f", |_ctx| async move { Ok(Value::Null) });
    engine.start().unwrap();
    let app = naxos_http::router(engine.clone(), Default::default());

    let (status, _, health) = call(&app, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["error"]["message"], "unavailable: store");
    assert_eq!(health["checks"]["queue"], "ok");
    assert_eq!(health["checks"]["store"], "down");
    assert!(
        !health.to_string().contains("secret-host"),
        "the backend's error stays in the log: {health}"
    );

    let definition = r#"{"id":"d","tasks":{"t":{"id":"t","functionName":"f"}}}"#;
    let calls = [
        ("POST", "/api/v1/job-definitions", definition),
        ("GET", "/api/v1/job-definitions", ""),
        ("POST", "/api/v1/jobs/d/execute", "{}"),
        ("GET", "/api/v1/jobs", ""),
        ("GET", "/api/v1/system/status", ""),
    ];
    for (method, uri, body) in calls {
        let (status, retry_after, answer) = call(&app, method, uri, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}: {answer}");
        assert_eq!(answer["error"]["code"], "unavailable");
        assert_eq!(retry_after.as_deref(), Some("1"), "{method} {uri}: when to try again");
        assert!(
            !answer.to_string().contains("secret-host"),
            "no internal detail: {answer}"
        );
    }
    // Still serving after all of that.
    let (status, _, _) = call(&app, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_much_waiting_work_gives_503_overloaded_with_retry_after() {
    let engine = Engine::builder()
        .config(EngineConfig {
            workers: false,
            max_pending_executions: Some(2),
            sweep_interval: Duration::from_secs(3),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    engine.register("f", |_ctx| async move { Ok(Value::Null) });
    let app = naxos_http::router(engine.clone(), Default::default());
    let definition = r#"{"id":"d","tasks":{"t":{"id":"t","functionName":"f"}}}"#;
    let (status, _, _) = call(&app, "POST", "/api/v1/job-definitions", definition).await;
    assert_eq!(status, StatusCode::CREATED);
    for _ in 0..2 {
        let (status, _, answer) = call(&app, "POST", "/api/v1/jobs/d/execute", "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (status, retry_after, answer) = call(&app, "POST", "/api/v1/jobs/d/execute", "{}").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "overloaded");
    assert_eq!(retry_after.as_deref(), Some("3"), "one reading of the count later");
    let (_, _, page) = call(&app, "GET", "/api/v1/jobs", "").await;
    assert_eq!(
        page["executions"].as_array().unwrap().len(),
        2,
        "the refused one was not queued"
    );
}
