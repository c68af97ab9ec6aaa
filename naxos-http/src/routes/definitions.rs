//! `/api/v1/job-definitions`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::JobDefinition;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::views::{DefinitionCreated, DefinitionListView, DefinitionPaused, DefinitionView};
use crate::{body, AppState};

/// `POST /api/v1/job-definitions`: 201 with the new version, 200 when identical to the latest.
#[utoipa::path(
    post, path = "/api/v1/job-definitions", operation_id = "createDefinition", tag = "definitions",
    request_body(content = JobDefinition, description = "A job definition in the original naxos format"),
    responses(
        (status = 201, description = "A new version", body = DefinitionCreated),
        (status = 200, description = "Identical to the latest version: nothing changed", body = DefinitionCreated),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "The definition does not validate; every problem listed", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create(State(app): State<AppState>, raw: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let bytes = body::bytes(raw, app.config.max_body_bytes)?;
    let definition: JobDefinition = body::json(&bytes, StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition")?;
    let put = app.engine.register_definition(definition).await?;
    let (status, message) = if put.created {
        (StatusCode::CREATED, "Job definition registered")
    } else {
        (StatusCode::OK, "Job definition unchanged")
    };
    let d = &put.definition;
    let answer = DefinitionCreated {
        id: d.id().to_string(),
        version: d.version,
        created: put.created,
        message: message.to_string(),
    };
    Ok((status, Json(answer)).into_response())
}

/// `GET /api/v1/job-definitions`: the latest version of each, by id.
#[utoipa::path(
    get, path = "/api/v1/job-definitions", operation_id = "listDefinitions", tag = "definitions",
    responses(
        (status = 200, description = "The latest version of every definition", body = Vec<naxos_core::model::DefinitionSummary>),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(app): State<AppState>) -> ApiResult<Json<DefinitionListView>> {
    Ok(Json(app.engine.definitions().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// A version (1 or more); the latest when absent.
    #[param(value_type = u32, minimum = 1)]
    version: Option<String>,
}

/// `GET /api/v1/job-definitions/{id}[?version=N]`.
#[utoipa::path(
    get, path = "/api/v1/job-definitions/{id}", operation_id = "getDefinition", tag = "definitions",
    params(("id" = String, Path, description = "The definition id"), VersionQuery),
    responses(
        (status = 200, description = "One version", body = DefinitionView),
        (status = 400, description = "A bad version number", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such definition or version", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<Response> {
    let version = q.version.as_deref().map(parse_version).transpose()?;
    let d = app.engine.definition(&id, version).await?;
    Ok(Json(DefinitionView::from(&*d)).into_response())
}

/// `GET /api/v1/job-definitions/{id}/versions`: every version, oldest first.
#[utoipa::path(
    get, path = "/api/v1/job-definitions/{id}/versions", operation_id = "listDefinitionVersions", tag = "definitions",
    params(("id" = String, Path, description = "The definition id")),
    responses(
        (status = 200, description = "Every version, oldest first", body = Vec<DefinitionView>),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such definition", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn versions(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let versions = app.engine.definition_versions(&id).await?;
    if versions.is_empty() {
        return Err(naxos_core::Error::not_found("job definition", id).into());
    }
    let views: Vec<DefinitionView> = versions.iter().map(|d| DefinitionView::from(&**d)).collect();
    Ok(Json(views).into_response())
}

/// `POST /api/v1/job-definitions/{id}/pause`: its executions, new and running, start no new
/// task until resumed (a task asked for meanwhile waits QUEUED, `blockedBy: paused`); the
/// tasks running now finish.
#[utoipa::path(
    post, path = "/api/v1/job-definitions/{id}/pause", operation_id = "pauseDefinition", tag = "definitions",
    params(("id" = String, Path, description = "The definition id (every version is paused)")),
    responses(
        (status = 200, description = "Paused (or already so)", body = DefinitionPaused),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such definition", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DefinitionPaused>> {
    app.engine.pause_definition(&id).await?;
    Ok(Json(DefinitionPaused { id, paused: true }))
}

/// `POST /api/v1/job-definitions/{id}/resume`: the tasks its pause blocked are queued again,
/// in order, and its executions go on.
#[utoipa::path(
    post, path = "/api/v1/job-definitions/{id}/resume", operation_id = "resumeDefinition", tag = "definitions",
    params(("id" = String, Path, description = "The definition id")),
    responses(
        (status = 200, description = "Resumed (or not paused): the tasks its pause blocked are queued again", body = DefinitionPaused),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such definition", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DefinitionPaused>> {
    app.engine.resume_definition(&id).await?;
    Ok(Json(DefinitionPaused { id, paused: false }))
}

/// A positive version number, or 400 naming the value.
pub(crate) fn parse_version(raw: &str) -> ApiResult<u32> {
    raw.parse::<u32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::bad_request(format!("version `{raw}` is not a positive whole number")))
}
