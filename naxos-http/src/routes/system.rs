//! `/api/v1/system/status` and `/health`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::backend::ExecutionQuery;
use naxos_core::ExecutionStatus;

use crate::error::{ApiResult, ErrorBody, ErrorDetail};
use crate::views::{HealthChecks, HealthView, NodeView, SummaryView, SystemStatusView};
use crate::AppState;

/// How many unfinished executions the system status lists.
const ACTIVE_SHOWN: usize = 100;

/// `GET /api/v1/system/status`.
#[utoipa::path(
    get, path = "/api/v1/system/status", tag = "system",
    responses(
        (status = 200, description = "Counts, active executions and nodes", body = SystemStatusView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn status(State(app): State<AppState>) -> ApiResult<Json<SystemStatusView>> {
    let counts = app.engine.counts().await?;
    let count = |s: ExecutionStatus| counts.executions.get(&s).copied().unwrap_or(0);
    let mut active_jobs = Vec::new();
    for status in [ExecutionStatus::Running, ExecutionStatus::Pending] {
        let room = ACTIVE_SHOWN - active_jobs.len();
        if room == 0 {
            break;
        }
        let page = app
            .engine
            .executions(&ExecutionQuery {
                status: Some(status),
                limit: room,
                ..Default::default()
            })
            .await?;
        active_jobs.extend(page.executions.iter().map(SummaryView::from));
    }
    let now = app.engine.config().clock.now();
    let stale_after = chrono::Duration::from_std(app.config.node_timeout).unwrap_or(chrono::Duration::MAX);
    let nodes = app
        .engine
        .nodes()
        .await?
        .into_iter()
        .map(|node| NodeView {
            alive: now - node.last_seen <= stale_after,
            node,
        })
        .collect();
    Ok(Json(SystemStatusView {
        active_jobs,
        active_count: count(ExecutionStatus::Running) + count(ExecutionStatus::Pending),
        queued_count: counts.queued_tasks,
        running_count: counts.running_tasks,
        executed_jobs: count(ExecutionStatus::Completed),
        failed_jobs: count(ExecutionStatus::Failed),
        cancelled_jobs: count(ExecutionStatus::Cancelled),
        nodes,
        updated_at: now,
    }))
}

/// `GET /health`: pings the Store and the Queue for real; 503 naming whichever is down.
#[utoipa::path(
    get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "Store and Queue answer", body = HealthView),
        (status = 503, description = "Something is down; `error.message` names it", body = HealthView),
    )
)]
pub(crate) async fn health(State(app): State<AppState>) -> Response {
    let health = app.engine.health().await;
    // The backends' own errors name hosts and credentials: they go to the log, not to whoever
    // asks for /health.
    let check = |name: &str, r: &naxos_core::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, dependency = name, "health check failed");
            "down".to_string()
        }
    };
    let checks = HealthChecks {
        store: check("store", &health.store),
        queue: check("queue", &health.queue),
    };
    if health.is_healthy() {
        let view = HealthView {
            status: "ok".into(),
            checks,
            dead_letters: health.dead_letters,
            error: None,
        };
        (StatusCode::OK, Json(view)).into_response()
    } else {
        let down: Vec<&str> = [("store", &health.store), ("queue", &health.queue)]
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(name, _)| name)
            .collect();
        let view = HealthView {
            status: "unavailable".into(),
            checks,
            dead_letters: health.dead_letters,
            error: Some(ErrorDetail {
                code: "unavailable".into(),
                message: format!("unavailable: {}", down.join(", ")),
                problems: Vec::new(),
            }),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(view)).into_response()
    }
}
