//! # naxos-http
//!
//! The REST API of naxos, compatible with the original naxos's routes and field names:
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /api/v1/job-definitions` | 201 `{id, version, created, message}` (200 when identical); 422 listing every problem |
//! | `GET /api/v1/job-definitions[/{id}[?version=N]]` | the latest version of each / one version; 404 |
//! | `GET /api/v1/job-definitions/{id}/versions` | every version of one definition |
//! | `POST /api/v1/job-definitions/{id}/pause` · `/resume` | 200 `{id, paused}`: its executions start no new task until resumed; 404 |
//! | `POST /api/v1/jobs/{definitionId}/execute` | body = params; `Idempotency-Key` dedups; 202 `{executionId, status, message}` |
//! | `POST /api/v1/jobs/{definitionId}/execute-batch` | body = a JSON array of 1 to 1,000 params; `Idempotency-Key` keys item i as `<key>/<i>`; 202 `{executionIds, created, message}` |
//! | `GET /api/v1/jobs/{executionId}/status` | the execution with every task's status, attempts, error, output, times |
//! | `GET /api/v1/jobs?status=&definitionId=&scheduleId=&limit=&cursor=` | a page of executions, newest first, and `nextCursor` |
//! | `POST /api/v1/schedules` · `GET /api/v1/schedules[/{id}]` · `DELETE /api/v1/schedules/{id}` | cron schedules: create (201; 200 when it exists), list, get, delete |
//! | `POST /api/v1/schedules/{id}/pause` · `/resume` | stop or restart a schedule's ticks |
//! | `POST /api/v1/jobs/{executionId}/cancel` · `/retry` | cancel; re-run the failed part (409 when the state forbids it) |
//! | `GET /api/v1/jobs/{executionId}/events` | server-sent events: a snapshot, then live status changes until the execution finishes |
//! | `GET /api/v1/system/status` | counts, active executions, nodes |
//! | `GET /health` | pings the Store and the Queue: 200, or 503 naming what is down |
//! | `GET /metrics` | Prometheus text format (with [`HttpConfig::metrics`]) |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 document of all of the above, generated from the Rust types ([`ApiDoc`]) |
//! | `GET /` | the dashboard: executions with status filters, each execution's DAG updating live, definitions (execute, pause, resume), nodes |
//!
//! Errors are `{"error":{"code","message"}}` (plus `problems` for an invalid definition) with
//! 400 for malformed JSON or params, 401 without the API token (when one is configured), 404,
//! 405, 409, 413 over the body limit, 422 and 503; a 500 carries no internal detail and is logged.
//!
//! [`router`] builds the service (test it in-process with `tower::ServiceExt::oneshot`);
//! [`serve`] runs it on a listener until a shutdown future resolves.
//!
//! The OpenAPI document is for client generators: every operation has an `operationId`
//! (`executeJob`, `getExecutionStatus`, `cancelExecution`, …); the answer of execute links
//! (OpenAPI `links`, `$response.body#/executionId`) to status, cancel, retry and events, as
//! status, cancel and retry link to each other and the creation of a definition or a schedule
//! to the operations on it; and the definition schemas carry the rules validation applies, with
//! this engine's limits and registered functions ([`ApiDoc::served`]).
//!
//! # Embedding naxos in your axum service
//!
//! The router is an ordinary axum [`Router`]: mount it under a prefix of your app, behind your
//! own auth, next to your own routes. This crate re-exports its [`axum`], so your app and naxos
//! agree on the version (through the facade: `naxos::http::axum`).
//!
//! ```no_run
//! use naxos_core::Engine;
//! use naxos_http::axum::extract::Request;
//! use naxos_http::axum::http::StatusCode;
//! use naxos_http::axum::middleware::{self, Next};
//! use naxos_http::axum::response::{IntoResponse, Response};
//! use naxos_http::axum::routing::get;
//! use naxos_http::axum::Router;
//! use naxos_http::HttpConfig;
//!
//! /// Your own auth: here a header your gateway sets; a session or a JWT check works the same.
//! async fn staff_only(request: Request, next: Next) -> Response {
//!     match request.headers().get("x-staff-user") {
//!         Some(_) => next.run(request).await,
//!         None => StatusCode::FORBIDDEN.into_response(),
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let engine = Engine::in_memory();
//!     engine.register("send-invoice", |_ctx| async { Ok(serde_json::json!({"sent": true})) });
//!     engine.start()?;
//!
//!     let app = Router::new()
//!         .route("/", get(|| async { "the service's own page" }))
//!         // The dashboard at /naxos (and /naxos/), the API at /naxos/api/v1/…
//!         .nest_service("/naxos", naxos_http::router(engine.clone(), HttpConfig::default()))
//!         .layer(middleware::from_fn(staff_only));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     // Serves the whole app; on Ctrl-C the engine stops taking work and hands back what
//!     // it runs, together with the server finishing its requests.
//!     let shutdown = async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     };
//!     naxos_http::serve(listener, app, engine, shutdown).await?;
//!     Ok(())
//! }
//! ```
//!
//! - **Mounting.** `nest_service("/naxos", …)` answers `/naxos`, `/naxos/` and everything
//!   below, in a host `Router` of any state type. `Router::nest("/naxos", …)` works too (in a
//!   `Router<()>`), except that axum then leaves `/naxos/`, with the slash, to your app's
//!   fallback.
//! - **Under the prefix.** The dashboard is written out with the prefix it was requested under
//!   (from axum's `OriginalUri`), so its API calls and its live event stream go to
//!   `/naxos/api/v1/…`; the OpenAPI document's `servers` is `[{"url": "/naxos"}]`. A prefix
//!   with captures works the same with `nest_service("/{tenant}/naxos", …)` (axum refuses to
//!   `nest` a router that has its own fallback there). A reverse proxy in front that strips or
//!   rewrites the path must hand your app the path the browser used: naxos reads no
//!   `X-Forwarded-Prefix`.
//! - **Auth.** A layer of your app (as above) runs before every naxos route. Put it on the
//!   naxos router alone (`naxos_http::router(…).layer(…)` before nesting) to leave your own
//!   routes out. [`HttpConfig::api_token`] adds naxos's own bearer token on top for `/api/`
//!   (the dashboard asks for it); `/health` and `/metrics` are under your layer too, so
//!   probes and scrapers must pass it, or get them from a [`health_router`] mounted elsewhere.
//! - **Shutdown.** [`serve`] runs your whole app and stops the engine with it. With your own
//!   `axum::serve`, call [`Engine::shutdown`] when it returns.

