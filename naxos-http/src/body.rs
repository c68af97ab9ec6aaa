//! Reading request bodies: size limit, JSON syntax versus shape, empty bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// The body's bytes, or 413 when it is over the limit.
pub(crate) fn bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is over the limit of {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// Parses JSON into `T`: a syntax error is 400 `malformed_json`; JSON of the wrong shape
/// (unknown field, wrong type) is `shape_status` with `shape_code`, naming the field.
pub(crate) fn json<T: DeserializeOwned>(
    bytes: &[u8],
    shape_status: StatusCode,
    shape_code: &'static str,
) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed_json(format!("the body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::new(shape_status, shape_code, inner.to_string())
        } else {
            ApiError::new(shape_status, shape_code, format!("at `{path}`: {inner}"))
        }
    })
}

/// Execution params: an empty body means `{}`; anything else must be a JSON object.
pub(crate) fn params(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = json(bytes, StatusCode::BAD_REQUEST, "bad_request")?;
    if !value.is_object() {
        return Err(ApiError::bad_request("params must be a JSON object"));
    }
    Ok(value)
}
