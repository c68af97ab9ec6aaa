//! The load bench: drives a stack through the library API or over HTTP with a workload, then
//! prints executions/s, tasks/s, submit→complete latency (p50/p90/p99, HDR histogram), per-hop
//! latency and peak RSS, and writes the same as JSON.
//!
//! ```text
//! cargo run --release --example loadgen -- [--stack memory|lmdb|postgres|full] [--via api|http]
//!     [--workload diamond|chain|fanout|sleep] [--count N] [--concurrency C] [--submitters S] [--batch B]
//!     [--alone R] [--ready-here] [--pool P] [--json FILE] [--seed-finished N [--prune]]
//! ```
//!
//! It submits `count` executions from `submitters` concurrent clients (the burst: throughput,
//! and latency under a backlog) — with `--batch B`, B at a time (`Engine::execute_many`, or
//! `execute-batch` over HTTP) —,
//! then `alone` executions one at a time (latency and per-hop latency of an unloaded system).
//! `--ready-here` sets `EngineConfig::run_ready_here`: tasks made ready on the node run there
//! while it has spare slots, without a queue message. `--pool P` sizes the PostgreSQL
//! connection pool (default: `PgConfig`'s, as the example server has it).
//!
//! `lmdb` is the example server's default: LmdbStore + LmdbCache (durable, synced commits) in a
//! fresh temporary directory, in-memory queue. `postgres` needs `NAXOS_POSTGRES_URL` (PgStore +
//! in-memory queue); `full` also needs `NAXOS_AMQP_URL` (PgStore + AmqpQueue). Each run uses its
//! own directory, schema and queue names.
//!
//! `--seed-finished N` (PostgreSQL stacks) writes N finished executions before the burst, and
//! `--prune` prunes them during it (see `prune.rs`): throughput with and without a prune.
//!
//! `loadgen soak --url URL --server-pid PID ...` is the other mode: a fixed rate for a set
//! time against a running server, watching its memory per execution (see `soak.rs`;
//! `scripts/soak.sh` runs it).

mod prune;
mod soak;
mod workloads;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use naxos::serde_json::{json, Value};
use naxos::{Engine, EngineConfig, Execution, ExecutionStatus};
use workloads::Workload;

struct Args {
    stack: String,
    via: String,
    workload: Workload,
    count: usize,
    concurrency: usize,
    submitters: usize,
    batch: usize,
    alone: usize,
    json: Option<String>,
    seed_finished: usize,
    prune: bool,
    ready_here: bool,
    pool: Option<u32>,
}

const USAGE: &str = "usage: loadgen [--stack memory|lmdb|postgres|full] [--via api|http]
               [--workload diamond|chain|fanout|sleep] [--count N] [--concurrency N]
               [--submitters N] [--batch N] [--alone N] [--ready-here] [--pool N] [--json FILE]
               [--seed-finished N [--prune]]
       loadgen soak --help   (a fixed rate against a running server, watching its memory)
The postgres and full stacks read NAXOS_POSTGRES_URL (and NAXOS_AMQP_URL for full).";

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        stack: "memory".into(),
        via: "api".into(),
        workload: Workload::Diamond,
        count: 2_000,
        concurrency: 32,
        submitters: 8,
        batch: 1,
        alone: 200,
        json: None,
        seed_finished: 0,
        prune: false,
        ready_here: false,
        pool: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--stack" => a.stack = value()?,
            "--via" => a.via = value()?,
            "--workload" => {
                let w = value()?;
                a.workload = Workload::parse(&w).with_context(|| format!("unknown workload {w}"))?;
            }
            "--count" => a.count = value()?.parse()?,
            "--concurrency" => a.concurrency = value()?.parse()?,
            "--alone" => a.alone = value()?.parse()?,
            "--submitters" => a.submitters = value()?.parse::<usize>()?.max(1),
            "--batch" => a.batch = value()?.parse::<usize>()?.clamp(1, naxos::MAX_BATCH),
            "--json" => a.json = Some(value()?),
            "--seed-finished" => a.seed_finished = value()?.parse()?,
            "--prune" => a.prune = true,
            "--ready-here" => a.ready_here = true,
            "--pool" => a.pool = Some(value()?.parse::<u32>()?.max(1)),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if !matches!(a.stack.as_str(), "memory" | "lmdb" | "postgres" | "full") || !matches!(a.via.as_str(), "api" | "http")
    {
        bail!("--stack is memory|lmdb|postgres|full, --via is api|http");
    }
    if (a.seed_finished > 0 || a.prune) && !matches!(a.stack.as_str(), "postgres" | "full") {
        bail!("--seed-finished and --prune need --stack postgres or full");
    }
    Ok(a)
}

