//! The engine on PgStore: concurrent fan-in, trace context from submission to every task, and a
//! node dying mid-run with nothing lost.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use naxos_core::backend::{ClaimRequest, Store, TaskFinish, TaskOutcome};
use naxos_core::memory::MemoryQueue;
use naxos_core::model::{JobDefinition, TaskBuilder, TaskRef, TaskStatus, TraceParent};
use naxos_core::serde_json::json;
use naxos_core::testkit::engine::{diamonds_run_once, quick_config, register_counted, Runs};
use naxos_core::{Engine, ExecuteRequest, ExecutionId, ExecutionStatus};

fn fan(width: usize) -> JobDefinition {
    let mut builder =
        JobDefinition::builder(naxos_core::testkit::unique_id("fan")).task(TaskBuilder::new("start", "f"));
    let branches: Vec<String> = (0..width).map(|i| format!("b{i:03}")).collect();
    for b in &branches {
        builder = builder.task(TaskBuilder::new(b.clone(), "f").after(["start"]));
    }
    builder.task(TaskBuilder::new("join", "f").after(branches)).build()
}

/// Fifty branches complete at the same instant, each on its own connection: the join is
/// queued exactly once, and no deadlock or serialization error reaches the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_completions_unlock_the_join_once() {
    let Some(store) = common::store().await else { return };
    let store: Arc<dyn Store> = Arc::new(store);
    let def = fan(50);
    let put = store.put_definition(def.clone()).await.unwrap();
    for _round in 0..3 {
        let new = naxos_core::backend::NewExecution::new(&put.definition, json!({}));
        let id = store.create_execution(new).await.unwrap().execution_id;
        let claim = |task: &str| ClaimRequest {
            task: TaskRef::new(id, task, 1),
            owner: "n".into(),
            lease: Duration::from_secs(60),
        };
        store.claim(claim("start")).await.unwrap();
        let done = |task: &str| TaskFinish {
            task: TaskRef::new(id, task, 1),
            outcome: TaskOutcome::Completed(json!(task)),
        };
        store.finish(vec![done("start")]).await.unwrap();
        let branches: Vec<String> = (0..50).map(|i| format!("b{i:03}")).collect();
        for b in &branches {
            store.claim(claim(b)).await.unwrap();
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(branches.len()));
        let mut finishing = tokio::task::JoinSet::new();
        for b in branches {
            let (store, barrier, finish) = (store.clone(), barrier.clone(), done(&b));
            finishing.spawn(async move {
                barrier.wait().await;
                store.finish(vec![finish]).await
            });
        }
        let mut ready = Vec::new();
        while let Some(report) = finishing.join_next().await {
            let report = report.unwrap().expect("no error reaches the caller");
            assert!(report.results[0].is_ok(), "{:?}", report.results[0]);
            ready.extend(report.changes.ready);
        }
        assert_eq!(
            ready,
            vec![TaskRef::new(id, "join", 1)],
            "the join is queued exactly once"
        );
        let exec = store.get_execution(id).await.unwrap();
        assert_eq!(exec.task("join").unwrap().status, TaskStatus::Queued);
    }
}

/// Many diamonds through the engine on PgStore, 16 at a time: all complete, every task once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_diamonds_complete_with_every_task_run_once() {
    let Some(store) = common::store().await else { return };
    let engine = Engine::builder()
        .store(Arc::new(store))
        .config(quick_config("solo"))
        .build()
        .unwrap();
    diamonds_run_once(&engine, 200).await;
    engine.shutdown().await;
}

