//! `/api/v1/schedules`: cron schedules (DESIGN §8).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::model::{Schedule, StoredSchedule};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiPath;
use crate::views::ScheduleView;
use crate::{body, AppState};

fn view(app: &AppState, schedule: StoredSchedule) -> ScheduleView {
    ScheduleView::at(schedule, app.engine.config().clock.now())
}

/// `POST /api/v1/schedules`: 201 when new, 200 when it exists (identical: unchanged, its
/// paused state kept; otherwise replaced, its ticks starting from now).
#[utoipa::path(
    post, path = "/api/v1/schedules", operation_id = "createSchedule", tag = "schedules",
    request_body(content = Schedule, description = "`cron` has 5 fields, or 6 with seconds first; `timezone` \
        defaults to UTC; `catchUp` (`skip`, `one`, `all`) to `skip`; `params` to `{}`"),
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 200, description = "It existed: unchanged when identical, else replaced", body = ScheduleView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "`invalid_schedule`: the message names the bad field (a bad cron, an unknown \
            timezone, an unknown definitionId, …)", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create(State(app): State<AppState>, raw: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let bytes = body::bytes(raw, app.config.max_body_bytes)?;
    let schedule: Schedule = body::json(&bytes, StatusCode::UNPROCESSABLE_ENTITY, "invalid_schedule")?;
    let put = app.engine.schedule(schedule).await?;
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&app, put.schedule))).into_response())
}

/// `GET /api/v1/schedules`: every schedule, by id, with its next tick.
#[utoipa::path(
    get, path = "/api/v1/schedules", operation_id = "listSchedules", tag = "schedules",
    responses(
        (status = 200, description = "Every schedule, by id", body = Vec<ScheduleView>),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(app): State<AppState>) -> ApiResult<Json<Vec<ScheduleView>>> {
    let schedules = app.engine.schedules().await?;
    Ok(Json(schedules.into_iter().map(|s| view(&app, s)).collect()))
}

/// `GET /api/v1/schedules/{id}`.
#[utoipa::path(
    get, path = "/api/v1/schedules/{id}", operation_id = "getSchedule", tag = "schedules",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn get(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<ScheduleView>> {
    let schedule = app.engine.get_schedule(&id).await?;
    Ok(Json(view(&app, schedule)))
}

/// `DELETE /api/v1/schedules/{id}`: 204; the executions it started stay.
#[utoipa::path(
    delete, path = "/api/v1/schedules/{id}", operation_id = "deleteSchedule", tag = "schedules",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 204, description = "Deleted: no tick of it fires any more"),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn delete(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    app.engine.delete_schedule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/schedules/{id}/pause`: no tick fires until resumed; the ticks that pass
/// meanwhile are never caught up.
#[utoipa::path(
    post, path = "/api/v1/schedules/{id}/pause", operation_id = "pauseSchedule", tag = "schedules",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 200, description = "Paused (or already so)", body = ScheduleView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn pause(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<ScheduleView>> {
    let schedule = app.engine.pause_schedule(&id).await?;
    Ok(Json(view(&app, schedule)))
}

/// `POST /api/v1/schedules/{id}/resume`: its next tick after now fires.
#[utoipa::path(
    post, path = "/api/v1/schedules/{id}/resume", operation_id = "resumeSchedule", tag = "schedules",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 200, description = "Resumed (or already running)", body = ScheduleView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn resume(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<ScheduleView>> {
    let schedule = app.engine.resume_schedule(&id).await?;
    Ok(Json(view(&app, schedule)))
}
