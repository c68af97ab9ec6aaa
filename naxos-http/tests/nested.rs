//! The router inside a host's axum app, under `/naxos`, behind the host's own auth layer,
//! served on loopback: the dashboard at `/naxos` and `/naxos/` with its API base, the API,
//! the event stream and the OpenAPI document's `servers`, all under the prefix.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use naxos_core::serde_json::{json, Value};
use naxos_core::Engine;
use naxos_http::{router, HttpConfig};

const DEADLINE: Duration = Duration::from_secs(20);

/// The host's header that its own auth layer wants.
const HOST_AUTH: (&str, &str) = ("x-host-user", "ops");

const DIAMOND: &str = r#"{"id":"nested","tasks":{
    "a":{"id":"a","functionName":"step"},"b":{"id":"b","functionName":"step"},
    "c":{"id":"c","functionName":"step"},"d":{"id":"d","functionName":"step"}},
    "graph":{"b":["a"],"c":["a"],"d":["b","c"]}}"#;

/// The host's own auth: a header it checks on every request, naxos's routes included.
async fn host_auth(request: Request, next: Next) -> Response {
    if request.headers().get(HOST_AUTH.0).is_some_and(|v| v == HOST_AUTH.1) {
        next.run(request).await
    } else {
        (StatusCode::FORBIDDEN, "the host says no").into_response()
    }
}

/// How the host mounts naxos.
#[derive(Clone, Copy, Debug)]
enum Mounting {
    /// `Router::nest("/naxos", …)`.
    Nest,
    /// `Router::nest_service("/naxos", …)`.
    NestService,
}

