//! Publishing: task messages with publisher confirms, status events best-effort.

use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use deadpool_lapin::lapin::{BasicProperties, Channel, PublisherConfirm};
use deadpool_lapin::Pool;
use naxos_core::model::{StatusEvent, TaskRef};
use naxos_core::{Error, Result};
use tokio::sync::Mutex;

use crate::error::{amqp, pool, within};
use crate::{trace, version, Names};

/// One confirm-mode channel, reused, replaced when it breaks.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pool: Pool,
    names: Names,
    channel: Arc<Mutex<Option<Channel>>>,
    timeout: Duration,
}

impl Publisher {
    pub(crate) fn new(pool: Pool, names: Names, timeout: Duration) -> Self {
        Self {
            pool,
            names,
            channel: Arc::default(),
            timeout,
        }
    }

    async fn channel(&self) -> Result<Channel> {
        let mut slot = self.channel.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let connection = self.pool.get().await.map_err(pool)?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        crate::declare(&channel, &self.names).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp)?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    async fn forget(&self) {
        *self.channel.lock().await = None;
    }

    /// Publishes persistent task messages, each to its priority's queue (with its trace context
    /// in the `traceparent` header when it has one), and waits for the broker's confirms; on a failure, tries once more on
    /// a fresh channel.
    pub(crate) async fn publish_tasks(&self, tasks: &[TaskRef]) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let publish = || within(self.timeout, "a task publish", self.try_publish_tasks(tasks));
        match publish().await {
            Ok(()) => Ok(()),
            Err(first) => {
                tracing::debug!(error = %first, "publish failed; retrying on a fresh channel");
                self.forget().await;
                let second = publish().await;
                if second.is_err() {
                    self.forget().await;
                }
                second
            }
        }
    }

    async fn try_publish_tasks(&self, tasks: &[TaskRef]) -> Result<()> {
        let channel = self.channel().await?;
        let mut confirms = Vec::with_capacity(tasks.len());
        for task in tasks {
            let body = serde_json::to_vec(task).map_err(Error::permanent)?;
            let confirm = channel
                .basic_publish(
                    self.names.tasks.as_str().into(),
                    self.names.task_queue(task.priority).into(),
                    BasicPublishOptions::default(),
                    &body,
                    trace::mark(
                        version::mark(
                            BasicProperties::default()
                                .with_delivery_mode(2)
                                .with_content_type("application/json".into()),
                            TaskRef::VERSION,
                        ),
                        task.traceparent,
                    ),
                )
                .await
                .map_err(amqp)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = confirm.await.map_err(amqp)?;
            if confirmation.is_nack() {
                return Err(Error::transient(std::io::Error::other(
                    "the broker refused (nacked) a task message",
                )));
            }
        }
        Ok(())
    }

    /// Publishes status events to the topic exchange, without waiting for confirms: events are
    /// notifications, and the Store stays the truth. (Their confirms are still consumed, in the
    /// background: see [`settle_in_background`].)
    pub(crate) async fn publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        let sent = within(self.timeout, "an event publish", self.try_publish_events(events)).await;
        if sent.is_err() {
            self.forget().await;
        }
        sent
    }

    async fn try_publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        let channel = self.channel().await?;
        let mut confirms = Vec::with_capacity(events.len());
        let mut sent = Ok(());
        for event in events {
            let body = match serde_json::to_vec(event) {
                Ok(body) => body,
                Err(e) => {
                    sent = Err(Error::permanent(e));
                    break;
                }
            };
            let publish = channel
                .basic_publish(
                    self.names.events.as_str().into(),
                    event.routing_key().as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    version::mark(
                        BasicProperties::default().with_content_type("application/json".into()),
                        StatusEvent::VERSION,
                    ),
                )
                .await;
            match publish {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    sent = Err(amqp(e));
                    break;
                }
            }
        }
        settle_in_background(confirms, self.timeout);
        sent
    }
}

/// Awaits the broker's confirms of event messages off the caller's path, and discards them.
///
/// Events share the confirm-mode channel of the tasks (so that they leave in order with them),
/// and lapin never forgets the confirm of a publish on such a channel: a `PublisherConfirm`
/// dropped before the broker answered is kept, resolved or not, until someone calls
/// `Channel::wait_for_confirms` (nobody here) or the channel fails. On the long-lived publisher
/// channel that was ≈ 600 bytes held for good per event, ≈ 10 KB per diamond execution.
/// Awaited, a confirm is freed as soon as the broker acks it.
fn settle_in_background(confirms: Vec<PublisherConfirm>, timeout: Duration) {
    if confirms.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let all = async {
            for confirm in confirms {
                match confirm.await {
                    Ok(c) if c.is_nack() => tracing::debug!("the broker refused (nacked) a status event"),
                    Ok(_) => {}
                    // The channel failed: the publisher replaces it; these events are lost.
                    Err(e) => {
                        tracing::debug!(error = %e, "a status event was not confirmed");
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::debug!("status events not confirmed within {timeout:?}");
        }
    });
}
