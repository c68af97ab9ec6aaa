//! `/api/v1/jobs`: execute, status, list, cancel, retry.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::backend::ExecutionQuery;
use naxos_core::{ExecuteRequest, ExecutionId, ExecutionStatus};
use serde::Deserialize;
use serde_json::json;

use super::definitions::parse_version;
use super::execution_id;
use crate::error::{ApiError, ApiResult};
use crate::views::{ExecutionView, SummaryView};
use crate::{body, AppState};

/// The largest page a listing returns.
const MAX_LIMIT: usize = 1_000;

#[derive(Deserialize)]
pub(crate) struct ExecuteQuery {
    version: Option<String>,
}

/// `POST /api/v1/jobs/{definitionId}/execute`: the body is the params (empty means `{}`).
/// 202 for a new execution; 200 when the `Idempotency-Key` matched an earlier one.
pub(crate) async fn execute(
    State(app): State<AppState>,
    Path(definition_id): Path<String>,
    Query(q): Query<ExecuteQuery>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body::bytes(raw, app.config.max_body_bytes)?;
    let params = body::params(&bytes)?;
    let mut request = ExecuteRequest::new(definition_id, params);
    request.version = q.version.as_deref().map(parse_version).transpose()?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key
            .to_str()
            .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be visible ASCII"))?;
        request.idempotency_key = Some(key.to_string());
    }
    let submitted = app.engine.submit(request).await?;
    let (status, message) = if submitted.created {
        (StatusCode::ACCEPTED, "Job execution started")
    } else {
        (StatusCode::OK, "Job execution already exists for this Idempotency-Key")
    };
    let execution_status = if submitted.created {
        ExecutionStatus::Pending
    } else {
        app.engine.execution(submitted.execution_id).await?.status
    };
    Ok((
        status,
        Json(json!({
            "executionId": submitted.execution_id,
            "status": execution_status,
            "message": message,
        })),
    )
        .into_response())
}

/// `GET /api/v1/jobs/{executionId}/status`.
pub(crate) async fn status(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ExecutionView>> {
    let id = execution_id(&id)?;
    Ok(Json(ExecutionView::from(app.engine.execution(id).await?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    status: Option<String>,
    definition_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/jobs?status=&definitionId=&limit=&cursor=`: newest first.
pub(crate) async fn list(State(app): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Response> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            ExecutionStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "status `{s}` is not one of PENDING, RUNNING, COMPLETED, FAILED, CANCELLED"
                ))
            })
        })
        .transpose()?;
    let limit = match q.limit.as_deref() {
        None => 50,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit `{raw}` must be a whole number from 1 to {MAX_LIMIT}"))
            })?,
    };
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<ExecutionId>()
                .map_err(|_| ApiError::bad_request(format!("cursor `{c}` is not one this API returned")))
        })
        .transpose()?;
    let page = app
        .engine
        .executions(&ExecutionQuery {
            status,
            definition_id: q.definition_id,
            limit,
            cursor,
        })
        .await?;
    let executions: Vec<SummaryView> = page.executions.iter().map(SummaryView::from).collect();
    Ok(Json(json!({ "executions": executions, "nextCursor": page.next_cursor })).into_response())
}

/// `POST /api/v1/jobs/{executionId}/cancel`: 200, or 409 when already finished.
pub(crate) async fn cancel(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = execution_id(&id)?;
    let status = app.engine.cancel(id).await?;
    Ok(Json(json!({ "executionId": id, "status": status, "message": "Job execution cancelled" })).into_response())
}

/// `POST /api/v1/jobs/{executionId}/retry`: 202, or 409 unless FAILED or CANCELLED.
pub(crate) async fn retry(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = execution_id(&id)?;
    app.engine.retry(id).await?;
    let status = app.engine.execution(id).await?.status;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "executionId": id, "status": status, "message": "Failed tasks re-queued" })),
    )
        .into_response())
}
