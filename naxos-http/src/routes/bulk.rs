//! `/api/v1/jobs/cancel` and `/api/v1/jobs/retry`: bulk actions by filter.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use naxos_core::{ExecutionFilter, ExecutionStatus};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{body, AppState};

/// Which executions a bulk action applies to; at least one field. Unknown fields are refused,
/// so that a misspelt one never widens the filter.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BulkFilter {
    /// Only executions of this definition.
    definition_id: Option<String>,
    /// Only executions in this status (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED).
    status: Option<String>,
    /// Only executions created before this instant (RFC 3339).
    #[schema(format = DateTime)]
    created_before: Option<String>,
}

/// What a bulk action did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BulkAck {
    /// How many executions the filter matched and the action changed.
    matched: u64,
}

/// `POST /api/v1/jobs/cancel`: cancels every unfinished execution the filter matches.
#[utoipa::path(
    post, path = "/api/v1/jobs/cancel", operation_id = "cancelExecutions", tag = "jobs",
    request_body(content = BulkFilter, description = "Which executions: at least one of definitionId, status, createdBefore"),
    responses(
        (status = 200, description = "How many were cancelled (finished ones are not counted)", body = BulkAck),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 422, description = "An empty filter, an unknown field, a bad status or time", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(State(app): State<AppState>, raw: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let filter = filter(&app, raw)?;
    let matched = app.engine.cancel_matching(&filter).await?;
    Ok(Json(BulkAck { matched }).into_response())
}

/// `POST /api/v1/jobs/retry`: retries every FAILED or CANCELLED execution the filter matches.
#[utoipa::path(
    post, path = "/api/v1/jobs/retry", operation_id = "retryExecutions", tag = "jobs",
    request_body(content = BulkFilter, description = "Which executions: at least one of definitionId, status, createdBefore"),
    responses(
        (status = 200, description = "How many were retried (only FAILED or CANCELLED ones are)", body = BulkAck),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 422, description = "An empty filter, an unknown field, a bad status or time", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn retry(State(app): State<AppState>, raw: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let filter = filter(&app, raw)?;
    let matched = app.engine.retry_matching(&filter).await?;
    Ok(Json(BulkAck { matched }).into_response())
}

/// The filter of the body, checked: 422 naming the field at fault.
fn filter(app: &AppState, raw: Result<Bytes, BytesRejection>) -> Result<ExecutionFilter, ApiError> {
    let bytes = body::bytes(raw, app.config.max_body_bytes)?;
    let invalid = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", message);
    let given: BulkFilter = body::json(&bytes, StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter")?;
    let status = given
        .status
        .as_deref()
        .map(|s| {
            ExecutionStatus::parse(s).ok_or_else(|| {
                invalid(format!(
                    "status `{s}` is not one of PENDING, RUNNING, COMPLETED, FAILED, CANCELLED"
                ))
            })
        })
        .transpose()?;
    let created_before = given
        .created_before
        .as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| invalid(format!("createdBefore `{t}` is not an RFC 3339 time: {e}")))
        })
        .transpose()?;
    let filter = ExecutionFilter {
        definition_id: given.definition_id,
        status,
        created_before,
    };
    if filter.is_empty() {
        return Err(invalid(
            "a bulk action needs a filter: at least one of definitionId, status, createdBefore".into(),
        ));
    }
    Ok(filter)
}
