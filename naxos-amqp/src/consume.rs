//! Consuming task messages and status events.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use deadpool_lapin::lapin::message::Delivery as LapinDelivery;
use deadpool_lapin::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use deadpool_lapin::lapin::types::FieldTable;
use deadpool_lapin::lapin::Acker;
use deadpool_lapin::lapin::{Channel, Consumer as LapinConsumer, Result as LapinResult};
use futures_util::StreamExt;
use naxos_core::backend::{Acknowledger, Consumer, Delivery, EventSubscription};
use naxos_core::model::{Priority, StatusEvent, TaskRef};
use naxos_core::{async_trait, Result};

use crate::error::{amqp, pool, within};
use crate::trace;
use crate::version::{self, Version};
use crate::Shared;

/// How long a task message of a newer version is held before it is handed back: long enough
/// that the broker can offer it to other consumers (a node of the newer release) meanwhile,
/// and that the hand-backs which lead to its dead-lettering do not spin.
const HAND_BACK_PAUSE: Duration = Duration::from_millis(500);

/// How long a task consumer waits without a delivery before it subscribes afresh. A broker
/// that deletes a queue is meant to cancel its consumers, but it does not always say so (seen
/// with quorum queues deleted under a live consumer): such a consumer would wait forever on a
/// queue that is gone, or on the old incarnation of one declared again. Subscribing again
/// costs a channel and three round trips per idle period, and fails (so the node reconnects
/// and re-declares the topology) if the queue is gone.
const IDLE_RESUBSCRIBE: Duration = Duration::from_secs(5);

/// A consumer on the task queues, one per priority on a channel of its own with `basic.qos` =
/// prefetch (which counts per consumer: see the crate docs).
#[derive(Debug)]
pub(crate) struct AmqpConsumer {
    channel: Channel,
    /// A consumer per priority, the lowest first.
    consumers: Vec<LapinConsumer>,
    shared: Arc<Shared>,
    prefetch: u16,
}

