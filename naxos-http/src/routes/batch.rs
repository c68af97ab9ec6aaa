//! `POST /api/v1/jobs/{definitionId}/execute-batch`: many executions of one definition at once.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::{ExecuteRequest, MAX_BATCH};
use serde_json::Value;

use super::definitions::parse_version;
use super::jobs::{idempotency_key, traceparent, ExecuteQuery};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::views::BatchAck;
use crate::{body, AppState};

/// `POST /api/v1/jobs/{definitionId}/execute-batch[?version=&delayMs=|runAt=&priority=]`: the
/// body is a JSON array of 1 to 1,000 params (each a JSON object; `null` means `{}`), and the
/// query applies to every item as `execute`'s does to one. The executions are created together
/// (on PostgreSQL and LMDB all or none) and their first tasks published together. 202 with the
/// ids in the order of the params; 200 when every item's key matched an earlier execution.
///
/// An `Idempotency-Key` header keys the batch: item `i` is deduplicated as `<key>/<i>`, so a
/// batch repeated with the same key creates nothing twice (and one cut off part-way creates the
/// rest). A bad item fails the whole batch with a 400 naming its index; nothing is created then.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/execute-batch", operation_id = "executeJobBatch", tag = "jobs",
    params(
        ("id" = String, Path, description = "The definition to run"),
        ExecuteQuery,
        ("Idempotency-Key" = Option<String>, Header,
            description = "Keys the batch: item i is deduplicated as `<key>/<i>` (at most 256 bytes with the suffix)"),
        ("traceparent" = Option<String>, Header,
            description = "The caller's W3C trace context, stored with every execution of the batch (see executeJob)",
            pattern = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"),
    ),
    request_body(content = Vec<Object>, description = "The params of each execution: a JSON array of 1 to 1,000 \
        JSON objects (`null` means {})"),
    responses(
        (status = 202, description = "Created (some may be earlier executions their keys matched)", body = BatchAck),
        (status = 200, description = "Every item's key matched an earlier execution", body = BatchAck),
        (status = 400, description = "A body that is not a JSON array of 1 to 1,000 items, an item that is not a JSON \
            object (the message names its index: `item 3: …`), or a query or header that `executeJob` refuses", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such definition or version", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 503, description = "A backend is unavailable, or the batch would put more executions waiting to \
            start than the server accepts (`overloaded`; the batch is refused whole); try again after `Retry-After` seconds",
            body = ErrorBody,
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
    let shape = || format!("the body must be a JSON array of 1 to {MAX_BATCH} params objects");
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!("{}; it is empty", shape())));
    }
    let items: Vec<Value> = body::json(&bytes, StatusCode::BAD_REQUEST, "bad_request").map_err(|mut e| {
        e.message = format!("{}: {}", shape(), e.message);
        e
    })?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!("{}, not {}", shape(), items.len())));
    }
    let version = q.version.as_deref().map(parse_version).transpose()?;
    let (delay, priority) = (q.delay()?, q.priority()?);
    let (key, traceparent) = (idempotency_key(&headers)?, traceparent(&headers)?);
    let requests = items
        .into_iter()
        .enumerate()
        .map(|(i, params)| ExecuteRequest {
            version,
            idempotency_key: key.as_ref().map(|k| format!("{k}/{i}")),
            traceparent,
            delay,
            priority,
            ..ExecuteRequest::new(definition_id.clone(), params)
        })
        .collect();
    let submitted = app.engine.submit_many(requests).await?;
    let started = if delay.is_some() { "scheduled" } else { "started" };
    let created = submitted.iter().filter(|s| s.created).count();
    let earlier = submitted.len() - created;
    let (status, message) = match (created, earlier) {
        (0, _) => (
            StatusCode::OK,
            "Every job execution already exists for its Idempotency-Key".to_string(),
        ),
        (n, 0) => (StatusCode::ACCEPTED, format!("{n} job executions {started}")),
        (n, e) => (
            StatusCode::ACCEPTED,
            format!("{n} job executions {started}; {e} already existed for their Idempotency-Key"),
        ),
    };
    let ack = BatchAck {
        execution_ids: submitted.iter().map(|s| s.execution_id).collect(),
        created,
        message,
    };
    Ok((status, Json(ack)).into_response())
}
