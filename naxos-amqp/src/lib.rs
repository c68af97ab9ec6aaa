//! # naxos-amqp
//!
//! [`AmqpQueue`]: the naxos [`Queue`] on RabbitMQ, through a
//! deadpool-lapin connection pool.
//!
//! **Wiring it.** Connect (which declares the topology below), and hand it to the engine
//! beside a Store that every node shares (`naxos-postgres`'s `PgStore` in a cluster); through
//! the facade with the `amqp` feature, this is `naxos::amqp::{AmqpConfig, AmqpQueue}`.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use naxos_amqp::{AmqpConfig, AmqpQueue};
//! use naxos_core::backend::Store;
//! use naxos_core::Engine;
//!
//! /// One node of a cluster: `store` is the one every node shares.
//! async fn node(store: Arc<dyn Store>) -> naxos_core::Result<Engine> {
//!     let queue = AmqpQueue::with_config(AmqpConfig {
//!         prefix: "billing".into(),
//!         ..AmqpConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     })
//!     .await?;
//!     let engine = Engine::builder().store(store).queue(Arc::new(queue)).concurrency(32).build()?;
//!     engine.register("charge", |_ctx| async { Ok(naxos_core::serde_json::json!("charged")) });
//!     engine.start()?;
//!     Ok(engine)
//! }
//! ```
//!
//! Topology, declared idempotently on connect (names start with [`AmqpConfig::prefix`]):
//!
//! | name | kind | what for |
//! | --- | --- | --- |
//! | `<prefix>.tasks` | direct exchange → quorum queue `<prefix>.tasks` (priority 0), and `<prefix>.tasks.p1` … `<prefix>.tasks.p9` (priorities 1 to 9), each bound under its own name | task messages: durable, persistent, publisher-confirmed, manually acked |
//! | `<prefix>.dead` | fanout exchange → queue `<prefix>.dead` | messages that cannot be decoded, or were delivered (or, being of a newer version, handed back) more than `delivery_limit` times |
//! | `<prefix>.events` | topic exchange | status events, routing key `<definitionId>.<executionId>.<status>` (a `.` in a definition id written `%2E`); bind your own queue to react to them |
//!
//! Choices, and why:
//!
//! - **Quorum queue** for tasks: it counts deliveries, so a message that keeps coming back
//!   (`x-delivery-limit`) is dead-lettered instead of looping; and it survives a broker restart.
//! - **A queue per priority** ([`Priority`]): quorum queues have
//!   no message priorities here (RabbitMQ before 4.0 has none; 4.0's two levels are too few),
//!   and a classic priority queue would give up the delivery limit and the replication. So a
//!   task message goes to its execution's level's queue, and each task consumer subscribes to
//!   all ten on one channel and, whenever the worker asks for the next task, takes it from the
//!   highest level that has one delivered: strictly by priority, as DESIGN §8 says for the
//!   waiting tasks (a steady stream of high-priority work keeps lower levels waiting; that is
//!   what a priority asks for). `basic.qos` counts per consumer (quorum queues have no global
//!   QoS), so a node holds up to its prefetch per level: a level-9 message published behind a
//!   backlog of level 0 is delivered at once to a node's level-9 consumer and starts at its
//!   next free worker, overtaken only by what was starting meanwhile — at most a prefetch and
//!   a pool of workers per node. Priority 0 keeps the queue's old name, so nodes of an earlier
//!   release share it; the priority comes back on the delivered reference from the queue it
//!   came from.
//! - **Ack right after the claim is durable** (the engine does this): the Store holds the task
//!   from then on, so a long task never meets RabbitMQ's consumer ack timeout
//!   (`consumer_timeout`, 30 min by default) and a crashed worker's task comes back through its
//!   lease expiring, not through the broker.
//! - **Delays without head-of-line blocking**: a per-message TTL on one queue only expires
//!   messages at its head, so a 1 s retry waits behind a 60 s one. `publish_delayed` instead holds
//!   the message in a timer on the publishing node and publishes it when due; if that node dies
//!   first, the Store still holds the task as RETRYING with its due time, and every node's sweeper
//!   republishes due retries (`take_stale`). Delays stay exact while the node lives and are never
//!   lost when it does not.
//! - **The topology is declared again on every fresh channel** (a publisher's, a consumer's, a
//!   subscription's): a broker that lost its definitions gets them back at the next reconnect,
//!   instead of answering every publish and consume with NOT_FOUND until someone restarts the
//!   nodes. [`Queue::dead_letters`] counts `<prefix>.dead` for `/health` and `/metrics`.
//!   A task consumer that got nothing for 5 s subscribes again on a fresh channel: a broker
//!   does not always cancel the consumers of a queue it deletes (seen with quorum queues), and
//!   such a consumer would otherwise wait on a queue that is gone while the work piles up in
//!   the one declared again.
//! - **Versions in a header**: every message carries its format version in the
//!   `x-naxos-version` header ([`TaskRef::VERSION`], [`StatusEvent::VERSION`]; a message
//!   without it is version 1, so the original naxos's `{"executionId","taskId","attempt"}` and
//!   any other service's messages still count). The body stays the JSON other services parse,
//!   and a reader learns the version before it parses a body whose shape it may not know. A
//!   consumer that meets a task message of a newer version hands it back (`basic.reject` with
//!   requeue, after half a second, warning once per version) for a node of the newer release:
//!   it never delivers it as something it is not; if no node takes it, the delivery limit
//!   dead-letters it and the sweepers publish the task again from the Store. An event of a newer
//!   version is skipped (a debug log): events are notifications. A header that is not a
//!   positive integer makes the message poison (dead-lettered).
//! - **Trace context in a header**: a task message of an execution submitted with a W3C trace
//!   context carries it in the `traceparent` header, for tools that watch the broker; the
//!   consumer reads it back into the delivered reference, and ignores one that is not valid.
//!   The worker itself takes the trace context from its claim, so a message published by an
//!   older release, without the header, runs traced all the same.
//! - **Reconnects**: the pool replaces broken connections; a publish retries once on a fresh
//!   channel before reporting a transient error (the sweeper republishes what stays lost); a
//!   consumer whose connection drops returns an error and the engine starts a new one with backoff.

