//! `GET /metrics` (Prometheus text format) and the HTTP request metrics.
//!
//! The engine records through the `metrics` facade; [`install_prometheus`] installs the
//! process-wide Prometheus recorder and returns the handle to pass in
//! [`HttpConfig::metrics`](crate::HttpConfig::metrics). Besides the engine's series (see
//! `naxos_core::engine`), this layer adds `naxos_http_requests_total{method, route, status}`,
//! `naxos_http_request_duration_seconds{method, route}`, and, read from the Store at each
//! scrape, `naxos_queue_depth` (tasks QUEUED), `naxos_tasks_in_flight` (tasks RUNNING on any
//! node), `naxos_executions{status}` and, where the Queue keeps dead letters,
//! `naxos_dead_letters`.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

/// Histogram buckets (seconds): 0.5 ms to 60 s.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often the recorder's histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for this process (once) and returns its handle.
///
/// A thread (`naxos-metrics-upkeep`) runs the recorder's upkeep every 5 s: until then, every
/// histogram sample is kept one by one (≈ 0.21 KiB per execution on a node nobody scrapes).
/// A scrape runs it too.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new().set_buckets(&BUCKETS)?.install_recorder()?;
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("naxos-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histogram samples are folded only at each scrape");
    }
    Ok(handle)
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", operation_id = "getMetrics", tag = "system",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 404, description = "No metrics recorder configured", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn render(State(app): State<AppState>) -> ApiResult<Response> {
    let Some(handle) = app.config.metrics.as_ref() else {
        return Err(ApiError::not_found(
            "metrics are not enabled: pass naxos_http::install_prometheus()'s handle in HttpConfig::metrics",
        ));
    };
    let (counts, dead_letters) = tokio::join!(app.engine.counts(), app.engine.queue().dead_letters());
    let counts = counts?;
    if let Ok(Some(n)) = dead_letters {
        metrics::gauge!("naxos_dead_letters").set(n as f64);
    }
    metrics::gauge!("naxos_queue_depth").set(counts.queued_tasks as f64);
    metrics::gauge!("naxos_tasks_in_flight").set(counts.running_tasks as f64);
    for status in naxos_core::ExecutionStatus::ALL {
        let n = counts.executions.get(&status).copied().unwrap_or(0);
        metrics::gauge!("naxos_executions", "status" => status.as_str()).set(n as f64);
    }
    handle.run_upkeep();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// Counts and times every request by method, matched route and status.
pub(crate) async fn track(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "naxos_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!("naxos_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