mod auth;
mod body;
mod dashboard;
mod error;
mod extract;
mod metrics;
mod mount;
mod openapi;
mod routes;
pub mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use naxos_core::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// The axum this crate is built on, for mounting [`router`] in a host's app with the same
/// version: `naxos::http::axum::Router`.
pub use axum;
pub use error::{ApiError, ApiResult, ErrorBody, ErrorDetail, ProblemView};
pub use metrics::install_prometheus;
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use openapi::ApiDoc;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones get 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// A node that has not reported for this long is shown as not alive. Default 15 s.
    pub node_timeout: Duration,
    /// When set, every `/api/` route needs `Authorization: Bearer <token>` (401 otherwise);
    /// `/health` and `/metrics` stay open. Default none.
    pub api_token: Option<String>,
    /// The Prometheus recorder's handle, from [`install_prometheus`]; `/metrics` answers 404
    /// without it. Default none.
    pub metrics: Option<PrometheusHandle>,
    /// Where `POST /api/v1/system/backup` writes its copies of the Store, one subdirectory
    /// each; the route answers 404 without it. Default none.
    pub backup_dir: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            node_timeout: Duration::from_secs(15),
            api_token: None,
            metrics: None,
            backup_dir: None,
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    engine: Engine,
    config: Arc<HttpConfig>,
}

/// The whole API as a service for `engine`.
pub fn router(engine: Engine, config: HttpConfig) -> Router {
    use routes::{bulk, definitions, jobs, schedules, system};
    let limit = config.max_body_bytes;
    let state = AppState {
        engine,
        config: Arc::new(config),
    };
    Router::new()
        .route(
            "/api/v1/job-definitions",
            post(definitions::create).get(definitions::list),
        )
        .route("/api/v1/job-definitions/{id}", get(definitions::get))
        .route("/api/v1/job-definitions/{id}/versions", get(definitions::versions))
        .route("/api/v1/job-definitions/{id}/pause", post(definitions::pause))
        .route("/api/v1/job-definitions/{id}/resume", post(definitions::resume))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/cancel", post(bulk::cancel))
        .route("/api/v1/jobs/retry", post(bulk::retry))
        .route("/api/v1/jobs/{id}/execute", post(jobs::execute))
        .route("/api/v1/jobs/{id}/execute-batch", post(routes::batch::execute))
        .route("/api/v1/jobs/{id}/status", get(jobs::status))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/api/v1/jobs/{id}/events", get(routes::events::stream))
        .route("/api/v1/jobs/{id}/signals/{name}", post(jobs::signal))
        .route("/api/v1/schedules", post(schedules::create).get(schedules::list))
        .route("/api/v1/schedules/{id}", get(schedules::get).delete(schedules::delete))
        .route("/api/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{id}/resume", post(schedules::resume))
        .route("/api/v1/system/status", get(system::status))
        .route("/api/v1/system/backup", post(system::backup))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/", get(dashboard::page))
        .route("/health", get(system::health))
        .route("/metrics", get(metrics::render))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("a handler panicked"))
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Only `/health` and `/metrics`, for nodes that run workers and no API.
pub fn health_router(engine: Engine, metrics: Option<PrometheusHandle>) -> Router {
    let state = AppState {
        engine,
        config: Arc::new(HttpConfig {
            metrics,
            ..HttpConfig::default()
        }),
    };
    Router::new()
        .route("/health", get(routes::system::health))
        .route("/metrics", get(metrics::render))
        .fallback(routes::not_found)
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves. Then, at once and together,
/// `engine` stops taking work — which ends its event streams, so SSE clients get a final
/// snapshot and their connections close — and the server finishes the requests in flight.
/// Returns when both are done.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move { stopped.notified().await });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    stop.notify_one();
    let (served, ()) = tokio::join!(server, engine.shutdown());
    served
}
