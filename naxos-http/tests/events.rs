//! Server-sent events: the sequence for a diamond, a late client, and unknown executions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::{json, Value};
use naxos_core::Engine;
use tokio::sync::Notify;
use tower::ServiceExt;

/// One SSE frame: its `event:` name and its JSON `data:`.
fn frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|frame| {
            let name = frame.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).expect("JSON data")))
        })
        .collect()
}

async fn open(app: &axum::Router, id: &str) -> axum::response::Response {
    let req = Request::get(format!("/api/v1/jobs/{id}/events"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

async fn read_all(res: axum::response::Response) -> Vec<(String, Value)> {
    let body = tokio::time::timeout(Duration::from_secs(20), res.into_body().collect())
        .await
        .expect("the stream ends once the execution is finished")
        .unwrap()
        .to_bytes();
    frames(std::str::from_utf8(&body).unwrap())
}

fn setup() -> (Engine, axum::Router, Arc<Notify>) {
    let engine = Engine::in_memory();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    engine.register("gate", move |_ctx| {
        let gate = g.clone();
        async move {
            gate.notified().await;
            Ok(json!("opened"))
        }
    });
    engine.register("step", |ctx| async move { Ok(json!(ctx.task_id())) });
    engine.start().unwrap();
    let app = naxos_http::router(engine.clone(), Default::default());
    (engine, app, gate)
}

fn diamond() -> JobDefinition {
    JobDefinition::builder("sse")
        .task(TaskBuilder::new("a", "gate"))
        .task(TaskBuilder::new("b", "step").after(["a"]))
        .task(TaskBuilder::new("c", "step").after(["a"]))
        .task(TaskBuilder::new("d", "step").after(["b", "c"]))
        .build()
}

fn position(frames: &[(String, Value)], task: &str, status: &str) -> usize {
    frames
        .iter()
        .position(|(_, e)| e["taskId"] == task && e["status"] == status)
        .unwrap_or_else(|| panic!("no {status} event for {task}: {frames:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_streams_its_state_then_every_change_then_ends() {
    let (engine, app, gate) = setup();
    engine.register_definition(diamond()).await.unwrap();
    let id = engine.execute("sse", json!({})).await.unwrap().execution_id;
    // Wait until `a` is running (held at the gate), then connect.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while engine.execution(id).await.unwrap().task("a").unwrap().status != naxos_core::TaskStatus::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let res = open(&app, &id.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let reading = tokio::spawn(read_all(res));
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.notify_one();
    let frames = reading.await.unwrap();

    let snapshot: Vec<&Value> = frames
        .iter()
        .take_while(|(n, _)| n == "snapshot")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(snapshot.len(), 5, "four tasks and the execution: {frames:?}");
    assert_eq!(snapshot[0]["taskId"], "a");
    assert_eq!(snapshot[0]["status"], "RUNNING");
    assert_eq!(snapshot[3]["status"], "PENDING");
    assert_eq!(
        (snapshot[4]["scope"].clone(), snapshot[4]["status"].clone()),
        (json!("execution"), json!("RUNNING"))
    );

    let a = position(&frames, "a", "COMPLETED");
    let (b, c, d) = (
        position(&frames, "b", "COMPLETED"),
        position(&frames, "c", "COMPLETED"),
        position(&frames, "d", "COMPLETED"),
    );
    assert!(a < b && a < c && b < d && c < d, "causal order: {frames:?}");
    assert!(
        frames[5..].iter().all(|(n, _)| n == "status"),
        "live events after the snapshot"
    );
    let (_, last) = frames.last().unwrap();
    assert_eq!(
        (last["scope"].clone(), last["status"].clone()),
        (json!("execution"), json!("COMPLETED"))
    );
    assert!(
        frames.iter().all(|(_, e)| e["executionId"] == id.to_string()),
        "only this execution"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_client_gets_the_final_state_and_the_stream_ends() {
    let (engine, app, gate) = setup();
    engine.register_definition(diamond()).await.unwrap();
    let id = engine.execute("sse", json!({})).await.unwrap().execution_id;
    gate.notify_one();
    engine.wait_for_timeout(id, Duration::from_secs(10)).await.unwrap();
    let frames = read_all(open(&app, &id.to_string()).await).await;
    assert_eq!(frames.len(), 5);
    assert!(frames
        .iter()
        .all(|(n, e)| n == "snapshot" && e["status"] == "COMPLETED"));
    let (status, _) = {
        let res = open(&app, "not-an-id").await;
        (res.status(), ())
    };
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = open(&app, &naxos_core::uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    engine.shutdown().await;
}
