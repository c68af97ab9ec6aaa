//! The in-memory engine on diamond DAGs of no-op tasks: `cargo bench --bench engine`.
//!
//! - `diamonds/batch`: submit a batch of diamonds at once and wait for all of them; criterion's
//!   throughput line is tasks per second (4 tasks a diamond).
//! - `diamonds/one`: one diamond alone, submit → COMPLETED (three hops: a → b|c → d).
//! - `memory_store/*`: the in-memory store's whole-store reads with 100,000 finished executions
//!   and 1,000 waiting ones: `counts` (every status poll), a listing whose filter matches
//!   nothing, a prune that finds nothing old, and one recovery sweep.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use naxos::backend::ExecutionQuery;
use naxos::model::{JobDefinition, TaskBuilder};
use naxos::serde_json::json;
use naxos::{Engine, ExecutionStatus, RetentionDefaults};

const BATCH: u64 = 1_000;

fn engine(concurrency: usize) -> Engine {
    let engine = Engine::builder().concurrency(concurrency).build().unwrap();
    engine.register("noop", |_ctx| async move { Ok(json!(null)) });
    engine
}

async fn setup(engine: &Engine) {
    let diamond = JobDefinition::builder("diamond")
        .task(TaskBuilder::new("a", "noop"))
        .task(TaskBuilder::new("b", "noop").after(["a"]))
        .task(TaskBuilder::new("c", "noop").after(["a"]))
        .task(TaskBuilder::new("d", "noop").after(["b", "c"]))
        .build();
    engine.register_definition(diamond).await.expect("register");
    engine.start().expect("start");
}

async fn run_batch(engine: &Engine, n: u64) {
    let mut ids = Vec::with_capacity(n as usize);
    for _ in 0..n {
        ids.push(
            engine
                .execute("diamond", json!({}))
                .await
                .expect("execute")
                .execution_id,
        );
    }
    for id in ids {
        let done = engine.wait_for(id).await.expect("wait");
        assert_eq!(done.status, ExecutionStatus::Completed);
    }
}

fn diamonds(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("diamonds");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for concurrency in [16, 64] {
        let engine = engine(concurrency);
        rt.block_on(setup(&engine));
        group.throughput(Throughput::Elements(BATCH * 4));
        group.bench_with_input(BenchmarkId::new("batch", concurrency), &BATCH, |b, &n| {
            b.to_async(&rt).iter(|| run_batch(&engine, n))
        });
        rt.block_on(engine.shutdown());
    }
    let engine = engine(16);
    rt.block_on(setup(&engine));
    group.throughput(Throughput::Elements(4));
    group.bench_function("one", |b| b.to_async(&rt).iter(|| run_batch(&engine, 1)));
    rt.block_on(engine.shutdown());
    group.finish();
}

/// Finished executions in the `memory_store` group.
const FINISHED: u64 = 100_000;

fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = engine(64);
    rt.block_on(async {
        let one = JobDefinition::builder("one")
            .task(TaskBuilder::new("a", "noop"))
            .build();
        engine.register_definition(one).await.expect("register");
        engine.start().expect("start");
        for _ in 0..FINISHED / 1_000 {
            let mut ids = Vec::new();
            for _ in 0..1_000 {
                ids.push(engine.execute("one", json!({})).await.expect("execute").execution_id);
            }
            for id in ids {
                engine.wait_for(id).await.expect("wait");
            }
        }
        engine.shutdown().await;
        // Waiting executions that nobody runs: the recovery scans' real work.
        for _ in 0..1_000 {
            engine.execute("one", json!({})).await.expect("execute");
        }
    });
    let store = engine.store().clone();
    let mut group = c.benchmark_group("memory_store");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("counts", |b| b.to_async(&rt).iter(|| store.counts()));
    let nothing = ExecutionQuery {
        status: Some(ExecutionStatus::Running),
        ..ExecutionQuery::default()
    };
    group.bench_function("list_matching_nothing", |b| {
        b.to_async(&rt).iter(|| store.list_executions(&nothing))
    });
    group.bench_function("prune_nothing_old", |b| {
        let hour = RetentionDefaults::uniform(Duration::from_secs(3_600));
        b.to_async(&rt).iter(|| store.prune(hour, 1_000))
    });
    group.bench_function("recovery_sweep", |b| {
        b.to_async(&rt).iter(|| store.recover_expired(3, 1_000))
    });
    group.finish();
}

criterion_group!(benches, diamonds, memory_store);
criterion_main!(benches);
