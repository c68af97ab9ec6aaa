//! Priorities in the engine, on the in-memory store and queue: under a backlog a higher-priority
//! execution's task starts next, the definition's job-level `priority` is the default that a
//! request overrides, a sub-job's child has its parent's, the runs waiting for a concurrency
//! slot go highest priority first, and registration refuses a priority above 9.

mod common;

use std::sync::{Arc, Mutex};

use common::{engine, fast_config, until};
use naxos_core::model::{ExecutionStatus, JobDefinition, Priority, TaskBuilder, TaskStatus};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EngineConfig, ExecuteRequest, ExecutionId, TaskError};
use tokio::sync::Semaphore;

/// An engine of `workers` whose function `work` records `params.n` as it starts, and whose
/// runs with `params.hold` wait for a permit of the returned gate first.
fn recording(workers: usize) -> (Engine, Arc<Mutex<Vec<u64>>>, Arc<Semaphore>) {
    let engine = Engine::builder()
        .config(EngineConfig {
            concurrency: workers,
            ..fast_config()
        })
        .build()
        .unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(0));
    let (log, g) = (started.clone(), gate.clone());
    engine.register("work", move |ctx| {
        let (log, gate) = (log.clone(), g.clone());
        async move {
            log.lock().unwrap().push(ctx.param::<u64>("n").unwrap_or_default());
            if ctx.param::<bool>("hold").unwrap_or(false) {
                gate.acquire().await.unwrap().forget();
            }
            Ok::<_, TaskError>(json!(null))
        }
    });
    engine.start().unwrap();
    (engine, started, gate)
}

/// Submits `n` of `definition` at `priority` (the definition's default when `None`).
async fn submit(engine: &Engine, definition: &str, n: u64, priority: Option<u64>) -> ExecutionId {
    let mut request = ExecuteRequest::new(definition, json!({ "n": n }));
    if let Some(p) = priority {
        request = request.priority(Priority::new(p).unwrap());
    }
    engine.submit(request).await.unwrap().execution_id
}

/// Registers `definition` of the one task `task` and starts an execution of it (`n` 0) that
/// holds its worker until the gate opens; returns it once it runs.
async fn hold_one(engine: &Engine, task: TaskBuilder, definition: &str) -> ExecutionId {
    let def = JobDefinition::builder(definition).task(task).build();
    engine.register_definition(def).await.unwrap();
    let params = json!({ "n": 0, "hold": true });
    let id = engine.execute(definition, params).await.unwrap().execution_id;
    until(engine, id, |e| e.tasks[0].status == TaskStatus::Running).await;
    id
}

/// Waits until every execution in `ids` has COMPLETED.
async fn all_completed(engine: &Engine, ids: &[ExecutionId]) {
    for &id in ids {
        let e = until(engine, id, |e| e.summary.status.is_terminal()).await;
        assert_eq!(e.summary.status, ExecutionStatus::Completed, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_starts_before_the_backlog() {
    let (engine, started, gate) = recording(1);
    // The one worker is busy; twenty executions of priority 0 queue behind it, then one of 9.
    let busy = hold_one(&engine, TaskBuilder::new("a", "work"), "job").await;
    let mut ids = vec![busy];
    for n in 1..=20 {
        ids.push(submit(&engine, "job", n, None).await);
    }
    let urgent = submit(&engine, "job", 99, Some(9)).await;
    ids.push(urgent);
    gate.add_permits(1);
    all_completed(&engine, &ids).await;
    let order = started.lock().unwrap().clone();
    assert_eq!(order[..2], [0, 99], "priority 9 starts next: {order:?}");
    assert_eq!(order[2..], (1..=20).collect::<Vec<u64>>(), "then the backlog in order");
    let summary = engine.execution(urgent).await.unwrap().summary;
    assert_eq!(summary.priority, Priority::HIGHEST);
    assert_eq!(
        engine.execution(ids[1]).await.unwrap().summary.priority,
        Priority::LOWEST
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_definition_sets_the_default_and_a_child_inherits_its_parents() {
    let engine = engine();
    engine.register("noop", |_ctx| async { Ok::<_, TaskError>(json!(1)) });
    engine.start().unwrap();
    engine
        .register_definition(
            JobDefinition::builder("child")
                .task(TaskBuilder::new("c", "noop"))
                .build(),
        )
        .await
        .unwrap();
    engine
        .register_definition(
            JobDefinition::builder("urgent")
                .priority(Priority::new(7).unwrap())
                .task(TaskBuilder::sub_job("call", "child"))
                .build(),
        )
        .await
        .unwrap();
    for (asked, expected) in [(None, 7), (Some(2), 2), (Some(0), 0)] {
        let parent = submit(&engine, "urgent", 0, asked).await;
        let done = until(&engine, parent, |e| e.summary.status.is_terminal()).await;
        assert_eq!(done.summary.status, ExecutionStatus::Completed, "{done:?}");
        assert_eq!(done.summary.priority.get(), expected, "asked {asked:?}");
        let child = done.tasks[0].plan.child.expect("the sub-job started a child");
        let child = engine.execution(child).await.unwrap().summary;
        assert_eq!(child.priority.get(), expected, "the child has its parent's priority");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_waiting_for_a_slot_start_highest_priority_first() {
    let (engine, started, gate) = recording(4);
    let holder = hold_one(&engine, TaskBuilder::new("a", "work").concurrency(1), "limited").await;
    let mut ids = vec![holder];
    for (n, priority) in [(1, 0), (2, 0), (3, 9), (4, 5)] {
        let id = submit(&engine, "limited", n, Some(priority)).await;
        until(&engine, id, |e| e.tasks[0].blocked_by.is_some()).await;
        ids.push(id);
    }
    gate.add_permits(1);
    all_completed(&engine, &ids).await;
    let order = started.lock().unwrap().clone();
    assert_eq!(order, [0, 3, 4, 1, 2], "9, then 5, then the oldest of 0");
    engine.shutdown().await;
}

#[tokio::test]
async fn registration_refuses_a_priority_above_nine() {
    let engine = engine();
    engine.register("noop", |_ctx| async { Ok::<_, TaskError>(json!(1)) });
    let mut def = JobDefinition::builder("loud")
        .task(TaskBuilder::new("a", "noop"))
        .build();
    def.priority = Some(10);
    let err = engine.register_definition(def).await.unwrap_err();
    assert!(err.to_string().contains("`priority` is 10"), "{err}");
}
