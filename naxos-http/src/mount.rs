//! Where the router is mounted in a host's app: the path prefix the dashboard and the OpenAPI
//! document put before `/api/v1/…`.
//!
//! A host that nests the router (`Router::nest("/naxos", …)` or `nest_service`) hands it
//! requests with the prefix stripped from the URI; axum keeps the URI as it arrived in
//! [`OriginalUri`]. The prefix is what the original path has before the path the router saw,
//! so it is right for a prefix with captures (`/{tenant}/naxos`) and for nesting at any depth,
//! where [`NestedPath`](axum::extract::NestedPath) would give the route's pattern.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;

/// The prefix the router is mounted at: `""` at the root, else `/naxos`-like (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Mount {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let inner = parts.uri.path();
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(inner, |original| original.0.path());
        Ok(Self(prefix(original, inner).to_string()))
    }
}

/// The part of `original` before `inner`, without a trailing `/`. The router's root (`inner`
/// `/`) answers both `/naxos` and `/naxos/`. A path rewritten by the host in some other way
/// gives no prefix.
fn prefix<'a>(original: &'a str, inner: &str) -> &'a str {
    let before = match original.strip_suffix(inner) {
        Some(before) => before,
        None if inner == "/" => original,
        None => "",
    };
    before.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn the_prefix_is_what_comes_before_the_routers_own_path() {
        let cases = [
            ("/", "/", ""),
            ("/api/v1/openapi.json", "/api/v1/openapi.json", ""),
            ("/naxos", "/", "/naxos"),
            ("/naxos/", "/", "/naxos"),
            ("/naxos/api/v1/openapi.json", "/api/v1/openapi.json", "/naxos"),
            (
                "/acme/ops/naxos/api/v1/openapi.json",
                "/api/v1/openapi.json",
                "/acme/ops/naxos",
            ),
            ("/rewritten/elsewhere", "/api/v1/openapi.json", ""),
        ];
        for (original, inner, expected) in cases {
            assert_eq!(prefix(original, inner), expected, "{original} seen as {inner}");
        }
    }
}
