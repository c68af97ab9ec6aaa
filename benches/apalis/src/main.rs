//! The load bench's diamond on apalis 1.0, the closest Rust peer: `a → (b, c) → d` of no-op
//! tasks as an `apalis-workflow` graph on `apalis-postgres`, one process, one worker of 32.
//! Like `examples/loadgen`: a burst of `count` workflows from 8 submitters (throughput), then
//! `alone` one at a time (latency); prints a line and writes the figures as JSON.
//!
//! ```text
//! cargo run --release --manifest-path benches/apalis/Cargo.toml -- <postgres url> <count> <alone> <json file>
//! ```
//!
//! Each workflow's input is its number; every task passes it on and `d` reports it done.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use apalis_workflow::{GraphFlow, WorkflowSink};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::mpsc;

/// Where `d` reports the workflows that ended.
static DONE: OnceLock<mpsc::UnboundedSender<u64>> = OnceLock::new();

/// How long the bench waits for the workflows it submitted.
const DEADLINE: Duration = Duration::from_secs(900);

async fn a(n: u64) -> Result<u64, BoxDynError> {
    Ok(n)
}

async fn b(n: u64) -> Result<u64, BoxDynError> {
    Ok(n)
}

async fn c(n: u64) -> Result<u64, BoxDynError> {
    Ok(n)
}

async fn d((n, _): (u64, u64)) -> Result<u64, BoxDynError> {
    if let Some(done) = DONE.get() {
        let _ = done.send(n);
    }
    Ok(n)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, count, alone, out] = args.as_slice() else {
        return Err("usage: naxos-bench-apalis <postgres url> <count> <alone> <json file>".into());
    };
    let (count, alone): (u64, u64) = (count.parse()?, alone.parse()?);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(40)
        .connect(url)
        .await?;
    PostgresStorage::setup(&pool).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    DONE.set(tx).map_err(|_| "set twice")?;

    let flow = GraphFlow::new("naxos-bench-diamond");
    let na = flow.add_task(a);
    let nb = flow.add_task(b).depends_on(&na);
    let nc = flow.add_task(c).depends_on(&na);
    flow.add_task(d).depends_on((&nb, &nc));
    flow.validate()?;

    let backend = PostgresStorage::new(&pool).with_config(Config::default().queue("naxos-bench-diamond"));
    let sink = backend.clone();
    let worker = WorkerBuilder::new("naxos-bench")
        .backend(backend.with_pubsub().poll_with_interval(Duration::from_millis(100)))
        .concurrency(32)
        .build(flow);
    tokio::spawn(worker.run());

    // Submits workflow `n` and returns when it was submitted.
    let submit = move |n: u64| {
        let mut sink = sink.clone();
        async move {
            let at = Instant::now();
            sink.push_start(n).await.map_err(|e| format!("push_start: {e}"))?;
            Ok::<_, BoxDynError>(at)
        }
    };
    // Waits for workflow `n` (the others must have ended already).
    async fn until_done(rx: &mut mpsc::UnboundedReceiver<u64>, n: u64) -> Result<(), BoxDynError> {
        loop {
            let got = tokio::time::timeout(DEADLINE, rx.recv())
                .await?
                .ok_or("the worker stopped")?;
            if got == n {
                return Ok(());
            }
        }
    }

    // Warm-up: connections, the first plans.
    let warm = 1_000_000_000;
    for n in warm..warm + 20 {
        submit(n).await?;
        until_done(&mut rx, n).await?;
    }

    let started = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for s in 0..8u64 {
        let submit = submit.clone();
        submitters.spawn(async move {
            let mut at = Vec::new();
            for n in (0..count).filter(|n| n % 8 == s) {
                at.push((n, submit(n).await?));
            }
            Ok::<_, BoxDynError>(at)
        });
    }
    let mut submitted_at = HashMap::new();
    while let Some(at) = submitters.join_next().await {
        submitted_at.extend(at??);
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut ended = 0;
    while ended < count {
        let n = tokio::time::timeout(DEADLINE, rx.recv())
            .await?
            .ok_or("the worker stopped")?;
        if let Some(at) = submitted_at.remove(&n) {
            latency.record(at.elapsed().as_micros().max(1) as u64)?;
            ended += 1;
        }
    }
    let wall = started.elapsed();

    let mut lone = Histogram::<u64>::new(3)?;
    for n in count..count + alone {
        let at = submit(n).await?;
        until_done(&mut rx, n).await?;
        lone.record(at.elapsed().as_micros().max(1) as u64)?;
    }

    let per_s = count as f64 / wall.as_secs_f64();
    let report = json!({
        "stack": "apalis", "workload": "diamond", "count": count, "wallSeconds": wall.as_secs_f64(),
        "executionsPerSecond": per_s, "tasksPerSecond": per_s * 4.0,
        "latencyMs": { "p50": ms(&latency, 0.5), "p90": ms(&latency, 0.9), "p99": ms(&latency, 0.99) },
        "alone": { "runs": alone, "latencyMs": { "p50": ms(&lone, 0.5), "p90": ms(&lone, 0.9), "p99": ms(&lone, 0.99) } },
    });
    println!(
        "apalis diamond x{count} (apalis-postgres, one worker of 32): {per_s:.1} executions/s, {:.0} tasks/s; \
         alone submit->complete p50 {:.1} ms p99 {:.1} ms",
        per_s * 4.0,
        ms(&lone, 0.5),
        ms(&lone, 0.99)
    );
    std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
