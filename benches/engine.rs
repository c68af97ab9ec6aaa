//! The in-memory engine on diamond DAGs of no-op tasks: `cargo bench --bench engine`.
//!
//! - `diamonds/batch`: submit a batch of diamonds at once and wait for all of them; criterion's
//!   throughput line is tasks per second (4 tasks a diamond).
//! - `diamonds/one`: one diamond alone, submit → COMPLETED (three hops: a → b|c → d).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use naxos::model::{JobDefinition, TaskBuilder};
use naxos::serde_json::json;
use naxos::{Engine, ExecutionStatus};

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

criterion_group!(benches, diamonds);
criterion_main!(benches);
