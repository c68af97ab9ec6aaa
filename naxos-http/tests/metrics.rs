//! `/metrics` after a known run: the values match what happened. Its own test binary, since
//! the Prometheus recorder is process-wide.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use naxos_core::model::{BackoffPolicy, JobDefinition, TaskBuilder};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, TaskError};
use naxos_http::HttpConfig;

/// The value of the series `name` whose labels include every `k="v"` in `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or_default();
            let metric = series.split('{').next().unwrap_or_default();
            metric == name && labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let handle = naxos_http::install_prometheus().expect("install the recorder");
    let engine = Engine::in_memory();
    engine.register("ok", |_ctx| async move { Ok(json!(1)) });
    engine.register("bad", |_ctx| async move { Err::<Value, _>(TaskError::fatal("no")) });
    engine.register("flaky", |ctx| async move {
        if ctx.attempt() == 1 {
            return Err(TaskError::retryable("first try fails"));
        }
        Ok(json!(2))
    });
    let quick = BackoffPolicy {
        initial_ms: 10,
        max_ms: 10,
        multiplier: 1.0,
        jitter: 0.0,
    };
    engine
        .register_definition(
            JobDefinition::builder("m-ok")
                .task(TaskBuilder::new("a", "ok"))
                .task(TaskBuilder::new("b", "flaky").after(["a"]).max_retry(2).backoff(quick))
                .build(),
        )
        .await
        .unwrap();
    engine
        .register_definition(
            JobDefinition::builder("m-bad")
                .task(TaskBuilder::new("x", "bad"))
                .build(),
        )
        .await
        .unwrap();
    engine.start().unwrap();
    let app = naxos_http::router(
        engine.clone(),
        HttpConfig {
            metrics: Some(handle),
            ..HttpConfig::default()
        },
    );
    let mut ids = Vec::new();
    for definition in ["m-ok", "m-ok", "m-ok", "m-bad"] {
        let (status, body) = common::call(&app, "POST", &format!("/api/v1/jobs/{definition}/execute"), "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let body: Value = serde_json::from_str(&body).unwrap();
        ids.push(body["executionId"].as_str().unwrap().parse().unwrap());
    }
    for id in ids {
        engine.wait_for_timeout(id, Duration::from_secs(20)).await.unwrap();
    }
    let (status, text) = common::call(&app, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    let v = |name: &str, labels: &[(&str, &str)]| {
        value(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in:\n{text}"))
    };
    assert_eq!(v("naxos_executions_submitted_total", &[("definition", "m-ok")]), 3.0);
    assert_eq!(
        v(
            "naxos_executions_finished_total",
            &[("definition", "m-ok"), ("status", "COMPLETED")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "naxos_executions_finished_total",
            &[("definition", "m-bad"), ("status", "FAILED")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "naxos_task_attempts_total",
            &[("function", "ok"), ("outcome", "completed")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "naxos_task_attempts_total",
            &[("function", "flaky"), ("outcome", "retrying")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "naxos_task_attempts_total",
            &[("function", "flaky"), ("outcome", "completed")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "naxos_task_attempts_total",
            &[("function", "bad"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(v("naxos_task_retries_total", &[("function", "flaky")]), 3.0);
    assert_eq!(v("naxos_task_duration_seconds_count", &[("function", "flaky")]), 6.0);
    assert_eq!(v("naxos_task_queue_wait_seconds_count", &[("function", "ok")]), 3.0);
    assert_eq!(v("naxos_tasks_running", &[]), 0.0);
    assert_eq!(v("naxos_queue_depth", &[]), 0.0);
    assert_eq!(v("naxos_executions", &[("status", "COMPLETED")]), 3.0);
    assert_eq!(v("naxos_executions", &[("status", "FAILED")]), 1.0);
    let execute = [
        ("method", "POST"),
        ("route", "/api/v1/jobs/{id}/execute"),
        ("status", "202"),
    ];
    assert_eq!(v("naxos_http_requests_total", &execute), 4.0);
    assert!(v("naxos_http_request_duration_seconds_count", &execute[..2]) >= 4.0);
    assert!(
        text.contains("naxos_task_duration_seconds_bucket"),
        "histograms, not summaries"
    );
    engine.shutdown().await;
}
