//! A `wait_for` caller selects its execution's events from the broker only once it has waited a
//! little: an execution that ends on this node sooner is heard from the node's own events, and
//! costs the broker no binding; a longer one is selected, and deselected when the wait ends.
//! Simulated time (the runtime's paused clock), so the "little" is exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fast_config;
use common::queue::TestQueue;
use naxos_core::memory::MemoryStore;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Clock, Engine, EngineConfig, ExecutionStatus};

#[tokio::test(start_paused = true)]
async fn a_waiter_selects_its_execution_only_once_it_has_waited_a_little() {
    let clock = Clock::tokio();
    let queue = Arc::new(TestQueue::selecting());
    let selections = queue.selections.clone().unwrap();
    let engine = Engine::builder()
        .store(Arc::new(MemoryStore::with_clock(clock.clone())))
        .queue(queue.clone())
        .config(EngineConfig { clock, ..fast_config() })
        .build()
        .unwrap();
    engine.register("quick", |_ctx| async { Ok(json!(1)) });
    engine.register("slow", |_ctx| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(json!(2))
    });
    for (id, function) in [("quick", "quick"), ("slow", "slow")] {
        let job = JobDefinition::builder(id).task(TaskBuilder::new("a", function)).build();
        engine.register_definition(job).await.unwrap();
    }
    engine.start().unwrap();

    // A long execution: selected while it runs (its end could come from another node)...
    let slow = engine.execute("slow", json!({})).await.unwrap().execution_id;
    let done = engine.wait_for(slow).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(selections.of(slow), ["select"]);
    // ... and deselected once nobody waits (the binder does it in the background).
    for _ in 0..100 {
        if selections.of(slow).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(selections.of(slow), ["select", "deselect"]);

    // A quick one, with the subscription in place: heard here, never selected.
    let quick = engine.execute("quick", json!({})).await.unwrap().execution_id;
    let done = engine.wait_for(quick).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(selections.of(quick).is_empty(), "{:?}", selections.of(quick));
    engine.shutdown().await;
}
