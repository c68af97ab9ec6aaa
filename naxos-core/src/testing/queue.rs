//! The Queue as one node sees it: its messages may be lost or doubled, and nothing more passes
//! once the node died.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::fault::Fault;
use super::node::Node;
use crate::backend::{Acknowledger, Consumer, Delivery, EventSubscription, Queue, SelectedEvents};
use crate::model::{StatusEvent, TaskRef};
use crate::Result;

#[derive(Debug)]
pub(crate) struct FaultyQueue {
    pub(crate) inner: Arc<dyn Queue>,
    pub(crate) node: Arc<Node>,
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn publish(&self, tasks: &[TaskRef]) -> Result<()> {
        self.node.alive().await;
        let mut sent = Vec::with_capacity(tasks.len());
        for task in tasks {
            if self.node.fire(&Fault::LoseMessage(task.task_id.clone())) {
                continue;
            }
            sent.push(task.clone());
            if self.node.fire(&Fault::DuplicateMessage(task.task_id.clone())) {
                sent.push(task.clone());
            }
        }
        self.inner.publish(&sent).await
    }

    async fn publish_delayed(&self, task: &TaskRef, delay: Duration) -> Result<()> {
        self.node.alive().await;
        self.inner.publish_delayed(task, delay).await
    }

    async fn consume(&self, prefetch: usize) -> Result<Box<dyn Consumer>> {
        self.node.alive().await;
        let inner = self.inner.consume(prefetch).await?;
        Ok(Box::new(FaultyConsumer {
            inner,
            node: self.node.clone(),
        }))
    }

    async fn publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        self.node.alive().await;
        self.inner.publish_events(events).await
    }

    async fn subscribe_events(&self) -> Result<Box<dyn EventSubscription>> {
        self.inner.subscribe_events().await
    }

    async fn subscribe_selected_events(&self) -> Result<Option<SelectedEvents>> {
        self.inner.subscribe_selected_events().await
    }

    async fn ping(&self) -> Result<()> {
        self.node.alive().await;
        self.inner.ping().await
    }

    async fn dead_letters(&self) -> Result<Option<u64>> {
        self.inner.dead_letters().await
    }
}

#[derive(Debug)]
struct FaultyConsumer {
    inner: Box<dyn Consumer>,
    node: Arc<Node>,
}

#[async_trait]
impl Consumer for FaultyConsumer {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        self.node.alive().await;
        let delivery = self.inner.next().await?;
        // A delivery to a dead node is never acknowledged: the queue takes it back when the
        // consumer goes, or the stale-publish recovery sends it again.
        self.node.alive().await;
        Ok(delivery.map(|d| {
            let (task, redelivered, acknowledger) = d.into_parts();
            Delivery::new(
                task,
                redelivered,
                Box::new(FaultyAck {
                    inner: acknowledger,
                    node: self.node.clone(),
                }),
            )
        }))
    }
}

#[derive(Debug)]
struct FaultyAck {
    inner: Box<dyn Acknowledger>,
    node: Arc<Node>,
}

#[async_trait]
impl Acknowledger for FaultyAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.node.alive().await;
        self.inner.ack().await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<()> {
        self.node.alive().await;
        self.inner.nack(requeue).await
    }

    async fn hand_back(self: Box<Self>) -> Result<()> {
        self.node.alive().await;
        self.inner.hand_back().await
    }
}