mod consume;
mod error;
mod publish;
mod select;
mod trace;
mod version;

pub(crate) use error::within;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_lapin::lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable};
use deadpool_lapin::lapin::{Channel, ExchangeKind};
use deadpool_lapin::{Pool, Runtime};
use naxos_core::backend::{Consumer, EventSubscription, Queue, SelectedEvents};
use naxos_core::model::{Priority, StatusEvent, TaskRef};
use naxos_core::{Error, Result};

pub use deadpool_lapin;
pub use deadpool_lapin::lapin;

use crate::error::{amqp, pool};
use crate::publish::Publisher;

/// How to reach RabbitMQ and what to call things there.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost).
    pub url: String,
    /// Prefix of every exchange and queue name. Default `naxos`.
    pub prefix: String,
    /// Connections in the pool. Default 8.
    pub pool_size: usize,
    /// Deliveries of one message before it is dead-lettered. Default 10.
    pub delivery_limit: u32,
    /// How long any call to the broker (a publish and its confirm, a subscription, a ping, an
    /// ack) may take before it fails as a transient error: a broker that stops answering must
    /// not stall the worker that called it. Default 10 s.
    pub timeout: Duration,
}

impl AmqpConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "naxos".into(),
            pool_size: 8,
            delivery_limit: 10,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The naxos Queue on RabbitMQ. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) names: Names,
    pub(crate) publisher: Publisher,
    /// See [`AmqpConfig::timeout`].
    pub(crate) timeout: Duration,
    /// Task-message versions newer than this build's already warned about.
    pub(crate) newer: Arc<version::Seen>,
}

/// Exchange and queue names, and what the topology is declared with.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The task exchange, and the task queue of priority 0.
    pub(crate) tasks: String,
    /// The task queue of each priority, the lowest first (priority 0's is `tasks`).
    pub(crate) task_queues: Vec<String>,
    pub(crate) dead: String,
    pub(crate) events: String,
    pub(crate) delivery_limit: u32,
}

