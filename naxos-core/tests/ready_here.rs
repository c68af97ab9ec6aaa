//! Ready tasks run where they became ready (`EngineConfig::run_ready_here`): a node with the
//! setting and a spare concurrency slot claims the tasks its submits and finishes made ready
//! without a queue message; what finds no spare slot is published; an API-only node, a node not
//! started yet and a node without the setting (the default) publish everything.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::queue::TestQueue;
use common::{diamond, fast_config, DEADLINE};
use naxos_core::backend::Store;
use naxos_core::memory::MemoryStore;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EngineConfig, ExecutionStatus};

/// An engine on `store` and `queue` running ready tasks here, with [`fast_config`] changed by
/// `config`; its `echo` function returns its task id and its upstream outputs.
fn node(store: &Arc<MemoryStore>, queue: &Arc<TestQueue>, config: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut c = EngineConfig {
        run_ready_here: true,
        ..fast_config()
    };
    config(&mut c);
    let engine = Engine::builder()
        .store(store.clone())
        .queue(queue.clone())
        .config(c)
        .build()
        .unwrap();
    engine.register("echo", |ctx| async move {
        let upstream: naxos_core::serde_json::Map<String, naxos_core::serde_json::Value> =
            ctx.upstream_all().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Ok(json!({"task": ctx.task_id(), "upstream": upstream}))
    });
    engine
}

fn backends() -> (Arc<MemoryStore>, Arc<TestQueue>) {
    (Arc::new(MemoryStore::new()), Arc::new(TestQueue::default()))
}

/// Every task's attempts, as the nodes that ran them.
async fn nodes_that_ran(store: &MemoryStore, id: naxos_core::ExecutionId) -> Vec<String> {
    let execution = store.get_execution(id).await.unwrap();
    execution
        .tasks
        .iter()
        .flat_map(|t| t.history.iter().map(|a| a.node.to_string()))
        .collect()
}

#[tokio::test]
async fn a_diamond_on_an_idle_node_runs_without_a_queue_message() {
    let (store, queue) = backends();
    let engine = node(&store, &queue, |c| c.node_id = "here".into());
    engine.register_definition(diamond("d", "echo")).await.unwrap();
    engine.start().unwrap();

    let run = engine.execute("d", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    // The join saw both branches' outputs: it ran after both, with what they returned.
    let d = done.tasks.iter().find(|t| t.task_id == "d").unwrap();
    let upstream = &d.output.as_ref().unwrap()["upstream"];
    assert_eq!(upstream["b"]["task"], "b", "{upstream}");
    assert_eq!(upstream["c"]["task"], "c", "{upstream}");
    assert_eq!(queue.published(), 0, "every task ran where it became ready");
    let ran = nodes_that_ran(&store, run.execution_id).await;
    assert_eq!(ran, vec!["here"; 4], "one attempt a task, all on this node");
    engine.shutdown().await;
}

#[tokio::test]
async fn by_default_every_task_goes_through_the_queue() {
    let (store, queue) = backends();
    let engine = node(&store, &queue, |c| {
        c.run_ready_here = EngineConfig::default().run_ready_here
    });
    engine.register_definition(diamond("d", "echo")).await.unwrap();
    engine.start().unwrap();

    let run = engine.execute("d", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(queue.published(), 4, "one message a task");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_node_without_a_spare_slot_publishes_the_rest_and_never_runs_more_than_its_slots() {
    const SLOTS: usize = 2;
    const WIDE: usize = 6;
    let (store, queue) = backends();
    let engine = node(&store, &queue, |c| c.concurrency = SLOTS);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    engine.register("slow", move |_ctx| {
        let (running, most) = (r.clone(), m.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(json!(null))
        }
    });
    // One root releasing WIDE tasks at once: more than the node's slots.
    let mut job = JobDefinition::builder("wide").task(TaskBuilder::new("root", "slow"));
    for i in 0..WIDE {
        job = job.task(TaskBuilder::new(format!("t{i}"), "slow").after(["root"]));
    }
    engine.register_definition(job.build()).await.unwrap();
    engine.start().unwrap();

    let run = engine.execute("wide", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let published = queue.published();
    assert!(
        (WIDE - SLOTS..WIDE).contains(&published),
        "{published} of {WIDE} released tasks published: at most {SLOTS} could run here at once"
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        SLOTS,
        "the slots were all used, never exceeded"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn an_api_node_and_a_node_not_started_publish_what_they_submit() {
    let (store, queue) = backends();
    let api = node(&store, &queue, |c| {
        c.node_id = "api".into();
        c.workers = false;
    });
    api.register_definition(diamond("d", "echo")).await.unwrap();
    api.start().unwrap();
    let worker = node(&store, &queue, |c| c.node_id = "worker".into());

    // Submitted to a worker node not started yet: its root waits in the queue, not run.
    let early = worker.execute("d", json!({})).await.unwrap();
    assert_eq!(queue.published(), 1, "the root is published");
    let run = api.execute("d", json!({})).await.unwrap();
    assert_eq!(queue.published(), 2, "the api node publishes its roots");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.get_execution(early.execution_id).await.unwrap().status,
        ExecutionStatus::Pending,
        "nothing runs on a node before it starts"
    );

    worker.start().unwrap();
    for id in [early.execution_id, run.execution_id] {
        let done = api.wait_for_timeout(id, DEADLINE).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
        let ran = nodes_that_ran(&store, id).await;
        assert_eq!(ran, vec!["worker"; 4], "the worker ran every task, the api node none");
    }
    api.shutdown().await;
    worker.shutdown().await;
}
