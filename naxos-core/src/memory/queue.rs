//! The in-memory `Queue`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};

use crate::backend::{Acknowledger, Consumer, Delivery, EventSubscription, Queue};
use crate::model::{Priority, StatusEvent, TaskRef};
use crate::sync::lock;
use crate::{Error, Result};

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 4_096;

/// A [`Queue`] in process memory, with the same delivery rules as a broker: at-least-once,
/// prefetch-bounded consumers, redelivery of whatever a dropped consumer had not acknowledged,
/// and delayed publishing on timers (no head-of-line blocking). Messages of a higher
/// [`Priority`] are delivered first; within a priority, in the order they were published.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ready: Mutex<Levels>,
    available: Notify,
    events: broadcast::Sender<StatusEvent>,
}

/// The messages waiting for a consumer: a line per priority level, each first in, first out.
#[derive(Debug, Default)]
struct Levels {
    lines: [VecDeque<(TaskRef, bool)>; Priority::LEVELS],
    len: usize,
}

impl Shared {
    fn push(&self, task: TaskRef, redelivered: bool) {
        let mut ready = lock(&self.ready);
        ready.lines[task.priority.index()].push_back((task, redelivered));
        ready.len += 1;
        drop(ready);
        self.available.notify_one();
    }

    /// The oldest message of the highest priority waiting.
    fn pop(&self) -> Option<(TaskRef, bool)> {
        let mut ready = lock(&self.ready);
        if ready.len == 0 {
            return None;
        }
        let next = ready.lines.iter_mut().rev().find_map(VecDeque::pop_front);
        ready.len -= usize::from(next.is_some());
        next
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                ready: Mutex::default(),
                available: Notify::new(),
                events: broadcast::channel(EVENT_BUFFER).0,
            }),
        }
    }

    /// Messages waiting for a consumer.
    pub fn len(&self) -> usize {
        lock(&self.shared.ready).len
    }

    /// True when no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, tasks: &[TaskRef]) -> Result<()> {
        for t in tasks {
            self.shared.push(t.clone(), false);
        }
        Ok(())
    }

    async fn publish_delayed(&self, task: &TaskRef, delay: Duration) -> Result<()> {
        let shared = self.shared.clone();
        let task = task.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            shared.push(task, false);
        });
        Ok(())
    }

    async fn consume(&self, prefetch: usize) -> Result<Box<dyn Consumer>> {
        if prefetch == 0 {
            return Err(Error::InvalidInput("prefetch must be at least 1".into()));
        }
        Ok(Box::new(MemoryConsumer {
            shared: self.shared.clone(),
            permits: Arc::new(Semaphore::new(prefetch)),
        }))
    }

    async fn publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        for e in events {
            // No subscriber is not an error: events are notifications.
            let _ = self.shared.events.send(e.clone());
        }
        Ok(())
    }

    async fn subscribe_events(&self) -> Result<Box<dyn EventSubscription>> {
        Ok(Box::new(MemorySubscription {
            receiver: self.shared.events.subscribe(),
        }))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct MemoryConsumer {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::conflict("consumer closed"))?;
        loop {
            if let Some((task, redelivered)) = self.shared.pop() {
                let ack = MemoryAck {
                    shared: self.shared.clone(),
                    task: Some(task.clone()),
                    _permit: permit,
                };
                return Ok(Some(Delivery::new(task, redelivered, Box::new(ack))));
            }
            self.shared.available.notified().await;
        }
    }
}

/// Settles one delivery; dropped unsettled, it puts the message back.
#[derive(Debug)]
struct MemoryAck {
    shared: Arc<Shared>,
    task: Option<TaskRef>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Acknowledger for MemoryAck {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.task = None;
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<()> {
        if let Some(task) = self.task.take() {
            if requeue {
                self.shared.push(task, true);
            }
        }
        Ok(())
    }
}

impl Drop for MemoryAck {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shared.push(task, true);
        }
    }
}

#[derive(Debug)]
struct MemorySubscription {
    receiver: broadcast::Receiver<StatusEvent>,
}

#[async_trait]
impl EventSubscription for MemorySubscription {
    async fn next(&mut self) -> Result<Option<StatusEvent>> {
        loop {
            match self.receiver.recv().await {
                Ok(e) => return Ok(Some(e)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}