impl AmqpConsumer {
    pub(crate) async fn start(shared: &Arc<Shared>, prefetch: usize) -> Result<Self> {
        let prefetch = u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX);
        let (channel, consumers) = subscribe(shared, prefetch, true).await?;
        Ok(Self {
            channel,
            consumers,
            shared: shared.clone(),
            prefetch,
        })
    }

    /// Subscribes again on a fresh channel, and closes the old one. (On the old channel, a
    /// broker may still route the new subscription to the queue's previous incarnation.) Its
    /// deliveries not yet settled go back to the queue; after an idle period there are none
    /// but those whose claim is still running, and a claim is fenced: the task runs once.
    /// See [`IDLE_RESUBSCRIBE`].
    async fn resubscribe(&mut self) -> Result<()> {
        let (channel, consumers) = subscribe(&self.shared, self.prefetch, false).await?;
        let old = std::mem::replace(&mut self.channel, channel);
        self.consumers = consumers;
        close_in_background(old, "consumer subscribed again");
        tracing::trace!(queue = %self.shared.names.tasks, "idle consumer subscribed again");
        Ok(())
    }

    /// The next delivery from the highest priority that has one: what the broker has already
    /// pushed to a lower priority's consumer waits (unacknowledged, in this node's prefetch)
    /// until no higher one has any. `None` when one of the consumers was cancelled.
    async fn next_by_priority(&mut self) -> Option<(Priority, LapinResult<LapinDelivery>)> {
        std::future::poll_fn(|cx| {
            // Every pending consumer registers the waker, so a delivery to any level wakes this.
            for (level, consumer) in Priority::highest_first().zip(self.consumers.iter_mut().rev()) {
                if let Poll::Ready(item) = consumer.poll_next_unpin(cx) {
                    return Poll::Ready(item.map(|delivery| (level, delivery)));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Gives a task message of a newer version back to the queue, after [`HAND_BACK_PAUSE`]:
    /// a node of the newer release may take it. Each hand-back counts as a failed delivery, so
    /// if no node understands it, the queue's delivery limit dead-letters it (and the Store,
    /// which still holds the task QUEUED, has it published again later). It is a
    /// `basic.reject` with requeue, not a `basic.nack`: from RabbitMQ 4.3 on, only a reject
    /// counts towards a quorum queue's delivery limit (before, every return did).
    fn hand_back(&self, acker: Acker, version: u64) {
        if self.shared.newer.first(version) {
            tracing::warn!(
                version,
                known = TaskRef::VERSION,
                "a task message of version {version} came, newer than this naxos knows (up to {}): \
                 it is handed back for a node of the newer release; upgrade this node",
                TaskRef::VERSION
            );
        } else {
            tracing::debug!(version, "a task message of a newer version handed back");
        }
        tokio::spawn(async move {
            tokio::time::sleep(HAND_BACK_PAUSE).await;
            // On failure the channel is gone, and the broker has requeued it already.
            let _ = acker.reject(BasicRejectOptions { requeue: true }).await;
        });
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        close_in_background(self.channel.clone(), "consumer dropped");
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        loop {
            let (priority, delivery) = match tokio::time::timeout(IDLE_RESUBSCRIBE, self.next_by_priority()).await {
                Ok(Some(delivery)) => delivery,
                Ok(None) => return Ok(None),
                Err(_idle) => {
                    self.resubscribe().await?;
                    continue;
                }
            };
            let delivery = delivery.map_err(amqp)?;
            match version::read(&delivery.properties, TaskRef::VERSION) {
                Version::Known => {}
                Version::Newer(v) => {
                    self.hand_back(delivery.acker, v);
                    continue;
                }
                Version::Invalid => {
                    tracing::warn!(
                        header = version::HEADER,
                        "a task message with an invalid version header dead-lettered"
                    );
                    let reject = BasicNackOptions {
                        requeue: false,
                        multiple: false,
                    };
                    delivery.acker.nack(reject).await.map_err(amqp)?;
                    continue;
                }
            }
            match serde_json::from_slice::<TaskRef>(&delivery.data) {
                Ok(mut task) => {
                    task.traceparent = trace::read(&delivery.properties, &task);
                    task.priority = priority;
                    let ack = AmqpAck {
                        acker: Some(delivery.acker),
                        timeout: self.shared.timeout,
                    };
                    return Ok(Some(Delivery::new(task, delivery.redelivered, Box::new(ack))));
                }
                Err(e) => {
                    // Poison: not a task message. Dead-letter it and carry on.
                    tracing::warn!(error = %e, bytes = delivery.data.len(), "undecodable task message dead-lettered");
                    let reject = BasicNackOptions {
                        requeue: false,
                        multiple: false,
                    };
                    delivery.acker.nack(reject).await.map_err(amqp)?;
                }
            }
        }
    }
}

/// Opens a channel with `basic.qos` = `prefetch` (declaring the topology first if `declare`),
/// and starts a consumer on each priority's task queue there (the lowest first), within the
/// queue's timeout.
async fn subscribe(shared: &Shared, prefetch: u16, declare: bool) -> Result<(Channel, Vec<LapinConsumer>)> {
    let open = async {
        let connection = shared.pool.get().await.map_err(pool)?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        if declare {
            crate::declare(&channel, &shared.names).await?;
        }
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp)?;
        let tag = uuid::Uuid::new_v4().simple();
        let mut consumers = Vec::with_capacity(Priority::LEVELS);
        for (level, queue) in shared.names.task_queues.iter().enumerate() {
            let tag = format!("naxos-{tag}-p{level}");
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(amqp)?;
            consumers.push(consumer);
        }
        Ok((channel, consumers))
    };
    within(shared.timeout, "a subscribe", open).await
}

/// Closes `channel` off the caller's path: its unsettled deliveries go back to the queue.
fn close_in_background(channel: Channel, why: &'static str) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _ = channel.close(200, why.into()).await;
        });
    }
}

/// Settles one delivery; dropped unsettled, it puts the message back (nack with requeue).
#[derive(Debug)]
struct AmqpAck {
    acker: Option<Acker>,
    timeout: Duration,
}

