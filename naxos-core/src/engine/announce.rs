//! Status events leave a node through one background publisher, in the order their
//! transitions committed here: a slow broker delays the events, never the tasks.
//!
//! A transition whose ready tasks are about to be published waits until its own events are
//! out (so whatever those tasks cause is announced after its cause, on any node); a claim does
//! not wait (its task starts at once, and its RUNNING event still goes out before anything the
//! task does next, since events leave in order). With nothing queued, a waiting transition
//! publishes its events itself, without the hop through the publisher.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::events::EventHub;
use crate::backend::Queue;
use crate::model::StatusEvent;

/// Batches of events waiting for the broker, at most.
const BACKLOG: usize = 4_096;
/// How long a shutdown waits for the last events to leave.
const FLUSH: Duration = Duration::from_secs(5);

/// One batch of events, and who waits for it to be sent.
struct Batch {
    events: Vec<StatusEvent>,
    sent: Option<oneshot::Sender<()>>,
}

/// The node's event publisher, started on first use.
#[derive(Debug)]
pub(crate) struct Announcer {
    queue: Arc<dyn Queue>,
    hub: Arc<EventHub>,
    tx: OnceLock<mpsc::Sender<Batch>>,
    /// Batches queued and not yet sent.
    pending: Arc<AtomicUsize>,
}

impl Announcer {
    pub(crate) fn new(queue: Arc<dyn Queue>, hub: Arc<EventHub>) -> Self {
        Self {
            queue,
            hub,
            tx: OnceLock::new(),
            pending: Arc::default(),
        }
    }

    fn sender(&self) -> &mpsc::Sender<Batch> {
        self.tx.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Batch>(BACKLOG);
            let (queue, hub, pending) = (self.queue.clone(), self.hub.clone(), self.pending.clone());
            tokio::spawn(async move {
                while let Some(batch) = rx.recv().await {
                    publish(&*queue, &hub, &batch.events).await;
                    pending.fetch_sub(1, Ordering::AcqRel);
                    if let Some(sent) = batch.sent {
                        let _ = sent.send(());
                    }
                }
            });
            tx
        })
    }

    /// Queues `events` for publishing and returns at once. When too many wait already, they are
    /// dropped (events are notifications; watchers on this node still get them).
    pub(crate) fn announce(&self, events: Vec<StatusEvent>) {
        if events.is_empty() {
            return;
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.sender().try_send(Batch { events, sent: None }) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("the event backlog is full; events dropped");
            let (mpsc::error::TrySendError::Full(batch) | mpsc::error::TrySendError::Closed(batch)) = e;
            self.hub.observe(&batch.events, false);
        }
    }

    /// Publishes `events` after every batch queued before them, and returns once they are out.
    pub(crate) async fn announce_and_wait(&self, events: Vec<StatusEvent>) {
        if self.pending.load(Ordering::Acquire) == 0 {
            publish(&*self.queue, &self.hub, &events).await;
            return;
        }
        let (sent, done) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::AcqRel);
        let batch = Batch {
            events,
            sent: Some(sent),
        };
        if self.sender().send(batch).await.is_ok() {
            let _ = done.await;
        } else {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits (at most a few seconds) for every queued event to leave.
    pub(crate) async fn flush(&self) {
        if self.pending.load(Ordering::Acquire) > 0 {
            let _ = tokio::time::timeout(FLUSH, self.announce_and_wait(Vec::new())).await;
        }
    }
}

/// Publishes a batch; what the Queue could not carry still reaches this node's watchers.
async fn publish(queue: &dyn Queue, hub: &EventHub, events: &[StatusEvent]) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = queue.publish_events(events).await {
        tracing::debug!(error = %e, "status events not published");
        hub.observe(events, false);
    }
}
