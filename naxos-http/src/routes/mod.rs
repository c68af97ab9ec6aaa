//! The routes, by resource.

pub(crate) mod definitions;
pub(crate) mod jobs;
pub(crate) mod system;

use axum::http::{Method, Uri};

use crate::error::ApiError;

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
