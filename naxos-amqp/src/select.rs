//! Choosing which executions' events a subscription receives: one binding of its queue to the
//! events exchange per watched execution, `*.<executionId>.*` (routing keys are
//! `<definitionId>.<executionId>.<status>`, a dot in a definition id written `%2E`).

use std::time::Duration;

use deadpool_lapin::lapin::options::QueueBindOptions;
use deadpool_lapin::lapin::types::FieldTable;
use deadpool_lapin::lapin::Channel;
use naxos_core::backend::EventSelector;
use naxos_core::model::ExecutionId;
use naxos_core::{async_trait, Result};

use crate::error::{amqp, within};

/// Binds and unbinds one subscription's queue, on the subscription's channel.
#[derive(Debug)]
pub(crate) struct AmqpSelector {
    channel: Channel,
    queue: String,
    exchange: String,
    timeout: Duration,
}

impl AmqpSelector {
    pub(crate) fn new(channel: Channel, queue: String, exchange: String, timeout: Duration) -> Self {
        Self {
            channel,
            queue,
            exchange,
            timeout,
        }
    }
}

fn routing_key(id: ExecutionId) -> String {
    format!("*.{id}.*")
}

#[async_trait]
impl EventSelector for AmqpSelector {
    async fn select(&self, id: ExecutionId) -> Result<()> {
        let bind = self.channel.queue_bind(
            self.queue.as_str().into(),
            self.exchange.as_str().into(),
            routing_key(id).as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        within(self.timeout, "a binding", async { bind.await.map_err(amqp) }).await
    }

    async fn deselect(&self, id: ExecutionId) -> Result<()> {
        let unbind = self.channel.queue_unbind(
            self.queue.as_str().into(),
            self.exchange.as_str().into(),
            routing_key(id).as_str().into(),
            FieldTable::default(),
        );
        within(self.timeout, "an unbinding", async { unbind.await.map_err(amqp) }).await
    }
}
