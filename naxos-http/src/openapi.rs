//! The OpenAPI document, generated from the handlers' annotations and the Rust types, so it
//! cannot drift from the code.

use axum::Json;
use naxos_core::model::{
    BackoffPolicy, CatchUp, DefinitionSummary, EventKind, ExecutionStatus, JobDefinition, NodeInfo, Problem, Retention,
    Schedule, StatusEvent, StoredSchedule, TaskDefinition, TaskStatus, Trigger,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail, ProblemView};
use crate::routes::bulk::{BulkAck, BulkFilter};
use crate::routes::{bulk, definitions, events, jobs, schedules, system};
use crate::views::{
    BackupView, DefinitionCreated, DefinitionView, ExecutionAck, ExecutionPageView, ExecutionView, HealthChecks,
    HealthView, NodeView, ScheduleView, SummaryView, SystemStatusView, TaskView,
};

/// The naxos REST API as an OpenAPI document: `ApiDoc::openapi()`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "naxos",
        description = "Durable DAG job orchestration. Errors are `{\"error\":{\"code\",\"message\"}}`. \
                       When the server has an API token, every `/api/` route needs `Authorization: Bearer <token>`."
    ),
    paths(
        definitions::create, definitions::list, definitions::get, definitions::versions,
        jobs::execute, jobs::status, jobs::list, jobs::cancel, jobs::retry, bulk::cancel, bulk::retry, events::stream,
        schedules::create, schedules::list, schedules::get, schedules::delete, schedules::pause, schedules::resume,
        system::status, system::backup, system::health, crate::metrics::render, document,
    ),
    components(schemas(
        JobDefinition, TaskDefinition, Trigger, BackoffPolicy, Retention, DefinitionSummary, DefinitionView, DefinitionCreated,
        ExecutionStatus, TaskStatus, ExecutionView, SummaryView, TaskView, ExecutionAck, ExecutionPageView,
        StatusEvent, EventKind, SystemStatusView, NodeView, NodeInfo, HealthView, HealthChecks, BackupView,
        ErrorBody, ErrorDetail, ProblemView, Problem, BulkFilter, BulkAck, Schedule, StoredSchedule, CatchUp,
        ScheduleView,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "definitions", description = "Job definitions and their versions"),
        (name = "jobs", description = "Executions: run, watch, cancel, retry"),
        (name = "schedules", description = "Cron schedules: each tick starts one execution, however many nodes run"),
        (name = "system", description = "Status, health, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This document", body = Object))
)]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
