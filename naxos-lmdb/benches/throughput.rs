//! A figure, not a check: diamonds per second and one diamond's latency on LmdbStore +
//! MemoryQueue + the engine, durable commits on the local disk.
//!
//! `cargo bench -p naxos-lmdb --bench throughput`
//! (`NAXOS_BENCH_DIAMONDS`, default 2,000; `NAXOS_BENCH_CONCURRENCY`, default 64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use naxos_core::backend::Store;
use naxos_core::memory::MemoryQueue;
use naxos_core::model::{JobDefinition, NodeInfo, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EngineConfig, ExecutionStatus};
use naxos_lmdb::{LmdbCache, LmdbCacheConfig, LmdbConfig, LmdbStore};

/// Concurrent submitting clients (loadgen's default).
const SUBMITTERS: usize = 8;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Submits `n` diamonds from `submitters` concurrent clients (as loadgen does), then waits
/// for every one.
async fn run(engine: &Engine, n: usize, submitters: usize) {
    let mut clients = tokio::task::JoinSet::new();
    for s in 0..submitters {
        let share = n / submitters + usize::from(s < n % submitters);
        let engine = engine.clone();
        clients.spawn(async move {
            let mut ids = Vec::with_capacity(share);
            for _ in 0..share {
                ids.push(engine.execute("diamond", json!({})).await.unwrap().execution_id);
            }
            for id in ids {
                let done = engine.wait_for_timeout(id, Duration::from_secs(120)).await.unwrap();
                assert_eq!(done.status, ExecutionStatus::Completed);
            }
        });
    }
    while let Some(client) = clients.join_next().await {
        client.unwrap();
    }
}

/// The bytes this process has handed to `write` calls (`/proc/self/io`'s `wchar`), 0 where
/// unknown. LMDB writes whole 4 KiB pages, so per commit this is the pages a commit writes
/// (`write_bytes`, what the kernel sends to storage, counted ~4x that on this machine's ext4).
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: ").and_then(|n| n.trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let count = setting("NAXOS_BENCH_DIAMONDS", 2_000);
    let concurrency = setting("NAXOS_BENCH_CONCURRENCY", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = LmdbStore::with_config(LmdbConfig::temporary()).unwrap();
        println!("store: {}", store.path().display());
        // The disk's pace right now: one small write per durable commit, one at a time.
        let started = Instant::now();
        for i in 0..200 {
            let node = NodeInfo {
                id: format!("probe-{i}"),
                role: "all".into(),
                concurrency: 1,
                running: 0,
                started_at: chrono::Utc::now(),
                last_seen: chrono::Utc::now(),
            };
            Store::put_node(&store, node).await.unwrap();
        }
        let per_commit = started.elapsed() / 200;
        println!(
            "durable commits one at a time: {:.2} ms each ({:.0}/s)",
            per_commit.as_secs_f64() * 1e3,
            1.0 / per_commit.as_secs_f64()
        );
        let engine = Engine::builder()
            .store(Arc::new(store.clone()))
            .queue(Arc::new(MemoryQueue::new()))
            .cache(Arc::new(LmdbCache::with_config(LmdbCacheConfig::temporary()).unwrap()))
            .config(EngineConfig {
                concurrency,
                ..EngineConfig::default()
            })
            .build()
            .unwrap();
        engine.register("noop", |_ctx| async move { Ok(json!(null)) });
        let diamond = JobDefinition::builder("diamond")
            .task(TaskBuilder::new("a", "noop"))
            .task(TaskBuilder::new("b", "noop").after(["a"]))
            .task(TaskBuilder::new("c", "noop").after(["a"]))
            .task(TaskBuilder::new("d", "noop").after(["b", "c"]))
            .build();
        engine.register_definition(diamond).await.unwrap();
        engine.start().unwrap();
        run(&engine, 50, SUBMITTERS).await;

        let (started, stats, written) = (Instant::now(), store.write_stats(), bytes_written());
        run(&engine, count, SUBMITTERS).await;
        let elapsed = started.elapsed();
        let done = store.write_stats();
        let (requests, commits) = (done.requests - stats.requests, done.commits - stats.commits);
        let written = bytes_written().saturating_sub(written);
        println!(
            "{requests} write requests in {commits} durable commits ({:.1} a commit), {:.1} MB written ({:.0} KB ≈ {:.0} pages a commit)",
            requests as f64 / commits.max(1) as f64,
            written as f64 / 1e6,
            written as f64 / 1e3 / commits.max(1) as f64,
            written as f64 / 4096.0 / commits.max(1) as f64
        );
        println!(
            "{count} diamonds from {SUBMITTERS} submitters, concurrency {concurrency}: {:.2} s = {:.0} diamonds/s ({:.0} tasks/s)",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            4.0 * count as f64 / elapsed.as_secs_f64()
        );

        let mut alone = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            run(&engine, 1, 1).await;
            alone.push(started.elapsed());
        }
        alone.sort();
        let at = |q: f64| alone[((alone.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "one diamond alone (200 runs): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            at(0.5),
            at(0.9),
            at(0.99)
        );
        engine.shutdown().await;
    });
}
