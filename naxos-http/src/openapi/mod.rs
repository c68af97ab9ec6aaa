//! The OpenAPI document, generated from the handlers' annotations and the Rust types, so it
//! cannot drift from the code; then the rules of a valid definition ([`rules`]), the links
//! between operations ([`links`]) and, as served, `servers` naming where the router is mounted.

mod links;
mod rules;

use links::Links;
use rules::DefaultRules;

use axum::extract::State;
use axum::Json;
use naxos_core::model::{
    BackoffPolicy, BlockedBy, CatchUp, Concurrency, DefinitionSummary, EventKind, ExecutionStatus, JobDefinition,
    NodeInfo, Problem, RateLimit, Schedule, Sleep, StatusEvent, StoredSchedule, SubJob, TaskDefinition, TaskStatus,
    Trigger, WaitFor,
};
use naxos_core::Engine;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail, ProblemView};
use crate::mount::Mount;
use crate::routes::bulk::{BulkAck, BulkFilter};
use crate::routes::{batch, bulk, definitions, events, jobs, schedules, system};
use crate::views::{
    BackupView, BatchAck, DefinitionCreated, DefinitionPaused, DefinitionView, ExecutionAck, ExecutionPageView,
    ExecutionView, HealthChecks, HealthView, InstanceView, NodeView, ScheduleView, SignalAck, SummaryView,
    SystemStatusView, TaskView,
};
use crate::AppState;

/// The naxos REST API as an OpenAPI document: `ApiDoc::openapi()` under the default settings,
/// [`ApiDoc::served`] as a router serves it.
///
/// Every operation has an `operationId`; the answers of execute, status, cancel and retry
/// link (OpenAPI `links`) to the operations that take the execution's id, as do those of
/// creating a definition or a schedule; the schemas of definitions and schedules carry the
/// rules validation applies (id pattern and length, task count, `maxRetry` ceiling, the
/// registered functions), so that a definition valid by the schema is accepted unless it
/// breaks a rule across fields (a task's `id` equals its key, dependencies name tasks, no
/// cycles, `initialMs` ≤ `maxMs`, `when` compiles), which the descriptions state.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "naxos",
        description = "Durable DAG job orchestration. Errors are `{\"error\":{\"code\",\"message\"}}`. \
                       When the server has an API token, every `/api/` route needs `Authorization: Bearer <token>`."
    ),
    servers((url = "/", description = "This API where it is served; a router nested in a host's app serves its prefix here")),
    paths(
        definitions::create, definitions::list, definitions::get, definitions::versions, definitions::pause,
        definitions::resume,
        jobs::execute, batch::execute, jobs::status, jobs::list, jobs::cancel, jobs::retry, jobs::signal, bulk::cancel, bulk::retry, events::stream,
        schedules::create, schedules::list, schedules::get, schedules::delete, schedules::pause, schedules::resume,
        system::status, system::backup, system::health, crate::metrics::render, document,
    ),
    components(schemas(
        JobDefinition, TaskDefinition, Trigger, BackoffPolicy, DefinitionSummary, DefinitionView, DefinitionCreated,
        DefinitionPaused, BlockedBy,
        ExecutionStatus, TaskStatus, ExecutionView, SummaryView, TaskView, InstanceView, ExecutionAck, BatchAck, ExecutionPageView,
        StatusEvent, EventKind, SystemStatusView, NodeView, NodeInfo, HealthView, HealthChecks, BackupView,
        ErrorBody, ErrorDetail, ProblemView, Problem, BulkFilter, BulkAck, Schedule, StoredSchedule, CatchUp,
        ScheduleView, Sleep, WaitFor, SubJob, Concurrency, RateLimit, SignalAck,
    )),
    modifiers(&BearerToken, &Links, &DefaultRules),
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

impl ApiDoc {
    /// The document [`router`](crate::router)`(engine, config)` serves when mounted at
    /// `prefix` (`""` at the root, `/naxos` when nested there): the engine's definition
    /// limits and registered functions and the body limit in the schemas, and `servers`
    /// naming the prefix.
    pub fn served(engine: &Engine, config: &crate::HttpConfig, prefix: &str) -> utoipa::openapi::OpenApi {
        let mut doc = Self::openapi();
        let functions = engine.registry().names();
        rules::Rules {
            limits: engine.config().limits,
            max_body_bytes: config.max_body_bytes,
            functions: &functions,
        }
        .modify(&mut doc);
        let url = if prefix.is_empty() { "/" } else { prefix };
        doc.servers = Some(vec![ServerBuilder::new()
            .url(url)
            .description(Some("This API, where its host's app mounts it"))
            .build()]);
        doc
    }
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", operation_id = "getOpenApiDocument", tag = "system",
    responses((status = 200, description = "This document", body = Object))
)]
pub(crate) async fn document(State(app): State<AppState>, Mount(prefix): Mount) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::served(&app.engine, &app.config, &prefix))
}
