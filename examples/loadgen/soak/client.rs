//! The soak's view of the server: an HTTP client for submitting executions, and a tracker that
//! finds when each submitted execution finished from the server's own listing.

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::bail;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use naxos::chrono::{DateTime, Utc};
use naxos::ExecutionId;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The server's REST API, over pooled keep-alive connections.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub(crate) fn new(base: &str) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let res = self.client.request(req).await?;
        let status = res.status();
        Ok((status, res.into_body().collect().await?.to_bytes()))
    }

    /// Sends a request up to three times while the connection fails or the server answers 503
    /// (a backend call over its deadline on a loaded machine). Each repeat is printed.
    async fn call_retrying(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut attempt = 1;
        loop {
            let why = match self.call(method.clone(), path, body.clone()).await {
                Ok((StatusCode::SERVICE_UNAVAILABLE, body)) if attempt < 3 => {
                    format!("503 {}", String::from_utf8_lossy(&body))
                }
                Ok(answer) => return Ok(answer),
                Err(e) if attempt < 3 => format!("{e:#}"),
                Err(e) => return Err(e.context(format!("{method} {path}"))),
            };
            eprintln!("{method} {path}: {why}; trying again");
            tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
            attempt += 1;
        }
    }

    async fn get_bytes(&self, path: &str) -> anyhow::Result<Bytes> {
        let (status, body) = self.call_retrying(Method::GET, path, Bytes::new()).await?;
        if status != StatusCode::OK {
            bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(naxos::serde_json::from_slice(&self.get_bytes(path).await?)?)
    }

    /// Tasks QUEUED: from a `/metrics` scrape (`naxos_queue_depth`) when `scrape` is set, as a
    /// Prometheus server would take it, else from `/api/v1/system/status`.
    pub(crate) async fn queued_tasks(&self, scrape: bool) -> anyhow::Result<u64> {
        if !scrape {
            let status: naxos::serde_json::Value = self.get("/api/v1/system/status").await?;
            return Ok(status["queuedCount"].as_u64().unwrap_or_default());
        }
        let text = self.get_bytes("/metrics").await?;
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix("naxos_queue_depth "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| anyhow::anyhow!("/metrics has no naxos_queue_depth"))
    }

    /// Submits one execution of `definition` with `params`; its id. No `Idempotency-Key` (it
    /// would add an index entry per execution to what the soak measures): a repeat after a
    /// lost answer may start a second execution, which the tracker then does not count.
    pub(crate) async fn execute(&self, definition: &str, params: &Bytes) -> anyhow::Result<ExecutionId> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Ack {
            execution_id: ExecutionId,
        }
        let path = format!("/api/v1/jobs/{definition}/execute");
        let (status, body) = self.call_retrying(Method::POST, &path, params.clone()).await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(naxos::serde_json::from_slice::<Ack>(&body)?.execution_id)
    }
}

/// One line of `GET /api/v1/jobs`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    id: ExecutionId,
    status: String,
    created_at: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    executions: Vec<Summary>,
    next_cursor: Option<String>,
}

/// A submitted execution that reached a terminal status.
pub(crate) struct Finished {
    /// COMPLETED (rather than FAILED or CANCELLED).
    pub(crate) completed: bool,
    /// Created, by the Store's clock.
    pub(crate) created_at: DateTime<Utc>,
    /// Ended, by the Store's clock.
    pub(crate) end_time: DateTime<Utc>,
}

impl Finished {
    /// Submit → complete as the Store recorded it (creation to end), in microseconds.
    pub(crate) fn latency_us(&self) -> u64 {
        (self.end_time - self.created_at).num_microseconds().unwrap_or(0).max(1) as u64
    }
}

/// The executions this run submitted and has not yet seen finish.
///
/// A poll pages through the listing, newest first (ids are UUIDv7: creation order), down to the
/// oldest pending id: about `rate × poll interval` rows, one request for most polls.
pub(crate) struct Tracker {
    api: Api,
    definition: String,
    pending: Mutex<BTreeSet<ExecutionId>>,
}

impl Tracker {
    pub(crate) fn new(api: Api, definition: &str) -> Self {
        Self {
            api,
            definition: definition.to_string(),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    pub(crate) fn add(&self, id: ExecutionId) {
        self.lock().insert(id);
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<ExecutionId>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pending executions that have finished since the last poll.
    pub(crate) async fn poll(&self) -> anyhow::Result<Vec<Finished>> {
        let (oldest, waiting) = {
            let pending = self.lock();
            match pending.first() {
                Some(&oldest) => (oldest, pending.len()),
                None => return Ok(Vec::new()),
            }
        };
        // Newer executions whose submission is still in flight show up too: room for them.
        let limit = (waiting * 2 + 100).min(1_000);
        let mut finished = Vec::new();
        let mut cursor: Option<String> = None;
        // Bounded: a stuck execution must not make every poll walk the whole history.
        for _ in 0..200 {
            let mut path = format!("/api/v1/jobs?definitionId={}&limit={limit}", self.definition);
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(c);
            }
            let page: Page = self.api.get(&path).await?;
            let mut reached_oldest = false;
            {
                let mut pending = self.lock();
                for e in page.executions {
                    reached_oldest |= e.id <= oldest;
                    let terminal = matches!(e.status.as_str(), "COMPLETED" | "FAILED" | "CANCELLED");
                    if terminal && pending.remove(&e.id) {
                        finished.push(Finished {
                            completed: e.status == "COMPLETED",
                            created_at: e.created_at,
                            end_time: e.end_time.unwrap_or(e.created_at),
                        });
                    }
                }
            }
            match page.next_cursor {
                Some(next) if !reached_oldest => cursor = Some(next),
                _ => break,
            }
        }
        Ok(finished)
    }
}
