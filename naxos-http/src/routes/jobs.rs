//! `/api/v1/jobs`: execute, status, list, cancel, retry, signals.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use naxos_core::backend::ExecutionQuery;
use naxos_core::model::{Delay, Priority, TraceParent};
use naxos_core::{Error, ExecuteRequest, ExecutionId, ExecutionStatus};
use serde::Deserialize;

use super::definitions::parse_version;
use super::execution_id;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::views::{ExecutionAck, ExecutionPageView, ExecutionView, SignalAck, SummaryView};
use crate::{body, AppState};

/// The largest page a listing returns.
const MAX_LIMIT: usize = 1_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteQuery {
    /// Run this version; the latest when absent.
    #[param(value_type = u32, minimum = 1)]
    pub(super) version: Option<String>,
    /// Start the execution this many milliseconds from now (at most ten years): it is created at
    /// once, PENDING with `scheduledFor` and no task queued until then; its `timeoutMs` counts
    /// from that start. 0 starts it at once. Not with `runAt`.
    // The maximum is `MAX_WAIT_MS` (an attribute takes no constant; tests/delays.rs holds them equal).
    #[param(value_type = u64, minimum = 0, maximum = 316_224_000_000_u64)]
    delay_ms: Option<String>,
    /// Start the execution at this time (RFC 3339, e.g. `2030-01-01T09:00:00Z`; at most ten
    /// years ahead), as `delayMs` says; a time already past starts it at once. Not with
    /// `delayMs`.
    #[param(value_type = String, format = DateTime)]
    run_at: Option<String>,
    /// Run it at this priority, 0 (the lowest) to 9 (the highest): under a backlog its tasks
    /// start before those of lower-priority executions already waiting. The definition's
    /// job-level `priority` when absent, else 0. A sub-job's child has its parent's.
    #[param(value_type = u8, minimum = 0, maximum = 9)]
    priority: Option<String>,
}

impl ExecuteQuery {
    /// The delay the query asks for: `None` without `delayMs` or `runAt`; a 400 naming the
    /// parameter for a value that does not parse, or both given. (How far ahead a delay may be
    /// is the engine's rule: it refuses one too far with a 400 naming the parameter too.)
    pub(super) fn delay(&self) -> ApiResult<Option<Delay>> {
        match (self.delay_ms.as_deref(), self.run_at.as_deref()) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "give delayMs or runAt, not both: they both say when the execution starts",
            )),
            (Some(ms), None) => {
                let ms: u64 = ms.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "delayMs `{ms}` must be a whole number of milliseconds, 0 or more"
                    ))
                })?;
                Ok(Some(Delay::For(Duration::from_millis(ms))))
            }
            (None, Some(at)) => {
                let at = DateTime::parse_from_rfc3339(at).map_err(|e| {
                    ApiError::bad_request(format!(
                        "runAt `{at}` is not an RFC 3339 time like 2030-01-01T09:00:00Z: {e}"
                    ))
                })?;
                Ok(Some(Delay::Until(at.with_timezone(&Utc))))
            }
        }
    }

    /// The priority the query asks for: `None` without `priority`; a 400 naming the parameter
    /// for one that is not 0 to 9.
    pub(super) fn priority(&self) -> ApiResult<Option<Priority>> {
        let Some(text) = self.priority.as_deref() else {
            return Ok(None);
        };
        text.parse::<u64>()
            .ok()
            .and_then(|level| Priority::new(level).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "priority `{text}` must be a whole number between 0 (the lowest) and 9 (the highest)"
                ))
            })
    }
}