/// The engine, and its PostgreSQL store on the PostgreSQL stacks.
async fn engine(a: &Args) -> anyhow::Result<(Engine, Option<Arc<naxos_postgres::PgStore>>)> {
    let run = &naxos::uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut config = EngineConfig {
        concurrency: a.concurrency,
        run_ready_here: a.ready_here,
        ..EngineConfig::default()
    };
    if a.seed_finished > 0 {
        // The seeded executions are pruned by `--prune` alone, never by the sweeper.
        config.retention_completed = std::time::Duration::from_secs(30 * 24 * 3600);
        config.retention_failed = config.retention_completed;
    }
    let mut builder = Engine::builder().config(config);
    let mut pg = None;
    if a.stack == "lmdb" {
        let store = naxos_lmdb::LmdbStore::with_config(naxos_lmdb::LmdbConfig::temporary())?;
        let cache = naxos_lmdb::LmdbCache::with_config(naxos_lmdb::LmdbCacheConfig::temporary())?;
        builder = builder.store(Arc::new(store)).cache(Arc::new(cache));
    }
    if a.stack == "postgres" || a.stack == "full" {
        let url = std::env::var("NAXOS_POSTGRES_URL").context("NAXOS_POSTGRES_URL is needed for this stack")?;
        let mut config = naxos_postgres::PgConfig::new(url);
        config.schema = Some(format!("loadgen_{run}"));
        if let Some(pool) = a.pool {
            config.max_connections = pool;
        }
        let store = Arc::new(naxos_postgres::PgStore::with_config(config).await?);
        pg = Some(store.clone());
        builder = builder.store(store);
    }
    if a.stack == "full" {
        let url = std::env::var("NAXOS_AMQP_URL").context("NAXOS_AMQP_URL is needed for the full stack")?;
        let mut config = naxos_amqp::AmqpConfig::new(url);
        config.prefix = format!("loadgen-{run}");
        builder = builder.queue(Arc::new(naxos_amqp::AmqpQueue::with_config(config).await?));
    }
    let engine = builder.build()?;
    workloads::register(&engine);
    engine.register_definition(a.workload.definition()).await?;
    engine.start()?;
    Ok((engine, pg))
}

/// Submits through the library, or over HTTP to an in-process server on loopback.
struct Submitter {
    engine: Engine,
    http: Option<(
        String,
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Full<hyper::body::Bytes>,
        >,
    )>,
}

impl Submitter {
    async fn new(engine: Engine, via: &str) -> anyhow::Result<Self> {
        let http = if via == "http" {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            let router = naxos_http::router(engine.clone(), Default::default());
            tokio::spawn(naxos_http::serve(
                listener,
                router,
                engine.clone(),
                std::future::pending(),
            ));
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
            Some((base, client))
        } else {
            None
        };
        Ok(Self { engine, http })
    }

    async fn submit(&self, definition: &str) -> anyhow::Result<naxos::ExecutionId> {
        let Some((base, client)) = &self.http else {
            return Ok(self.engine.execute(definition, json!({})).await?.execution_id);
        };
        let req = hyper::Request::post(format!("{base}/api/v1/jobs/{definition}/execute"))
            .body(http_body_util::Full::new(hyper::body::Bytes::from_static(b"{}")))?;
        let res = client.request(req).await?;
        let body = http_body_util::BodyExt::collect(res.into_body()).await?.to_bytes();
        let v: Value = naxos::serde_json::from_slice(&body)?;
        Ok(v["executionId"].as_str().context("executionId")?.parse()?)
    }