/// The trace context an execution is submitted with comes back from PostgreSQL to every task
/// of the DAG: the same trace, a span of its own per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_traceparent_reaches_every_task() {
    let Some(store) = common::store().await else { return };
    let engine = Engine::builder()
        .store(Arc::new(store))
        .config(quick_config("traced"))
        .build()
        .unwrap();
    let seen: Arc<Mutex<HashMap<String, Option<TraceParent>>>> = Arc::default();
    let s = seen.clone();
    engine.register("f", move |ctx| {
        let seen = s.clone();
        async move {
            let context = ctx.traceparent().copied();
            seen.lock().unwrap().insert(ctx.task_id().to_string(), context);
            Ok(json!(null))
        }
    });
    let def = naxos_core::testkit::diamond();
    engine.register_definition(def.clone()).await.unwrap();
    engine.start().unwrap();
    let submitted = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let request = ExecuteRequest::new(def.id.clone(), json!({})).traceparent(submitted);
    let id = engine.submit(request).await.unwrap().execution_id;
    let done = engine.wait_for_timeout(id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.traceparent, Some(submitted));
    engine.shutdown().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (task, context) in seen {
        let context = context.unwrap_or_else(|| panic!("{task} got no trace context"));
        assert_eq!(context.trace_id(), submitted.trace_id(), "{task}");
        assert_ne!(context.parent_id(), submitted.parent_id(), "{task}");
    }
}

/// A node dies mid-run (its runtime is torn down, its connections dropped, its queue lost).
/// A new node on the same database finishes every execution; nothing that had completed runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dying_mid_run_loses_nothing() {
    let Some(first_store) = common::store().await else {
        return;
    };
    let url = (*first_store.pool().connect_options()).clone();
    let runs: Runs = Arc::default();
    let def = naxos_core::testkit::diamond();

    // The first node runs in a runtime of its own, so that it can be killed without warning.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ids, first) = {
        let runs = runs.clone();
        let def = def.clone();
        doomed
            .spawn(async move {
                let engine = Engine::builder()
                    .store(Arc::new(first_store))
                    .queue(Arc::new(MemoryQueue::new()))
                    .config(quick_config("doomed"))
                    .build()
                    .unwrap();
                register_counted(&engine, &runs, Duration::from_millis(100));
                engine.register_definition(def.clone()).await.unwrap();
                engine.start().unwrap();
                let mut ids = Vec::new();
                for _ in 0..30 {
                    ids.push(engine.execute(&def.id, json!({})).await.unwrap().execution_id);
                }
                (ids, engine)
            })
            .await
            .unwrap()
    };
    // Let it get part of the way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let completed = runs.lock().unwrap().len();
        if completed >= 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first node made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.shutdown_background();
    drop(first);
    let before: HashMap<_, _> = runs.lock().unwrap().clone();

    let pool = naxos_postgres::sqlx::postgres::PgPoolOptions::new()
        .max_connections(6)
        .connect_with(url)
        .await
        .unwrap();
    let completed_before: Vec<(ExecutionId, String)> =
        naxos_postgres::sqlx::query_as("SELECT execution_id, task_id FROM naxos_tasks WHERE status = 'COMPLETED'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!completed_before.is_empty());
    let second = Engine::builder()
        .store(Arc::new(naxos_postgres::PgStore::from_pool(pool)))
        .queue(Arc::new(MemoryQueue::new()))
        .config(quick_config("survivor"))
        .build()
        .unwrap();
    register_counted(&second, &runs, Duration::from_millis(10));
    second.start().unwrap();
    for id in &ids {
        let done = second.wait_for_timeout(*id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed, "{id}: {:?}", done.error);
        assert!(done
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.output.is_some()));
    }
    second.shutdown().await;
    let runs = runs.lock().unwrap().clone();
    for key in &completed_before {
        assert_eq!(
            runs[key], 1,
            "{key:?} completed before the crash and must not run again"
        );
    }
    assert_eq!(runs.len(), ids.len() * 4, "every task ran");
    assert!(before.len() < runs.len(), "the survivor did part of the work");
}

