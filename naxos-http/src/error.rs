//! The one place where errors become HTTP responses: `{"error":{"code","message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use naxos_core::model::Problem;
use naxos_core::Error;
use serde::Serialize;

/// An error answer: a status, a stable machine-readable `code`, a message for people, and for
/// invalid definitions every problem found.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code, e.g. `not_found`, `invalid_definition`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Every validation problem, for `invalid_definition`.
    pub problems: Vec<ProblemView>,
    /// When to try again, sent as `Retry-After` (whole seconds, at least 1): every 503 error
    /// answer carries one (1 s unless the error says otherwise).
    pub retry_after: Option<std::time::Duration>,
}

/// One validation problem on the wire: its code and fields, plus a readable message.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProblemView {
    /// The problem's fields (`code`, task ids, …).
    #[serde(flatten)]
    pub problem: Problem,
    /// The problem, in words.
    pub message: String,
}

/// Every error answer: `{"error": {"code", "message", "problems"?}}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `malformed_json`, `unauthorized`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `invalid_definition`, `invalid_schedule`, `unavailable`,
    /// `overloaded`, `shutting_down`, `newer_version`, `timeout`, `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Every validation problem, for `invalid_definition`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemView>,
}

impl ApiError {
    /// An error with no problem list.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
            retry_after: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `malformed_json`.
    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`, logged with the detail that is kept out of the answer.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => Self::not_found(e.to_string()),
            Error::Conflict(m) | Error::Deferred { message: m, .. } => Self::new(StatusCode::CONFLICT, "conflict", m),
            Error::InvalidDefinition { ref problems, .. } => {
                let problems = problems
                    .iter()
                    .map(|p| ProblemView {
                        problem: p.clone(),
                        message: p.to_string(),
                    })
                    .collect();
                Self {
                    problems,
                    ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition", e.to_string())
                }
            }
            Error::InvalidSchedule { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_schedule", e.to_string())
            }
            Error::InvalidInput(m) => Self::bad_request(m),
            Error::NotSupported { .. } => Self::new(StatusCode::NOT_IMPLEMENTED, "not_supported", e.to_string()),
            Error::ShuttingDown => Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string()),
            Error::Timeout(m) => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", m),
            Error::Overloaded { message, retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
            },
            // This node is older than the data it met: another (upgraded) node can answer, so
            // a retry may succeed, and the message says what to do. It names no internals.
            Error::NewerVersion { .. } => {
                tracing::warn!(error = %e, "refused data written by a newer naxos");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "newer_version", e.to_string())
            }
            e if e.is_transient() => {
                tracing::warn!(error = %e, "backend unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backend is unavailable; try again shortly",
                )
            }
            e => Self::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                problems: self.problems,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = self.retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_of_a_newer_naxos_is_a_503_that_says_so() {
        let e = Error::newer_version("job definition `d` version 3", "format 2", "format 1");
        let api = ApiError::from(e);
        assert_eq!(
            (api.status, api.code),
            (StatusCode::SERVICE_UNAVAILABLE, "newer_version")
        );
        assert_eq!(
            api.message,
            "job definition `d` version 3 is newer than this naxos: it has format 2, and this naxos knows up to \
             format 1; upgrade this node"
        );
        let response = api.into_response();
        assert!(response.headers().contains_key(axum::http::header::RETRY_AFTER));
    }
}
