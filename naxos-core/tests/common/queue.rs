//! The in-memory queue as the engine tests watch it: it counts the task messages published and
//! the event subscriptions opened, can hold event publishing back (a broker slow to take
//! events), and — when made with [`TestQueue::selecting`] — offers a selected event subscription
//! whose selections it records (it delivers every event, in truth).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use naxos_core::backend::{Consumer, EventSelector, EventSubscription, Queue, SelectedEvents};
use naxos_core::memory::MemoryQueue;
use naxos_core::model::{ExecutionId, StatusEvent, TaskRef};
use naxos_core::{async_trait, Result};

/// See the module docs.
#[derive(Debug, Default)]
pub struct TestQueue {
    inner: MemoryQueue,
    /// Task messages published, delayed ones included.
    pub published: AtomicUsize,
    /// Event subscriptions opened.
    pub subscriptions: AtomicUsize,
    /// While set, event publishing waits for [`released`](Self::released).
    pub stuck: AtomicBool,
    /// Lets held event publishing go on (`notify_waiters`).
    pub released: tokio::sync::Notify,
    /// Set: the queue offers a selected subscription, recording here.
    pub selections: Option<Arc<Selections>>,
}

impl TestQueue {
    /// A queue that offers a selected event subscription.
    pub fn selecting() -> Self {
        Self {
            selections: Some(Arc::default()),
            ..Self::default()
        }
    }

    /// Task messages published so far.
    pub fn published(&self) -> usize {
        self.published.load(Ordering::SeqCst)
    }
}

/// Every select and deselect, in order.
#[derive(Debug, Default)]
pub struct Selections(Mutex<Vec<(&'static str, ExecutionId)>>);

impl Selections {
    /// What was done to execution `id`'s selection, in order.
    pub fn of(&self, id: ExecutionId) -> Vec<&'static str> {
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

#[async_trait]
impl Queue for TestQueue {
    async fn publish(&self, tasks: &[TaskRef]) -> Result<()> {
        self.published.fetch_add(tasks.len(), Ordering::SeqCst);
        self.inner.publish(tasks).await
    }
    async fn publish_delayed(&self, task: &TaskRef, delay: Duration) -> Result<()> {
        self.published.fetch_add(1, Ordering::SeqCst);
        self.inner.publish_delayed(task, delay).await
    }
    async fn consume(&self, prefetch: usize) -> Result<Box<dyn Consumer>> {
        self.inner.consume(prefetch).await
    }
    async fn publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        if self.stuck.load(Ordering::SeqCst) {
            self.released.notified().await;
        }
        self.inner.publish_events(events).await
    }
    async fn subscribe_events(&self) -> Result<Box<dyn EventSubscription>> {
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        self.inner.subscribe_events().await
    }
    async fn subscribe_selected_events(&self) -> Result<Option<SelectedEvents>> {
        let Some(selections) = &self.selections else {
            return Ok(None);
        };
        Ok(Some(SelectedEvents {
            subscription: self.subscribe_events().await?,
            selector: selections.clone(),
        }))
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
