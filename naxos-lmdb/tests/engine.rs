//! The engine on LmdbStore + MemoryQueue: diamonds complete with every task run once, and a
//! node whose runtime dies mid-run is replaced by one on the reopened directory that finishes
//! every execution without running a completed task again.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{lmdb_error, TestDir};
use naxos_core::memory::MemoryQueue;
use naxos_core::model::TaskStatus;
use naxos_core::serde_json::json;
use naxos_core::testkit::engine::{diamonds_run_once, quick_config, register_counted, Runs};
use naxos_core::{Engine, ExecutionId, ExecutionStatus};
use naxos_lmdb::{LmdbCache, LmdbCacheConfig, LmdbConfig, LmdbError, LmdbStore};

/// Many diamonds through the engine on LmdbStore and LmdbCache: all complete, every task once,
/// and the store's counts and listings agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_diamonds_complete_with_every_task_run_once() {
    let store = LmdbStore::with_config(LmdbConfig::temporary()).unwrap();
    let cache = LmdbCache::with_config(LmdbCacheConfig::temporary()).unwrap();
    let engine = Engine::builder()
        .store(Arc::new(store.clone()))
        .queue(Arc::new(MemoryQueue::new()))
        .cache(Arc::new(cache))
        .config(quick_config("solo"))
        .build()
        .unwrap();
    for done in diamonds_run_once(&engine, 300).await {
        assert!(
            done.tasks.iter().all(|t| t.history.len() == 1),
            "one attempt record each"
        );
    }
    let counts = naxos_core::backend::Store::counts(&store).await.unwrap();
    assert_eq!(counts.executions.get(&ExecutionStatus::Completed), Some(&300));
    assert_eq!((counts.queued_tasks, counts.running_tasks), (0, 0));
    engine.shutdown().await;
}

/// Opens the store at `path`, waiting while the previous holder's last handles drop.
async fn reopen(path: &std::path::Path) -> LmdbStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match LmdbStore::open(path) {
            Ok(store) => return store,
            Err(e) if matches!(lmdb_error(&e), Some(LmdbError::AlreadyOpen { .. })) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the old handles never dropped: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// A node dies mid-run: its runtime is torn down without a shutdown, its queue is lost. A new
/// node on the same directory finishes every execution (RUNNING tasks come back after their
/// lease, QUEUED ones through the stale sweep), and no task that had completed runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dying_mid_run_loses_nothing() {
    let dir = TestDir::new("dying");
    let path = dir.join("store");
    let runs: Runs = Arc::default();
    let def = naxos_core::testkit::diamond();

    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ids, first) = {
        let (runs, def, path) = (runs.clone(), def.clone(), path.clone());
        doomed
            .spawn(async move {
                let engine = Engine::builder()
                    .store(Arc::new(LmdbStore::open(&path).unwrap()))
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runs.lock().unwrap().len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first node made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.shutdown_background();
    let before: HashMap<_, _> = runs.lock().unwrap().clone();
    drop(first);
    // The directory is free once the dead node's last handle is gone (its writer thread
    // answers what it holds and stops), as it would be for a restarted process.
    let second = reopen(&path).await;
    let completed_before: Vec<(ExecutionId, String)> = {
        let mut done = Vec::new();
        for id in &ids {
            let e = naxos_core::backend::Store::get_execution(&second, *id).await.unwrap();
            for t in &e.tasks {
                if t.status == TaskStatus::Completed {
                    done.push((*id, t.task_id.clone()));
                }
            }
        }
        done
    };
    let engine = Engine::builder()
        .store(Arc::new(second))
        .queue(Arc::new(MemoryQueue::new()))
        .config(quick_config("heir"))
        .build()
        .unwrap();
    register_counted(&engine, &runs, Duration::ZERO);
    engine.start().unwrap();
    for id in &ids {
        let done = engine.wait_for_timeout(*id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed, "{id}");
    }
    let after = runs.lock().unwrap().clone();
    for key in &completed_before {
        assert_eq!(
            after.get(key),
            before.get(key),
            "{key:?} completed before, and ran again"
        );
    }
    assert_eq!(after.len(), 30 * 4, "every task ran");
    engine.shutdown().await;
}

/// A store dropped by every holder can be opened again at once, with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_on_a_reopened_store_sees_its_definitions() {
    let dir = TestDir::new("engine-reopen");
    let path = dir.join("store");
    let def = naxos_core::testkit::diamond();
    let id = {
        let engine = Engine::builder()
            .store(Arc::new(LmdbStore::open(&path).unwrap()))
            .config(quick_config("first"))
            .build()
            .unwrap();
        engine.register("f", |_ctx| async move { Ok(json!(1)) });
        engine.register_definition(def.clone()).await.unwrap();
        engine.start().unwrap();
        let id = engine.execute(&def.id, json!({"n": 1})).await.unwrap().execution_id;
        engine.wait_for_timeout(id, Duration::from_secs(10)).await.unwrap();
        engine.shutdown().await;
        id
    };
    let store = reopen(&path).await;
    let engine = Engine::builder()
        .store(Arc::new(store))
        .config(quick_config("second"))
        .build()
        .unwrap();
    let again = engine.execution(id).await.unwrap();
    assert_eq!(again.status, ExecutionStatus::Completed);
    assert_eq!(again.data, json!({"n": 1}));
    assert_eq!(engine.definition(&def.id, None).await.unwrap().version, 1);
}
