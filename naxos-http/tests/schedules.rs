//! `/api/v1/schedules` in-process, on an engine with a manual clock whose scheduler passes the
//! test runs itself: create (201), identical again (200), each bad field (422 naming it),
//! ticks that start executions listed by `?scheduleId=`, pause, resume, delete.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use common::call;
use naxos_core::clock::ManualClock;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::{self, json, Value};
use naxos_core::{Clock, Engine, EngineConfig};
use naxos_http::{router, HttpConfig};

struct Api {
    engine: Engine,
    app: axum::Router,
    clock: ManualClock,
}

impl Api {
    async fn new() -> Self {
        let clock = ManualClock::new(
            DateTime::parse_from_rfc3339("2024-01-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        let engine = Engine::builder()
            .config(EngineConfig {
                clock: Clock::Manual(clock.clone()),
                ..EngineConfig::default()
            })
            .build()
            .unwrap();
        engine.register("f", |_ctx| async move { Ok(json!(null)) });
        engine
            .register_definition(
                JobDefinition::builder("job")
                    .task(TaskBuilder::new("only", "f"))
                    .build(),
            )
            .await
            .unwrap();
        let app = router(engine.clone(), HttpConfig::default());
        Self { engine, app, clock }
    }

    async fn call(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let (status, text) = call(&self.app, method, uri, body).await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    /// Moves the clock by `secs` and runs a scheduler pass, as every node's loop does.
    async fn tick(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
        self.engine.schedule_once().await.unwrap();
    }

    async fn runs(&self, schedule: &str) -> Vec<Value> {
        let (status, page) = self
            .call("GET", &format!("/api/v1/jobs?scheduleId={schedule}"), "")
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["executions"].as_array().unwrap().clone()
    }
}

/// A 422 `invalid_schedule` whose message names `field`.
async fn refused(api: &Api, body: Value, field: &str) {
    let (status, answer) = api.call("POST", "/api/v1/schedules", &body.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    assert_eq!(answer["error"]["code"], "invalid_schedule", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(field),
        "{body}: the message names `{field}`: {message}"
    );
}

#[tokio::test]
async fn schedules_over_http() {
    let api = Api::new().await;
    let body = json!({"id": "every-10s", "definitionId": "job", "cron": "*/10 * * * * *", "params": {"n": 1}});
    let (status, created) = api.call("POST", "/api/v1/schedules", &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["timezone"], "UTC", "the default time zone");
    assert_eq!(created["catchUp"], "skip", "the default catch-up");
    assert_eq!(created["paused"], false);
    assert_eq!(created["nextTick"], "2024-01-01T10:00:10Z");
    let (status, again) = api.call("POST", "/api/v1/schedules", &body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "identical: {again}");

    refused(
        &api,
        json!({"id": "s", "definitionId": "job", "cron": "every minute"}),
        "cron",
    )
    .await;
    refused(
        &api,
        json!({"id": "s", "definitionId": "job", "cron": "99 * * * *"}),
        "cron",
    )
    .await;
    refused(
        &api,
        json!({"id": "s", "definitionId": "job", "cron": "* * * * *", "timezone": "Mars/Base"}),
        "timezone",
    )
    .await;
    refused(
        &api,
        json!({"id": "s", "definitionId": "no-such-job", "cron": "* * * * *"}),
        "definitionId",
    )
    .await;
    refused(
        &api,
        json!({"id": "s", "definitionId": "job", "cron": "* * * * *", "catchUp": "some"}),
        "catchUp",
    )
    .await;
    refused(&api, json!({"id": "s", "definitionId": "job"}), "cron").await;
    let (_, listed) = api.call("GET", "/api/v1/schedules", "").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "nothing bad was stored: {listed}");

    api.tick(11).await;
    let runs = api.runs("every-10s").await;
    assert_eq!(runs.len(), 1, "the 10:00:10 tick: {runs:?}");
    assert_eq!(runs[0]["scheduleId"], "every-10s");
    let id = runs[0]["id"].as_str().unwrap();
    let (_, status_view) = api.call("GET", &format!("/api/v1/jobs/{id}/status"), "").await;
    assert_eq!(status_view["scheduleId"], "every-10s", "{status_view}");
    assert_eq!(status_view["data"], json!({"n": 1}));
    assert!(api.runs("another").await.is_empty());

    let (status, paused) = api.call("POST", "/api/v1/schedules/every-10s/pause", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (paused["paused"].clone(), paused["nextTick"].clone()),
        (json!(true), Value::Null)
    );
    api.tick(10).await;
    assert_eq!(api.runs("every-10s").await.len(), 1, "paused: no tick fires");
    let (status, resumed) = api.call("POST", "/api/v1/schedules/every-10s/resume", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["nextTick"], "2024-01-01T10:00:30Z");
    api.tick(10).await;
    assert_eq!(api.runs("every-10s").await.len(), 2, "resumed: the next tick fires");

    let (status, one) = api.call("GET", "/api/v1/schedules/every-10s", "").await;
    assert_eq!(
        (status, one["lastTick"].clone()),
        (StatusCode::OK, json!("2024-01-01T10:00:30Z"))
    );
    let (status, _) = api.call("DELETE", "/api/v1/schedules/every-10s", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, uri) in [
        ("GET", "/api/v1/schedules/every-10s"),
        ("DELETE", "/api/v1/schedules/every-10s"),
        ("POST", "/api/v1/schedules/every-10s/pause"),
        ("POST", "/api/v1/schedules/every-10s/resume"),
    ] {
        let (status, answer) = api.call(method, uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
    }
    api.tick(10).await;
    assert_eq!(
        api.runs("every-10s").await.len(),
        2,
        "deleted: no tick fires; its executions stay"
    );
}
