//! `/api/v1/system/status` and `/health`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::backend::ExecutionQuery;
use naxos_core::ExecutionStatus;

use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::views::{BackupView, HealthChecks, HealthView, NodeView, SummaryView, SystemStatusView};
use crate::AppState;

/// How many unfinished executions the system status lists.
const ACTIVE_SHOWN: usize = 100;

/// `GET /api/v1/system/status`.
#[utoipa::path(
    get, path = "/api/v1/system/status", operation_id = "getSystemStatus", tag = "system",
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

/// `POST /api/v1/system/backup`: a consistent copy of the Store, taken while the node serves,
/// into a new subdirectory of [`HttpConfig::backup_dir`](crate::HttpConfig::backup_dir) named
/// after the time (`20261130T061500.123Z`). 404 when backups are not enabled; 501 when the
/// Store has tools of its own for this (PostgreSQL).
#[utoipa::path(
    post, path = "/api/v1/system/backup", operation_id = "backupStore", tag = "system",
    responses(
        (status = 201, description = "The copy was written", body = BackupView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Backups are not enabled on this server", body = ErrorBody),
        (status = 501, description = "The Store has no online copy (use its own tools)", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn backup(State(app): State<AppState>) -> ApiResult<Response> {
    let Some(root) = app.config.backup_dir.as_ref() else {
        return Err(ApiError::not_found(
            "backups are not enabled: set HttpConfig::backup_dir (NAXOS_BACKUP_DIR for the example server)",
        ));
    };
    let taken_at = app.engine.config().clock.now();
    let directory = root.join(taken_at.format("%Y%m%dT%H%M%S%.3fZ").to_string());
    let path = app.engine.backup(&directory).await?;
    tracing::info!(path = %path.display(), "store backed up");
    let view = BackupView {
        path: path.display().to_string(),
        taken_at,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /health`: pings the Store and the Queue for real; 503 naming whichever is down.
#[utoipa::path(
    get, path = "/health", operation_id = "getHealth", tag = "system",
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
