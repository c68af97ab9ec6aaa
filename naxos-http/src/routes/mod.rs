//! The routes, by resource.

pub(crate) mod batch;
pub(crate) mod bulk;
pub(crate) mod definitions;
pub(crate) mod events;
pub(crate) mod jobs;
pub(crate) mod schedules;
pub(crate) mod system;

use axum::http::{Method, Uri};

use naxos_core::{Error, ExecutionId};

use crate::error::{ApiError, ApiResult};

/// An execution id from the path; one that is not a UUID names no execution (404).
pub(crate) fn execution_id(raw: &str) -> ApiResult<ExecutionId> {
    raw.parse::<ExecutionId>()
        .map_err(|_| Error::not_found("execution", raw).into())
}

/// No route matches the path.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// The path exists, the method does not.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
