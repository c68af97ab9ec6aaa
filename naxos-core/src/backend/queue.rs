//! The `Queue` trait: task messages and status events between nodes, and its contract.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{StatusEvent, TaskRef};
use crate::Result;

/// Moves task messages between nodes, and publishes status events.
///
/// # Contract
///
/// - [`publish`](Queue::publish) returns once the messages are durable in the broker
///   (publisher confirms); an error means some may not be, and the caller may publish again.
///   Duplicates are harmless: the Store's guarded claim drops them.
/// - Delivery is at-least-once. A delivery neither acked nor nacked when its consumer goes
///   away (dropped, connection lost, process killed) is delivered again, possibly to another
///   consumer, marked `redelivered`.
/// - A consumer holds at most `prefetch` unacknowledged deliveries.
/// - [`publish_delayed`](Queue::publish_delayed) delivers a message no earlier than its delay;
///   a short delay is not held up behind a longer one.
/// - Of the messages waiting, a consumer receives those of a higher [`TaskRef::priority`]
///   first (within a priority, the oldest first), so that under a backlog a high-priority
///   execution's tasks overtake the ones already queued. Across a cluster that is as good as
///   each node's view: a node may still start up to what it holds (its prefetch) of lower
///   priorities before a higher one reaches it. The priority travels beside the body like the
///   trace context and comes back on the delivered reference.
/// - A message carries its [`TaskRef::traceparent`] beside the body (the body's JSON stays
///   `{"executionId","taskId","attempt"}`), so that tools watching the broker see the trace;
///   the delivered reference has it back. (The worker does not depend on it: its claim returns
///   the execution's.)
/// - Events are best-effort notifications in commit order per publisher; subscribers that
///   fall behind may miss some and must re-read the Store.
#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// Publishes task messages and waits until the broker has them.
    async fn publish(&self, tasks: &[TaskRef]) -> Result<()>;

    /// Publishes a task message to be delivered after `delay`.
    async fn publish_delayed(&self, task: &TaskRef, delay: Duration) -> Result<()>;

    /// Starts a consumer with at most `prefetch` unacknowledged deliveries.
    async fn consume(&self, prefetch: usize) -> Result<Box<dyn Consumer>>;

    /// Publishes status events (after the Store committed them).
    async fn publish_events(&self, events: &[StatusEvent]) -> Result<()>;

    /// Subscribes to every status event published from now on, from any node.
    async fn subscribe_events(&self) -> Result<Box<dyn EventSubscription>>;

    /// Subscribes to the events of the executions chosen through the returned selector (none at
    /// first), for a node that watches a few executions of a busy cluster and should not receive
    /// all of its events. `None` (the default) where the backend cannot route events that way:
    /// the caller then uses [`subscribe_events`](Queue::subscribe_events) and filters.
    async fn subscribe_selected_events(&self) -> Result<Option<SelectedEvents>> {
        Ok(None)
    }

    /// Checks that the broker answers.
    async fn ping(&self) -> Result<()>;

    /// Messages the Queue gave up on (undecodable, or delivered too many times) and keeps for
    /// an operator to inspect or replay, where it keeps them; `None` where it does not. The
    /// default is `None`.
    async fn dead_letters(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// A stream of deliveries from [`Queue::consume`].
#[async_trait]
pub trait Consumer: Send + Debug {
    /// The next delivery; `Ok(None)` when the consumer is closed for good. An error means the
    /// connection failed: its unacknowledged deliveries return to the queue, and the caller
    /// should start a new consumer after a backoff.
    async fn next(&mut self) -> Result<Option<Delivery>>;
}

/// One delivered task message. Acknowledge it with [`Delivery::ack`] or give it back with
/// [`Delivery::nack`]; dropping it unacknowledged gives it back too.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub task: TaskRef,
    /// True when the message was delivered before and not acknowledged.
    pub redelivered: bool,
    acknowledger: Box<dyn Acknowledger>,
}

impl Delivery {
    /// A delivery whose ack and nack go to `acknowledger` (for backend implementors).
    pub fn new(task: TaskRef, redelivered: bool, acknowledger: Box<dyn Acknowledger>) -> Self {
        Self {
            task,
            redelivered,
            acknowledger,
        }
    }

    /// The task, the redelivered flag and the acknowledger (for a Queue that wraps another).
    pub fn into_parts(self) -> (TaskRef, bool, Box<dyn Acknowledger>) {
        (self.task, self.redelivered, self.acknowledger)
    }

    /// Removes the message from the queue for good.
    pub async fn ack(self) -> Result<()> {
        self.acknowledger.ack().await
    }

    /// Gives the message back (`requeue`) or drops it (dead-letters where the broker can).
    pub async fn nack(self, requeue: bool) -> Result<()> {
        self.acknowledger.nack(requeue).await
    }

    /// Gives the message back for another consumer, counting as a delivery this one could
    /// not handle (see [`Acknowledger::hand_back`]).
    pub async fn hand_back(self) -> Result<()> {
        self.acknowledger.hand_back().await
    }
}

/// A backend's handle for settling one delivery.
#[async_trait]
pub trait Acknowledger: Send + Sync + Debug {
    /// Acknowledges the delivery.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// Rejects the delivery, requeueing it or not.
    async fn nack(self: Box<Self>, requeue: bool) -> Result<()>;
    /// Gives the delivery back to the queue for another consumer, as a delivery that this one
    /// could not handle: where the queue counts such returns (RabbitMQ's delivery limit), it
    /// counts, so a message no consumer can handle ends in the dead letters instead of going
    /// round for ever. A plain requeue by default.
    async fn hand_back(self: Box<Self>) -> Result<()> {
        self.nack(true).await
    }
}

/// A subscription from [`Queue::subscribe_selected_events`] and the handle that chooses what it
/// receives.
#[derive(Debug)]
pub struct SelectedEvents {
    /// The events of the selected executions.
    pub subscription: Box<dyn EventSubscription>,
    /// Chooses the executions.
    pub selector: std::sync::Arc<dyn EventSelector>,
}

/// Chooses which executions' events a [`SelectedEvents`] subscription receives.
#[async_trait]
pub trait EventSelector: Send + Sync + Debug {
    /// Delivers execution `id`'s events from when this returns.
    async fn select(&self, id: crate::model::ExecutionId) -> Result<()>;
    /// Stops delivering execution `id`'s events (some already under way may still arrive).
    async fn deselect(&self, id: crate::model::ExecutionId) -> Result<()>;
}

/// A stream of status events from [`Queue::subscribe_events`].
#[async_trait]
pub trait EventSubscription: Send + Debug {
    /// The next event; `Ok(None)` when the subscription ended. Events missed because the
    /// subscriber fell behind are skipped silently.
    async fn next(&mut self) -> Result<Option<StatusEvent>>;
}