/// A host app on a loopback port, with naxos mounted at `/naxos`.
struct Host {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Host {
    async fn start(mounting: Mounting, config: HttpConfig) -> Self {
        let engine = Engine::in_memory();
        engine.register("step", |ctx| async move { Ok(json!(ctx.task_id())) });
        engine.start().unwrap();
        let naxos = router(engine.clone(), config);
        let host = Router::new().route("/", get(|| async { "the host's own page" }));
        let host = match mounting {
            Mounting::Nest => host.nest("/naxos", naxos),
            Mounting::NestService => host.nest_service("/naxos", naxos),
        };
        let host = host.layer(middleware::from_fn(host_auth));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = tokio::spawn(naxos_http::serve(listener, host, engine.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            base,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// One request with the host's header and `headers`; the status, headers and body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (name, value) in [HOST_AUTH].iter().chain(headers) {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let response = tokio::time::timeout(DEADLINE, client.request(request))
            .await
            .expect("an answer within the deadline")
            .expect("the request went through");
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = tokio::time::timeout(DEADLINE, response.into_body().collect())
            .await
            .expect("the whole body within the deadline")
            .unwrap()
            .to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, String) {
        self.call("GET", path, "", &[]).await
    }

    async fn json(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, _, text) = self.call(method, path, body, &[]).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, value)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        tokio::time::timeout(DEADLINE, served)
            .await
            .expect("the host stops within the deadline")
            .unwrap()
            .unwrap();
    }
}

/// The API base the served page uses: its `naxos-base` meta tag.
fn page_base(html: &str) -> &str {
    let tag = r#"<meta name="naxos-base" content=""#;
    let start = html.find(tag).expect("the page has a naxos-base tag") + tag.len();
    &html[start..start + html[start..].find('"').unwrap()]
}

/// The fixed API paths the page's script loads through `api(…)` (those without a `${…}`).
fn fixed_api_paths(html: &str) -> Vec<String> {
    let calls = regex::Regex::new(r#"api\("(/api/v1/[^"$]*)"\)"#).unwrap();
    calls.captures_iter(html).map(|c| c[1].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_answers_at_the_prefix_and_loads_its_data_from_under_it() {
    let fetches = regex::Regex::new(r"fetch\(([^,]+),").unwrap();
    for mounting in [Mounting::Nest, Mounting::NestService] {
        let host = Host::start(mounting, HttpConfig::default()).await;
        let (status, headers, html) = host.get("/naxos").await;
        assert_eq!(status, StatusCode::OK, "{mounting:?}: {html}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        assert_eq!(page_base(&html), "/naxos", "{mounting:?}");

        // Every call of the page's script goes through the base: `fetch` is only ever called
        // on `BASE + …`, and the fixed paths it loads answer under the prefix.
        let targets: Vec<&str> = fetches
            .captures_iter(&html)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        assert_eq!(targets.len(), 2, "{targets:?}");
        for target in targets {
            assert!(
                target.starts_with("BASE + ") || target.starts_with("`${BASE}/api/v1/"),
                "{mounting:?}: fetch({target}) is not under the base"
            );
        }
        let paths = fixed_api_paths(&html);
        assert!(paths.contains(&"/api/v1/system/status".to_string()), "{paths:?}");
        for path in paths {
            let (status, _, body) = host.get(&format!("{}{path}", page_base(&html))).await;
            assert_eq!(status, StatusCode::OK, "{mounting:?}: the page's {path}: {body}");
        }

        let (status, _, html) = host.get("/naxos/").await;
        match mounting {
            Mounting::NestService => {
                assert_eq!(status, StatusCode::OK, "{html}");
                assert_eq!(page_base(&html), "/naxos");
            }
            // axum's `Router::nest("/naxos")` leaves `/naxos/` to the host (the guide in the
            // crate docs says so, and mounts with `nest_service` for that reason).
            Mounting::Nest => assert_eq!(status, StatusCode::NOT_FOUND),
        }
        let (status, _, text) = host.get("/").await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "the host's own page"));
        host.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_the_event_stream_and_the_document_work_under_the_prefix() {
    for mounting in [Mounting::Nest, Mounting::NestService] {
        let host = Host::start(mounting, HttpConfig::default()).await;
        let (status, created) = host.json("POST", "/naxos/api/v1/job-definitions", DIAMOND).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let (status, list) = host.json("GET", "/naxos/api/v1/job-definitions", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list[0]["id"], "nested", "{list}");

        let (status, ack) = host.json("POST", "/naxos/api/v1/jobs/nested/execute", "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
        let id = ack["executionId"].as_str().unwrap();
        let (status, headers, stream) = host.get(&format!("/naxos/api/v1/jobs/{id}/events")).await;
        assert_eq!(status, StatusCode::OK, "{stream}");
        assert_eq!(headers["content-type"], "text/event-stream");
        let last = stream
            .split("\n\n")
            .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|data| serde_json::from_str::<Value>(data).unwrap())
            .last()
            .expect("events");
        assert_eq!(
            (last["scope"].as_str(), last["status"].as_str()),
            (Some("execution"), Some("COMPLETED")),
            "the stream ends with the execution's end: {stream}"
        );
        let (status, view) = host.json("GET", &format!("/naxos/api/v1/jobs/{id}/status"), "").await;
        assert_eq!((status, view["status"].as_str()), (StatusCode::OK, Some("COMPLETED")));

        let (status, doc) = host.json("GET", "/naxos/api/v1/openapi.json", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["servers"][0]["url"], "/naxos", "{mounting:?}: {}", doc["servers"]);

        let (status, error) = host.json("GET", "/naxos/api/v1/nothing-here", "").await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "naxos's own fallback answers under its prefix"
        );
        host.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_auth_layer_and_naxoss_token_both_hold_under_the_prefix() {
    let host = Host::start(
        Mounting::NestService,
        HttpConfig {
            api_token: Some("naxos-token-0123456789".into()),
            ..HttpConfig::default()
        },
    )
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    for path in ["/naxos", "/naxos/api/v1/job-definitions", "/naxos/health"] {
        let request = axum::http::Request::get(format!("{}{path}", host.base))
            .body(Body::empty())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{path}: the host's layer comes first"
        );
    }
    let (status, _, _) = host.get("/naxos/api/v1/job-definitions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "naxos's token is still needed");
    let bearer = [("authorization", "Bearer naxos-token-0123456789")];
    let (status, _, body) = host.call("GET", "/naxos/api/v1/job-definitions", "", &bearer).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (status, _, _) = host.get("/naxos/health").await;
    assert_eq!(status, StatusCode::OK, "health stays open to the host's callers");
    host.stop().await;
}

#[tokio::test]
async fn unnested_the_page_and_the_document_name_no_prefix() {
    let engine = Engine::in_memory();
    let app = router(engine.clone(), HttpConfig::default());
    let request = axum::http::Request::get("/").body(Body::empty()).unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(page_base(std::str::from_utf8(&bytes).unwrap()), "");
    let request = axum::http::Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    let doc: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        doc["servers"],
        json!([{"url": "/", "description": "This API, where its host's app mounts it"}])
    );
}

#[tokio::test]
async fn a_prefix_with_a_capture_is_the_path_the_request_had() {
    let engine = Engine::in_memory();
    let app = Router::new().nest_service("/{tenant}/naxos", router(engine, HttpConfig::default()));
    for path in ["/acme/naxos", "/acme/naxos/"] {
        let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
        let response = tower::ServiceExt::oneshot(app.clone(), request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(page_base(std::str::from_utf8(&bytes).unwrap()), "/acme/naxos", "{path}");
    }
    let request = axum::http::Request::get("/acme/naxos/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    let doc: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(doc["servers"][0]["url"], "/acme/naxos");
}