impl AmqpAck {
    /// Runs `settle` on the acker (once), within the timeout.
    async fn settle<F, Fut, T>(mut self: Box<Self>, what: &str, settle: F) -> Result<()>
    where
        F: FnOnce(Acker) -> Fut + Send,
        Fut: Future<Output = deadpool_lapin::lapin::Result<T>> + Send,
    {
        match self.acker.take() {
            Some(acker) => {
                within(self.timeout, what, async {
                    settle(acker).await.map(|_| ()).map_err(amqp)
                })
                .await
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Acknowledger for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.settle("an ack", |a| async move { a.ack(BasicAckOptions::default()).await })
            .await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<()> {
        let options = BasicNackOptions {
            requeue,
            multiple: false,
        };
        self.settle("a nack", |a| async move { a.nack(options).await }).await
    }

    /// A `basic.reject` with requeue: from RabbitMQ 4.3 on, only a reject counts towards a
    /// quorum queue's delivery limit (a nack does not).
    async fn hand_back(self: Box<Self>) -> Result<()> {
        let options = BasicRejectOptions { requeue: true };
        self.settle("a reject", |a| async move { a.reject(options).await })
            .await
    }
}

impl Drop for AmqpAck {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let requeue = BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    };
                    let _ = acker.nack(requeue).await;
                });
            }
        }
    }
}

/// Status events through a queue of this subscriber's own (exclusive, deleted when it goes),
/// bound to every routing key of the events exchange, or (selected) to none at first.
#[derive(Debug)]
pub(crate) struct AmqpSubscription {
    channel: Channel,
    consumer: LapinConsumer,
}

impl AmqpSubscription {
    /// A subscription to every event.
    pub(crate) async fn start(shared: &Shared) -> Result<Self> {
        Ok(Self::open(shared, true).await?.0)
    }

    /// A subscription to the executions its selector binds, with that selector.
    pub(crate) async fn start_selected(shared: &Shared) -> Result<(Self, crate::select::AmqpSelector)> {
        let (subscription, queue) = Self::open(shared, false).await?;
        let selector = crate::select::AmqpSelector::new(
            subscription.channel.clone(),
            queue,
            shared.names.events.clone(),
            shared.timeout,
        );
        Ok((subscription, selector))
    }

    /// Opens the subscription's queue (bound to every event when `all`) and its consumer;
    /// returns the queue's name too.
    async fn open(shared: &Shared, all: bool) -> Result<(Self, String)> {
        let connection = shared.pool.get().await.map_err(pool)?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        crate::declare(&channel, &shared.names).await?;
        let own = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare("".into(), own, FieldTable::default())
            .await
            .map_err(amqp)?;
        if all {
            channel
                .queue_bind(
                    queue.name().clone(),
                    shared.names.events.as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(amqp)?;
        }
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let consumer = channel
            .basic_consume(queue.name().clone(), "".into(), no_ack, FieldTable::default())
            .await
            .map_err(amqp)?;
        Ok((Self { channel, consumer }, queue.name().to_string()))
    }
}

impl Drop for AmqpSubscription {
    fn drop(&mut self) {
        close_in_background(self.channel.clone(), "subscription dropped");
    }
}

#[async_trait]
impl EventSubscription for AmqpSubscription {
    async fn next(&mut self) -> Result<Option<StatusEvent>> {
        loop {
            let Some(delivery) = self.consumer.next().await else {
                return Ok(None);
            };
            let delivery = delivery.map_err(amqp)?;
            match version::read(&delivery.properties, StatusEvent::VERSION) {
                Version::Known => {}
                Version::Newer(v) => {
                    tracing::debug!(version = v, "skipping a status event of a newer version");
                    continue;
                }
                Version::Invalid => {
                    tracing::debug!("skipping a status event with an invalid version header");
                    continue;
                }
            }
            match serde_json::from_slice::<StatusEvent>(&delivery.data) {
                Ok(event) => return Ok(Some(event)),
                Err(e) => tracing::debug!(error = %e, "skipping an undecodable status event"),
            }
        }
    }
}
