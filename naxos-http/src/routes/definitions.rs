//! `/api/v1/job-definitions`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::JobDefinition;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::views::{DefinitionListView, DefinitionView};
use crate::{body, AppState};

/// `POST /api/v1/job-definitions`: 201 with the new version, 200 when identical to the latest.
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
    Ok((
        status,
        Json(json!({ "id": d.id(), "version": d.version, "created": put.created, "message": message })),
    )
        .into_response())
}

/// `GET /api/v1/job-definitions`: the latest version of each, by id.
pub(crate) async fn list(State(app): State<AppState>) -> ApiResult<Json<DefinitionListView>> {
    Ok(Json(app.engine.definitions().await?))
}

#[derive(Deserialize)]
pub(crate) struct VersionQuery {
    version: Option<String>,
}

/// `GET /api/v1/job-definitions/{id}[?version=N]`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Response> {
    let version = q.version.as_deref().map(parse_version).transpose()?;
    let d = app.engine.definition(&id, version).await?;
    Ok(Json(DefinitionView::from(&*d)).into_response())
}

/// `GET /api/v1/job-definitions/{id}/versions`: every version, oldest first.
pub(crate) async fn versions(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let versions = app.engine.store().definition_versions(&id).await?;
    if versions.is_empty() {
        return Err(naxos_core::Error::not_found("job definition", id).into());
    }
    let views: Vec<DefinitionView<'_>> = versions.iter().map(|d| DefinitionView::from(&**d)).collect();
    Ok(Json(views).into_response())
}

/// A positive version number, or 400 naming the value.
pub(crate) fn parse_version(raw: &str) -> ApiResult<u32> {
    raw.parse::<u32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::bad_request(format!("version `{raw}` is not a positive whole number")))
}