/// `POST /api/v1/jobs/{definitionId}/execute[?version=&delayMs=|runAt=&priority=]`: the body is the params
/// (empty means `{}`). 202 for a new execution (with `scheduledFor` when delayed); 200 when the
/// `Idempotency-Key` matched an earlier one.
///
/// A W3C `traceparent` header joins the execution to the caller's trace: it is stored with the
/// execution, and every attempt of its tasks is traced as a child of the caller's span (see
/// [`ExecuteRequest::traceparent`]). An invalid one (or more than one) is a 400 naming the
/// header, not ignored as the W3C rules suggest for a hop that merely forwards a trace: this
/// request starts work that runs for a long time on other nodes, and a trace context dropped
/// in silence there is found missing only much later, while a 400 points at the broken
/// client or proxy at once — as for any other bad input here.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/execute", operation_id = "executeJob", tag = "jobs",
    params(
        ("id" = String, Path, description = "The definition to run"),
        ExecuteQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Repeating a request with the same key returns the first execution"),
        ("traceparent" = Option<String>, Header,
            description = "The caller's W3C trace context (`00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`, \
                lowercase): stored with the execution, so that every task attempt's span joins the caller's trace. \
                An invalid value, or more than one header, is a 400 (not ignored: a trace context lost in silence \
                is found missing only when the trace is looked at)",
            pattern = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$",
            example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ),
    request_body(content = Object, description = "The params: a JSON object (an empty body means {})"),
    responses(
        (status = 202, description = "Started", body = ExecutionAck),
        (status = 200, description = "The Idempotency-Key matched an earlier execution", body = ExecutionAck),
        (status = 400, description = "Params that are not a JSON object, malformed JSON, a bad version, an invalid \
            traceparent header; a `delayMs` or `runAt` that does not parse or is more than ten years ahead, or both \
            given; a `priority` that is not 0 to 9 (the message names the parameter)", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such definition or version", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 503, description = "A backend is unavailable, or too many executions wait to start (`overloaded`); \
            try again after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
pub(crate) async fn execute(
    State(app): State<AppState>,
    ApiPath(definition_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExecuteQuery>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body::bytes(raw, app.config.max_body_bytes)?;
    let params = body::params(&bytes)?;
    let mut request = ExecuteRequest::new(definition_id, params);
    request.version = q.version.as_deref().map(parse_version).transpose()?;
    request.delay = q.delay()?;
    request.priority = q.priority()?;
    request.idempotency_key = idempotency_key(&headers)?;
    request.traceparent = traceparent(&headers)?;
    let submitted = app.engine.submit(request).await?;
    let (status, message) = match (submitted.created, submitted.scheduled_for) {
        (true, None) => (StatusCode::ACCEPTED, "Job execution started".to_string()),
        (true, Some(at)) => (
            StatusCode::ACCEPTED,
            format!("Job execution scheduled for {}", at.to_rfc3339()),
        ),
        (false, _) => (
            StatusCode::OK,
            "Job execution already exists for this Idempotency-Key".to_string(),
        ),
    };
    let ack = ExecutionAck {
        execution_id: submitted.execution_id,
        status: submitted.status,
        message,
        scheduled_for: submitted.scheduled_for,
    };
    Ok((status, Json(ack)).into_response())
}

/// The request's `Idempotency-Key` header, if any; a 400 naming it when it is not visible ASCII.
pub(super) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get("idempotency-key")
        .map(|key| {
            key.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be visible ASCII"))
        })
        .transpose()
}

/// The request's W3C `traceparent` header: `None` without one, a 400 naming the header when it
/// is not valid or comes more than once.
pub(super) fn traceparent(headers: &HeaderMap) -> ApiResult<Option<TraceParent>> {
    let mut values = headers.get_all("traceparent").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request("the traceparent header must come at most once"));
    }
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("the traceparent header must be visible ASCII"))?;
    match TraceParent::parse(text) {
        Ok(traceparent) => Ok(Some(traceparent)),
        Err(Error::InvalidInput(why)) => Err(ApiError::bad_request(format!("the traceparent header is {why}"))),
        Err(other) => Err(other.into()),
    }
}

