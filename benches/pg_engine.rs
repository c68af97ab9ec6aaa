//! The engine on PgStore + the in-memory Queue, diamond DAGs of no-op tasks.
//!
//! Run it through `scripts/bench-pg.sh`, which starts a throwaway PostgreSQL, measures
//! pgbench's single-row UPDATE rate on it, then runs this with `NAXOS_BENCH_POSTGRES_URL`.
//! Without that variable it prints a note and exits (so `cargo bench` alone stays harmless).

use std::sync::Arc;
use std::time::{Duration, Instant};

use naxos::model::{JobDefinition, TaskBuilder};
use naxos::serde_json::json;
use naxos::{Engine, EngineConfig, ExecutionStatus};
use naxos_postgres::{PgConfig, PgStore};

fn diamond() -> JobDefinition {
    JobDefinition::builder("bench-diamond")
        .task(TaskBuilder::new("a", "noop"))
        .task(TaskBuilder::new("b", "noop").after(["a"]))
        .task(TaskBuilder::new("c", "noop").after(["a"]))
        .task(TaskBuilder::new("d", "noop").after(["b", "c"]))
        .build()
}

async fn engine(url: &str, concurrency: usize) -> Engine {
    let mut config = PgConfig::new(url);
    config.max_connections = (concurrency as u32) + 8;
    config.schema = Some(format!(
        "bench_{}",
        &naxos::uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let store = PgStore::with_config(config).await.expect("connect");
    let engine = Engine::builder()
        .store(Arc::new(store))
        .config(EngineConfig {
            concurrency,
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    engine.register("noop", |_ctx| async move { Ok(json!(null)) });
    engine.register_definition(diamond()).await.expect("register");
    engine.start().expect("start");
    engine
}

async fn batch(engine: &Engine, n: usize) -> Duration {
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(
            engine
                .execute("bench-diamond", json!({}))
                .await
                .expect("execute")
                .execution_id,
        );
    }
    for id in ids {
        assert_eq!(
            engine.wait_for(id).await.expect("wait").status,
            ExecutionStatus::Completed
        );
    }
    start.elapsed()
}

fn main() {
    let Ok(url) = std::env::var("NAXOS_BENCH_POSTGRES_URL") else {
        eprintln!("pg_engine: NAXOS_BENCH_POSTGRES_URL is not set; run scripts/bench-pg.sh");
        return;
    };
    let n: usize = std::env::var("NAXOS_BENCH_DIAMONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for concurrency in [16, 64] {
            let engine = engine(&url, concurrency).await;
            batch(&engine, 50).await; // warm-up
            let took = batch(&engine, n).await;
            let diamonds = n as f64 / took.as_secs_f64();
            println!(
                "pg_engine batch concurrency={concurrency}: {n} diamonds in {:.2} s = {diamonds:.0} diamonds/s = {:.0} tasks/s",
                took.as_secs_f64(),
                diamonds * 4.0
            );
            engine.shutdown().await;
        }
        let engine = engine(&url, 16).await;
        let mut lat: Vec<Duration> = Vec::new();
        for _ in 0..200 {
            lat.push(batch(&engine, 1).await);
        }
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3;
        println!(
            "pg_engine one diamond alone (submit -> COMPLETED, 200 runs): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            p(0.5),
            p(0.9),
            p(0.99)
        );
        engine.shutdown().await;
    });
}
