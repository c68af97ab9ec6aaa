//! Consuming task messages and status events.

use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use deadpool_lapin::lapin::types::FieldTable;
use deadpool_lapin::lapin::Acker;
use deadpool_lapin::lapin::{Channel, Consumer as LapinConsumer};
use futures_util::StreamExt;
use naxos_core::backend::{Acknowledger, Consumer, Delivery, EventSubscription};
use naxos_core::model::{StatusEvent, TaskRef};
use naxos_core::{async_trait, Result};

use crate::error::{amqp, pool, within};
use crate::version::{self, Seen, Version};
use crate::Shared;

/// How long a task message of a newer version is held before it is handed back: long enough
/// that the broker can offer it to other consumers (a node of the newer release) meanwhile,
/// and that the hand-backs which lead to its dead-lettering do not spin.
const HAND_BACK_PAUSE: Duration = Duration::from_millis(500);

/// A consumer on the task queue, on a channel of its own with `basic.qos` = prefetch.
#[derive(Debug)]
pub(crate) struct AmqpConsumer {
    channel: Channel,
    consumer: LapinConsumer,
    timeout: Duration,
    /// The newer versions already warned about.
    newer: Arc<Seen>,
}

impl AmqpConsumer {
    pub(crate) async fn start(shared: &Shared, prefetch: usize) -> Result<Self> {
        let connection = shared.pool.get().await.map_err(pool)?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        crate::declare(&channel, &shared.names).await?;
        let prefetch = u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp)?;
        let tag = format!("naxos-{}", uuid::Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                shared.names.tasks.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        Ok(Self {
            channel,
            consumer,
            timeout: shared.timeout,
            newer: shared.newer.clone(),
        })
    }

    /// Gives a task message of a newer version back to the queue, after [`HAND_BACK_PAUSE`]:
    /// a node of the newer release may take it. Each hand-back counts as a failed delivery, so
    /// if no node understands it, the queue's delivery limit dead-letters it (and the Store,
    /// which still holds the task QUEUED, has it published again later). It is a
    /// `basic.reject` with requeue, not a `basic.nack`: from RabbitMQ 4.3 on, only a reject
    /// counts towards a quorum queue's delivery limit (before, every return did).
    fn hand_back(&self, acker: Acker, version: u64) {
        if self.newer.first(version) {
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
        // Closing the channel hands every unacknowledged delivery back to the queue.
        let channel = self.channel.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = channel.close(200, "consumer dropped".into()).await;
            });
        }
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        loop {
            let Some(delivery) = self.consumer.next().await else {
                return Ok(None);
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
                Ok(task) => {
                    let ack = AmqpAck {
                        acker: Some(delivery.acker),
                        timeout: self.timeout,
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

/// Settles one delivery; dropped unsettled, it puts the message back (nack with requeue).
#[derive(Debug)]
struct AmqpAck {
    acker: Option<Acker>,
    timeout: Duration,
}

#[async_trait]
impl Acknowledger for AmqpAck {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        match self.acker.take() {
            Some(acker) => {
                let ack = async { acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(amqp) };
                within(self.timeout, "an ack", ack).await
            }
            None => Ok(()),
        }
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<()> {
        match self.acker.take() {
            Some(acker) => {
                let options = BasicNackOptions {
                    requeue,
                    multiple: false,
                };
                let nack = async { acker.nack(options).await.map(|_| ()).map_err(amqp) };
                within(self.timeout, "a nack", nack).await
            }
            None => Ok(()),
        }
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
        let channel = self.channel.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = channel.close(200, "subscription dropped".into()).await;
            });
        }
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