/// `GET /api/v1/jobs/{executionId}/status`.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/status", operation_id = "getExecutionStatus", tag = "jobs",
    params(("id" = String, Path, description = "The execution id")),
    responses(
        (status = 200, description = "The execution and every task", body = ExecutionView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn status(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ExecutionView>> {
    let id = execution_id(&id)?;
    Ok(Json(ExecutionView::from(app.engine.execution(id).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    /// Only executions in this status.
    #[param(value_type = ExecutionStatus)]
    status: Option<String>,
    /// Only executions of this definition.
    definition_id: Option<String>,
    /// Only executions started by this schedule's ticks.
    schedule_id: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = u32, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The previous page's `nextCursor`.
    #[param(value_type = String, format = Uuid)]
    cursor: Option<String>,
}

/// `GET /api/v1/jobs?status=&definitionId=&scheduleId=&limit=&cursor=`: newest first.
#[utoipa::path(
    get, path = "/api/v1/jobs", operation_id = "listExecutions", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions", body = ExecutionPageView),
        (status = 400, description = "A bad filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(app): State<AppState>, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<Response> {
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
            schedule_id: q.schedule_id,
            limit,
            cursor,
        })
        .await?;
    let view = ExecutionPageView {
        executions: page.executions.iter().map(SummaryView::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(Json(view).into_response())
}

/// `POST /api/v1/jobs/{executionId}/cancel`: 200, or 409 when already finished.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/cancel", operation_id = "cancelExecution", tag = "jobs",
    params(("id" = String, Path, description = "The execution id")),
    responses(
        (status = 200, description = "Cancelled", body = ExecutionAck),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let id = execution_id(&id)?;
    let status = app.engine.cancel(id).await?;
    let ack = ExecutionAck {
        execution_id: id,
        status,
        message: "Job execution cancelled".into(),
        scheduled_for: None,
    };
    Ok(Json(ack).into_response())
}

/// The query of a retry.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RetryQuery {
    /// Re-run this task and every task below it, keeping the outputs above it (on a COMPLETED,
    /// FAILED or CANCELLED execution). Without it: the failed part of a FAILED or CANCELLED one.
    from: Option<String>,
}

/// `POST /api/v1/jobs/{executionId}/retry[?from=<taskId>]`: 202, or 409 unless the execution's
/// status allows it.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/retry", operation_id = "retryExecution", tag = "jobs",
    params(("id" = String, Path, description = "The execution id"), RetryQuery),
    responses(
        (status = 202, description = "The failed part (or the task named by `from` and all below it) is queued again",
            body = ExecutionAck),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such execution, or no task `from` in it", body = ErrorBody),
        (status = 409, description = "Not FAILED or CANCELLED; with `from`, not finished (PENDING or RUNNING)",
            body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn retry(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RetryQuery>,
) -> ApiResult<Response> {
    let id = execution_id(&id)?;
    let (status, message) = match q.from.as_deref() {
        None => (app.engine.retry(id).await?, "Failed tasks re-queued".to_string()),
        Some(task) => (
            app.engine.retry_from(id, task).await?,
            format!("Task `{task}` and the tasks below it re-queued"),
        ),
    };
    let ack = ExecutionAck {
        execution_id: id,
        status,
        message,
        scheduled_for: None,
    };
    Ok((StatusCode::ACCEPTED, Json(ack)).into_response())
}

/// `POST /api/v1/jobs/{executionId}/signals/{name}`: 202; the body (any JSON, empty = `null`)
/// is the payload the waiting task completes with.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/signals/{name}", operation_id = "signalExecution", tag = "jobs",
    params(
        ("id" = String, Path, description = "The execution id"),
        ("name" = String, Path, description = "The signal's name, as a `waitFor` task of the execution names it"),
    ),
    request_body(content = Object, description = "The payload: any JSON (an empty body means null)"),
    responses(
        (status = 202, description = "Taken by a waiting task (`deliveredTo`), or kept for the first task of its \
            name that will wait", body = SignalAck),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "The execution is finished, or keeps too many signals no task took", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "No task of the execution waits for this signal", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn signal(
    State(app): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = execution_id(&id)?;
    let bytes = body::bytes(raw, app.config.max_body_bytes)?;
    let payload = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        body::json(&bytes, StatusCode::BAD_REQUEST, "bad_request")?
    };
    let delivered_to = app.engine.signal(id, &name, payload).await.map_err(|e| match e {
        Error::InvalidInput(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_signal", m),
        other => other.into(),
    })?;
    let ack = SignalAck {
        execution_id: id,
        signal: name,
        delivered_to,
    };
    Ok((StatusCode::ACCEPTED, Json(ack)).into_response())
}