    /// Submits `n` executions: one by one when `n` is 1, else as one batch.
    async fn submit_many(&self, definition: &str, n: usize) -> anyhow::Result<Vec<naxos::ExecutionId>> {
        if n == 1 {
            return Ok(vec![self.submit(definition).await?]);
        }
        let Some((base, client)) = &self.http else {
            let submitted = self.engine.execute_many(definition, (0..n).map(|_| json!({}))).await?;
            return Ok(submitted.into_iter().map(|s| s.execution_id).collect());
        };
        let body = naxos::serde_json::to_vec(&vec![json!({}); n])?;
        let req = hyper::Request::post(format!("{base}/api/v1/jobs/{definition}/execute-batch"))
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
        let res = client.request(req).await?;
        let body = http_body_util::BodyExt::collect(res.into_body()).await?.to_bytes();
        let v: Value = naxos::serde_json::from_slice(&body)?;
        v["executionIds"]
            .as_array()
            .context("executionIds")?
            .iter()
            .map(|id| Ok(id.as_str().context("an execution id")?.parse()?))
            .collect()
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Dependency end → dependent start, for every edge, in microseconds.
fn hops(execution: &Execution, into: &mut Histogram<u64>) {
    for t in &execution.tasks {
        for dep in &t.dependencies {
            let (Some(parent), Some(start)) = (execution.task(dep).and_then(|d| d.end_time), t.start_time) else {
                continue;
            };
            if let Ok(gap) = (start - parent).to_std() {
                let _ = into.record(gap.as_micros().max(1) as u64);
            }
        }
    }
}

/// mimalloc instead of the system allocator: the engine allocates per task and event, and
/// glibc's malloc was a quarter of the in-memory engine's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("soak") {
        return soak::main(std::env::args().skip(2)).await;
    }
    let a = args()?;
    let (engine, pg) = engine(&a).await?;
    let submitter = Arc::new(Submitter::new(engine.clone(), &a.via).await?);
    let definition = a.workload.definition().id;
    // Warm up: connections, caches, the first allocation of everything.
    for _ in 0..20.min(a.count) {
        let id = submitter.submit(&definition).await?;
        engine.wait_for(id).await?;
    }
    if a.seed_finished > 0 {
        let store = pg.as_ref().context("a PostgreSQL stack")?;
        let seeding = Instant::now();
        prune::seed(store, &definition, a.seed_finished).await?;
        eprintln!(
            "seeded {} finished executions in {:.1} s",
            a.seed_finished,
            seeding.elapsed().as_secs_f64()
        );
    }
    let bar = ProgressBar::new(a.count as u64).with_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} executions  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let pruner = match (&pg, a.prune) {
        (Some(store), true) => Some(tokio::spawn(prune::run(store.clone()))),
        _ => None,
    };
    // Several submitters at once, as many clients would; each execution is then awaited.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut submitters = tokio::task::JoinSet::new();
    for s in 0..a.submitters {
        let share = a.count / a.submitters + usize::from(s < a.count % a.submitters);
        let batch = a.batch;
        let (submitter, definition, tx, engine, bar) = (
            submitter.clone(),
            definition.clone(),
            tx.clone(),
            engine.clone(),
            bar.clone(),
        );
        submitters.spawn(async move {
            let mut left = share;
            while left > 0 {
                let n = batch.min(left);
                left -= n;
                let submitted_at = Instant::now();
                for id in submitter.submit_many(&definition, n).await? {
                    let (engine, bar, tx) = (engine.clone(), bar.clone(), tx.clone());
                    tokio::spawn(async move {
                        let done = engine.wait_for(id).await.map(|e| (e, submitted_at.elapsed()));
                        bar.inc(1);
                        let _ = tx.send(done);
                    });
                }
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    while let Some(done) = submitters.join_next().await {
        done??;
    }
    // How long the burst took to submit (while the first ones already ran).
    let submitted = started.elapsed();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut hop = Histogram::<u64>::new(3)?;
    let mut failed = 0;
    while let Some(done) = rx.recv().await {
        let (execution, took) = done?;
        if execution.status != ExecutionStatus::Completed {
            failed += 1;
        }
        latency.record(took.as_micros().max(1) as u64)?;
        hops(&execution, &mut hop);
    }
    let wall = started.elapsed();
    bar.finish_and_clear();
    let pruned = match pruner {
        Some(p) => p.await??,
        None => Value::Null,
    };
    // Closed loop: one execution at a time, for the latency of an unloaded system.
    let mut alone = Histogram::<u64>::new(3)?;
    let mut alone_hop = Histogram::<u64>::new(3)?;
    for _ in 0..a.alone {
        let submitted_at = Instant::now();
        let id = submitter.submit(&definition).await?;
        let execution = engine.wait_for(id).await?;
        alone.record(submitted_at.elapsed().as_micros().max(1) as u64)?;
        hops(&execution, &mut alone_hop);
    }
    engine.shutdown().await;

    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let executions_per_s = a.count as f64 / wall.as_secs_f64();
    let report = json!({
        "stack": a.stack, "via": a.via, "workload": a.workload.name(), "count": a.count,
        "concurrency": a.concurrency, "submitters": a.submitters, "batch": a.batch, "readyHere": a.ready_here, "pool": a.pool, "failed": failed, "wallSeconds": wall.as_secs_f64(),
        "submitSeconds": submitted.as_secs_f64(),
        "executionsPerSecond": executions_per_s,
        "tasksPerSecond": executions_per_s * a.workload.tasks() as f64,
        "latencyMs": { "p50": ms(&latency, 0.5), "p90": ms(&latency, 0.9), "p99": ms(&latency, 0.99), "max": latency.max() as f64 / 1000.0 },
        "hopMs": { "p50": ms(&hop, 0.5), "p90": ms(&hop, 0.9), "p99": ms(&hop, 0.99) },
        "alone": {
            "runs": a.alone,
            "latencyMs": { "p50": ms(&alone, 0.5), "p90": ms(&alone, 0.9), "p99": ms(&alone, 0.99) },
            "hopMs": { "p50": ms(&alone_hop, 0.5), "p90": ms(&alone_hop, 0.9), "p99": ms(&alone_hop, 0.99) },
        },
        "peakRssMb": peak_rss_mb(),
        "seededFinished": a.seed_finished,
        "prune": pruned,
    });
    println!(
        "loadgen {} via {} {} x{} (concurrency {}{}{}): {:.0} executions/s, {:.0} tasks/s; submitted in {:.2} s; burst submit->complete p50 {:.1} ms p99 {:.1} ms; \
         alone submit->complete p50 {:.3} ms p90 {:.3} ms p99 {:.3} ms, hop p50 {:.3} ms p99 {:.3} ms; peak RSS {:.0} MB{}",
        a.stack, a.via, a.workload.name(), a.count, a.concurrency,
        if a.batch > 1 { format!(", batches of {}", a.batch) } else { String::new() },
        if a.ready_here { ", ready tasks run here" } else { "" },
        executions_per_s, report["tasksPerSecond"].as_f64().unwrap_or_default(), submitted.as_secs_f64(),
        ms(&latency, 0.5), ms(&latency, 0.99),
        ms(&alone, 0.5), ms(&alone, 0.9), ms(&alone, 0.99), ms(&alone_hop, 0.5), ms(&alone_hop, 0.99), peak_rss_mb(),
        if failed > 0 { format!(" ({failed} NOT COMPLETED)") } else { String::new() }
    );
    if !pruned.is_null() {
        println!(
            "prune: {} executions in {:.1} s ({} batches; batch p50 {} ms, p99 {} ms, max {} ms), during a burst of {:.1} s",
            pruned["pruned"], pruned["seconds"].as_f64().unwrap_or_default(), pruned["batches"],
            pruned["batchMs"]["p50"], pruned["batchMs"]["p99"], pruned["batchMs"]["max"], wall.as_secs_f64()
        );
    }
    if let Some(path) = &a.json {
        std::fs::write(path, naxos::serde_json::to_string_pretty(&report)? + "\n")?;
    }
    if failed > 0 {
        bail!("{failed} executions did not complete");
    }
    Ok(())
}
