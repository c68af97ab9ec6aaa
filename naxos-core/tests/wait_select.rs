//! A `wait_for` caller selects its execution's events from the broker only once it has waited a
//! little: an execution that ends on this node sooner is heard from the node's own events, and
//! costs the broker no binding; a longer one is selected, and deselected when the wait ends.
//! Simulated time (the runtime's paused clock), so the "little" is exact.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fast_config;
use naxos_core::backend::{Consumer, EventSelector, EventSubscription, Queue, SelectedEvents};
use naxos_core::memory::{MemoryQueue, MemoryStore};
use naxos_core::model::{ExecutionId, JobDefinition, StatusEvent, TaskBuilder, TaskRef};
use naxos_core::serde_json::json;
use naxos_core::{async_trait, Clock, Engine, EngineConfig, ExecutionStatus, Result};

/// Every select and deselect, in order.
#[derive(Debug, Default)]
struct Selections(Mutex<Vec<(&'static str, ExecutionId)>>);

impl Selections {
    fn of(&self, id: ExecutionId) -> Vec<&'static str> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|(_, e)| *e == id).map(|(what, _)| *what).collect()
    }
}

#[async_trait]
impl EventSelector for Selections {
    async fn select(&self, id: ExecutionId) -> Result<()> {
        self.0.lock().unwrap().push(("select", id));
        Ok(())
    }
    async fn deselect(&self, id: ExecutionId) -> Result<()> {
        self.0.lock().unwrap().push(("deselect", id));
        Ok(())
    }
}

/// The in-memory queue, offering a selected subscription (every event, in truth) whose
/// selections are recorded.
#[derive(Debug, Default)]
struct SelectingQueue {
    inner: MemoryQueue,
    selections: Arc<Selections>,
}

#[async_trait]
impl Queue for SelectingQueue {
    async fn publish(&self, tasks: &[TaskRef]) -> Result<()> {
        self.inner.publish(tasks).await
    }
    async fn publish_delayed(&self, task: &TaskRef, delay: Duration) -> Result<()> {
        self.inner.publish_delayed(task, delay).await
    }
    async fn consume(&self, prefetch: usize) -> Result<Box<dyn Consumer>> {
        self.inner.consume(prefetch).await
    }
    async fn publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        self.inner.publish_events(events).await
    }
    async fn subscribe_events(&self) -> Result<Box<dyn EventSubscription>> {
        self.inner.subscribe_events().await
    }
    async fn subscribe_selected_events(&self) -> Result<Option<SelectedEvents>> {
        Ok(Some(SelectedEvents {
            subscription: self.inner.subscribe_events().await?,
            selector: self.selections.clone(),
        }))
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_selects_its_execution_only_once_it_has_waited_a_little() {
    let clock = Clock::tokio();
    let queue = Arc::new(SelectingQueue::default());
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
    assert_eq!(queue.selections.of(slow), ["select"]);
    // ... and deselected once nobody waits (the binder does it in the background).
    for _ in 0..100 {
        if queue.selections.of(slow).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(queue.selections.of(slow), ["select", "deselect"]);

    // A quick one, with the subscription in place: heard here, never selected.
    let quick = engine.execute("quick", json!({})).await.unwrap().execution_id;
    let done = engine.wait_for(quick).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        queue.selections.of(quick).is_empty(),
        "{:?}",
        queue.selections.of(quick)
    );
    engine.shutdown().await;
}
