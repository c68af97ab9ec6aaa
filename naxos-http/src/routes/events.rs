//! `GET /api/v1/jobs/{executionId}/events`: server-sent status events for one execution.
//!
//! The stream opens with a snapshot (`event: snapshot`, one per task, then the execution), then
//! carries every live change (`event: status`) from the engine's event feed — which carries the
//! Queue's status events, so an API node streams what workers anywhere do — and ends after the
//! execution reaches a terminal status. A client that falls behind the feed gets a fresh
//! snapshot of the Store and the stream ends; it reconnects for more. Each `data:` is a
//! [`StatusEvent`] as JSON.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use naxos_core::engine::EventStream;
use naxos_core::model::{EventKind, Execution, ExecutionId, StatusEvent};
use naxos_core::Engine;
use tokio::sync::mpsc;

use super::execution_id;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiPath;
use crate::AppState;

/// How often the stream re-reads the Store in case a terminal event was missed.
const RECHECK: Duration = Duration::from_secs(2);

/// Server-sent status events for one execution.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/events", operation_id = "streamExecutionEvents", tag = "jobs",
    params(("id" = String, Path, description = "The execution id")),
    responses(
        (status = 200, description = "`text/event-stream`: `snapshot` events, then `status` events, each `data:` a StatusEvent; ends when the execution finishes", content_type = "text/event-stream", body = StatusEvent),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn stream(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id = execution_id(&id)?;
    // Watch before reading the state, so no change between the two is lost.
    let events = app.engine.watch(id).await?;
    let execution = app.engine.execution(id).await?;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(pump(app.engine.clone(), id, execution, events, tx));
    let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse(name: &'static str, event: &StatusEvent) -> Event {
    Event::default()
        .event(name)
        .json_data(event)
        .unwrap_or_else(|_| Event::default().comment("unserializable event"))
}

/// The current state as events: each task, then the execution.
fn snapshot(execution: &Execution) -> Vec<StatusEvent> {
    let mut events: Vec<StatusEvent> = execution
        .tasks
        .iter()
        .map(|t| StatusEvent {
            execution_id: execution.id,
            definition_id: execution.definition_id.clone(),
            kind: EventKind::Task {
                task_id: t.task_id.clone(),
                attempt: t.attempt,
                status: t.status,
            },
            error: t.error.clone(),
            at: t
                .end_time
                .or(t.start_time)
                .or(t.queued_at)
                .unwrap_or(execution.created_at),
        })
        .collect();
    events.push(StatusEvent {
        execution_id: execution.id,
        definition_id: execution.definition_id.clone(),
        kind: EventKind::Execution {
            status: execution.status,
        },
        error: execution.error.clone(),
        at: execution.updated_at,
    });
    events
}

async fn pump(engine: Engine, id: ExecutionId, execution: Execution, mut events: EventStream, tx: mpsc::Sender<Event>) {
    if !send_snapshot(&tx, &execution).await || execution.status.is_terminal() {
        return;
    }
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            next = events.next() => match next {
                Some(event) => {
                    let done = event.execution_status().is_some_and(|s| s.is_terminal());
                    if tx.send(sse("status", &event)).await.is_err() || done {
                        return;
                    }
                }
                None => {
                    // Fell behind the feed, or the node is shutting down: end with the truth.
                    tracing::debug!(%id, "event stream ended; closing with a snapshot");
                    if let Ok(now) = engine.execution(id).await {
                        send_snapshot(&tx, &now).await;
                    }
                    return;
                }
            },
            _ = recheck.tick() => {
                // A missed terminal event must not leave the stream open for ever.
                if let Ok(now) = engine.execution(id).await {
                    if now.status.is_terminal() {
                        send_snapshot(&tx, &now).await;
                        return;
                    }
                }
            }
        }
    }
}

/// Sends the execution as `snapshot` events; false when the client is gone.
async fn send_snapshot(tx: &mpsc::Sender<Event>, execution: &Execution) -> bool {
    for event in snapshot(execution) {
        if tx.send(sse("snapshot", &event)).await.is_err() {
            return false;
        }
    }
    true
}