/// U+0000, which PostgreSQL cannot keep: an output holding it FAILS its task once, naming where
/// it is (the function runs once, not again and again as leases expire); an error message
/// holding it is recorded with a replacement character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_an_output_or_error_fails_the_task_once() {
    let Some(store) = common::store().await else { return };
    let engine = Engine::builder()
        .store(Arc::new(store))
        .config(quick_config("nul"))
        .build()
        .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = calls.clone();
    engine.register("nul", move |ctx| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            match ctx.param::<String>("mode").as_deref() {
                Some("error") => Err(naxos_core::TaskError::fatal("bad\u{0}byte")),
                _ => Ok(json!({ "text": ["fine", "a\u{0}b"] })),
            }
        }
    });
    let job = JobDefinition::builder(naxos_core::testkit::unique_id("nul"))
        .task(TaskBuilder::new("only", "nul"))
        .build();
    engine.register_definition(job.clone()).await.unwrap();
    engine.start().unwrap();
    let output = engine
        .execute(&job.id, json!({"mode": "output"}))
        .await
        .unwrap()
        .execution_id;
    let error = engine
        .execute(&job.id, json!({"mode": "error"}))
        .await
        .unwrap()
        .execution_id;
    let output = engine.wait_for_timeout(output, Duration::from_secs(20)).await.unwrap();
    let error = engine.wait_for_timeout(error, Duration::from_secs(20)).await.unwrap();
    assert_eq!(output.status, ExecutionStatus::Failed);
    let why = output.task("only").unwrap().error.clone().unwrap();
    assert!(why.contains("U+0000") && why.contains("$.text[1]"), "{why}");
    assert_eq!(error.status, ExecutionStatus::Failed);
    assert_eq!(error.task("only").unwrap().error.as_deref(), Some("bad\u{FFFD}byte"));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "each function ran once"
    );
    for exec in [&output, &error] {
        assert_eq!(exec.task("only").unwrap().lease_expiries, 0);
    }
    engine.shutdown().await;
}

/// Bulk cancel and retry by filter on PostgreSQL, over several pages: every unfinished
/// execution of the definition is cancelled once, then every one retried; an empty filter is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_and_retry_take_every_page() {
    let Some(store) = common::store().await else { return };
    let engine = Engine::builder()
        .store(Arc::new(store))
        .queue(Arc::new(MemoryQueue::new()))
        .config(quick_config("bulk"))
        .build()
        .unwrap();
    engine.register("wait", |ctx| async move {
        ctx.cancelled().await;
        Err::<naxos_core::serde_json::Value, _>(naxos_core::TaskError::fatal("cancelled"))
    });
    let def = JobDefinition::builder(naxos_core::testkit::unique_id("waits"))
        .task(TaskBuilder::new("t", "wait"))
        .build();
    engine.register_definition(def.clone()).await.unwrap();
    engine.start().unwrap();
    let mut ids = Vec::new();
    for _ in 0..120 {
        ids.push(engine.execute(&def.id, json!({})).await.unwrap().execution_id);
    }
    let by_definition = naxos_core::ExecutionFilter {
        definition_id: Some(def.id.clone()),
        ..Default::default()
    };
    assert_eq!(engine.cancel_matching(&by_definition).await.unwrap(), 120);
    for id in &ids {
        assert_eq!(engine.execution(*id).await.unwrap().status, ExecutionStatus::Cancelled);
    }
    assert_eq!(engine.cancel_matching(&by_definition).await.unwrap(), 0);
    let cancelled = naxos_core::ExecutionFilter {
        status: Some(ExecutionStatus::Cancelled),
        ..by_definition.clone()
    };
    assert_eq!(engine.retry_matching(&cancelled).await.unwrap(), 120);
    assert_eq!(
        engine.cancel_matching(&by_definition).await.unwrap(),
        120,
        "retried: running again"
    );
    let empty = engine
        .retry_matching(&Default::default())
        .await
        .expect_err("an empty filter");
    assert!(empty.to_string().contains("needs a filter"), "{empty}");
    engine.shutdown().await;
}