impl AmqpQueue {
    /// Connects to `url` with default settings and declares the topology.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::with_config(AmqpConfig::new(url)).await
    }

    /// Connects as `config` says and declares the topology (idempotent).
    pub async fn with_config(config: AmqpConfig) -> Result<Self> {
        if config.prefix.is_empty() || config.prefix.contains(char::is_whitespace) {
            return Err(Error::InvalidInput(format!(
                "prefix `{}` must be one word",
                config.prefix
            )));
        }
        let mut pool_config = deadpool_lapin::Config {
            url: Some(config.url.clone()),
            ..Default::default()
        };
        pool_config.pool = Some(deadpool_lapin::PoolConfig::new(config.pool_size.max(2)));
        let pool = pool_config
            .create_pool(deadpool_lapin::lapin::ConnectionProperties::default, Runtime::Tokio1)
            .map_err(|e| Error::InvalidInput(format!("AMQP URL: {e}")))?;
        let names = Names {
            tasks: format!("{}.tasks", config.prefix),
            task_queues: (0..Priority::LEVELS)
                .map(|level| match level {
                    0 => format!("{}.tasks", config.prefix),
                    _ => format!("{}.tasks.p{level}", config.prefix),
                })
                .collect(),
            dead: format!("{}.dead", config.prefix),
            events: format!("{}.events", config.prefix),
            delivery_limit: config.delivery_limit,
        };
        within(config.timeout, "declaring the topology", async {
            let connection = pool.get().await.map_err(pool_error_at_start)?;
            let channel = connection.create_channel().await.map_err(amqp)?;
            declare(&channel, &names).await?;
            let _ = channel.close(200, "topology declared".into()).await;
            Ok(())
        })
        .await?;
        Ok(Self {
            shared: Arc::new(Shared {
                publisher: Publisher::new(pool.clone(), names.clone(), config.timeout),
                pool,
                names,
                timeout: config.timeout,
                newer: Arc::default(),
            }),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// The name of the task queue of priority 0 (and of the task exchange).
    pub fn task_queue(&self) -> &str {
        &self.shared.names.tasks
    }

    /// The name of the task queue of `priority`.
    pub fn task_queue_of(&self, priority: Priority) -> &str {
        self.shared.names.task_queue(priority)
    }

    /// The name of the dead-letter queue.
    pub fn dead_letter_queue(&self) -> &str {
        &self.shared.names.dead
    }

    /// The name of the status-event topic exchange.
    pub fn events_exchange(&self) -> &str {
        &self.shared.names.events
    }
}

fn pool_error_at_start(e: deadpool_lapin::PoolError) -> Error {
    pool(e)
}

impl Names {
    /// The task queue of `priority`, which is also its routing key.
    pub(crate) fn task_queue(&self, priority: Priority) -> &str {
        &self.task_queues[priority.index()]
    }
}

/// Declares the whole topology (idempotent). Every fresh channel does this before it publishes
/// or consumes, so a broker that lost its definitions (a new node, a wiped data dir) gets them
/// back at the next reconnect instead of refusing every message with NOT_FOUND.
pub(crate) async fn declare(channel: &Channel, names: &Names) -> Result<()> {
    exchange(channel, &names.dead, ExchangeKind::Fanout).await?;
    bound_queue(channel, &names.dead, &names.dead, "", FieldTable::default()).await?;

    exchange(channel, &names.tasks, ExchangeKind::Direct).await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let limit = i32::try_from(names.delivery_limit).unwrap_or(i32::MAX);
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead.as_str().into()),
    );
    for queue in &names.task_queues {
        bound_queue(channel, queue, &names.tasks, queue, args.clone()).await?;
    }

    exchange(channel, &names.events, ExchangeKind::Topic).await
}

/// A durable exchange.
async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(name.into(), kind, durable, FieldTable::default())
        .await
        .map_err(amqp)
}

/// A durable queue `name`, bound to `exchange` with `routing_key`.
async fn bound_queue(channel: &Channel, name: &str, exchange: &str, routing_key: &str, args: FieldTable) -> Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(name.into(), durable, args).await.map_err(amqp)?;
    channel
        .queue_bind(
            name.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp)
}

#[async_trait]
impl Queue for AmqpQueue {
    async fn publish(&self, tasks: &[TaskRef]) -> Result<()> {
        self.shared.publisher.publish_tasks(tasks).await
    }

    async fn publish_delayed(&self, task: &TaskRef, delay: Duration) -> Result<()> {
        let publisher = self.shared.publisher.clone();
        let task = task.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = publisher.publish_tasks(std::slice::from_ref(&task)).await {
                tracing::warn!(error = %e, %task, "delayed publish failed; the sweeper will republish it when due");
            }
        });
        Ok(())
    }

    async fn consume(&self, prefetch: usize) -> Result<Box<dyn Consumer>> {
        let started = within(self.shared.timeout, "starting a consumer", async {
            consume::AmqpConsumer::start(&self.shared, prefetch).await
        });
        Ok(Box::new(started.await?))
    }

    async fn publish_events(&self, events: &[StatusEvent]) -> Result<()> {
        self.shared.publisher.publish_events(events).await
    }

    async fn subscribe_events(&self) -> Result<Box<dyn EventSubscription>> {
        let started = within(self.shared.timeout, "subscribing to events", async {
            consume::AmqpSubscription::start(&self.shared).await
        });
        Ok(Box::new(started.await?))
    }

    async fn subscribe_selected_events(&self) -> Result<Option<SelectedEvents>> {
        let started = within(self.shared.timeout, "subscribing to events", async {
            consume::AmqpSubscription::start_selected(&self.shared).await
        });
        let (subscription, selector) = started.await?;
        Ok(Some(SelectedEvents {
            subscription: Box::new(subscription),
            selector: Arc::new(selector),
        }))
    }

    async fn ping(&self) -> Result<()> {
        within(self.shared.timeout, "a ping", self.ping_once()).await
    }

    async fn dead_letters(&self) -> Result<Option<u64>> {
        let count = within(self.shared.timeout, "counting dead letters", async {
            self.message_count(&self.shared.names.dead).await
        });
        Ok(Some(count.await?))
    }
}

impl AmqpQueue {
    async fn ping_once(&self) -> Result<()> {
        self.message_count(&self.shared.names.tasks).await.map(|_| ())
    }

    /// Messages ready in `queue` (a passive declare: it fails if the queue is missing).
    async fn message_count(&self, queue: &str) -> Result<u64> {
        let connection = self.shared.pool.get().await.map_err(pool)?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let result = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .map_err(amqp);
        let _ = channel.close(200, "counted".into()).await;
        result.map(|q| u64::from(q.message_count()))
    }
}
