//! Building an [`Engine`].

use std::sync::Arc;
use std::time::Duration;

use super::inner::Inner;
use super::{Clock, Engine, EngineConfig};
use crate::backend::{Cache, Queue, Store};
use crate::memory::{MemoryCache, MemoryQueue, MemoryStore};
use crate::model::Limits;
use crate::Result;

/// Setter methods, one per [`EngineConfig`] field of the same name and type.
macro_rules! settings {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.config.$field = $field;
                self
            }
        )*
    };
}

/// Builds an [`Engine`]; backends not set are the in-memory ones, settings not set are
/// [`EngineConfig::default`]'s. Each setting has a method named like its [`EngineConfig`]
/// field; [`build`](Self::build) checks them all and names the first one that cannot work.
///
/// ```
/// # use naxos_core as naxos;
/// use std::time::Duration;
/// use naxos::Engine;
///
/// let engine = Engine::builder()
///     .concurrency(32)
///     .lease_ttl(Duration::from_secs(60))
///     .cancel_grace(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(engine.config().heartbeat_interval(), Duration::from_secs(20));
///
/// let refused = Engine::builder().lease_ttl(Duration::from_secs(10)).heartbeat_interval(Duration::from_secs(6)).build();
/// assert!(refused.unwrap_err().to_string().contains("heartbeat_interval"));
/// # Ok::<(), naxos::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    queue: Option<Arc<dyn Queue>>,
    cache: Option<Arc<dyn Cache>>,
    config: EngineConfig,
}

impl EngineBuilder {
    /// The Store.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The Queue.
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The Cache.
    pub fn cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// All settings at once.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Task attempts run at once on this node (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency.max(1);
        self
    }

    /// This node's id ([`EngineConfig::node_id`]): the lease owner and node-registry key.
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.config.node_id = node_id.into();
        self
    }

    /// What this node does, as the node registry shows it ([`EngineConfig::role`]).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.config.role = role.into();
        self
    }

    /// How often running tasks' leases are renewed ([`EngineConfig::heartbeat_interval`];
    /// default a third of `lease_ttl`, at most half of it).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = Some(interval);
        self
    }

    /// The most executions waiting to start before a submit is refused as overloaded
    /// ([`EngineConfig::max_pending_executions`]; default 100,000); `None` for no limit.
    pub fn max_pending_executions(mut self, max: Option<u64>) -> Self {
        self.config.max_pending_executions = max;
        self
    }

    /// Keeps finished executions `period` after they ended, whatever their end state, when
    /// their definition sets no `retention` of its own: both
    /// [`retention_completed`](Self::retention_completed) and
    /// [`retention_failed`](Self::retention_failed).
    pub fn retention(self, period: Duration) -> Self {
        self.retention_completed(period).retention_failed(period)
    }

    settings! {
        /// Whether [`Engine::start`] runs a worker pool here ([`EngineConfig::workers`];
        /// default true). An API-only node sets false.
        workers: bool,
        /// Whether tasks made ready here run here at once while a concurrency slot is spare,
        /// without a queue message ([`EngineConfig::run_ready_here`]; default false).
        run_ready_here: bool,
        /// How long a claim holds a task without a heartbeat ([`EngineConfig::lease_ttl`];
        /// default 30 s). Longer: a dead node's tasks wait longer to run elsewhere. Shorter:
        /// more heartbeats, and a node that stalls this long loses its tasks.
        lease_ttl: Duration,
        /// How often the sweeper looks for expired leases, lost messages, due retries and
        /// timeouts ([`EngineConfig::sweep_interval`]; default 1 s).
        sweep_interval: Duration,
        /// How long a task may stay QUEUED before its message is presumed lost and published
        /// again ([`EngineConfig::republish_after`]; default 10 s).
        republish_after: Duration,
        /// How many lease expiries a task may have before it FAILS
        /// ([`EngineConfig::max_lease_expiries`]; default 3).
        max_lease_expiries: u32,
        /// How long COMPLETED executions are kept after they ended when their definition sets
        /// no `retention.completedMs` ([`EngineConfig::retention_completed`]; default 7 days).
        retention_completed: Duration,
        /// How long FAILED and CANCELLED executions are kept after they ended when their
        /// definition sets no `retention.failedMs` ([`EngineConfig::retention_failed`];
        /// default 7 days).
        retention_failed: Duration,
        /// How long a silent node stays in the node registry
        /// ([`EngineConfig::node_retention`]; default 1 hour).
        node_retention: Duration,
        /// The largest task output, in JSON bytes ([`EngineConfig::max_output_bytes`]; default
        /// 1 MiB).
        max_output_bytes: usize,
        /// The limits checked when a definition is registered ([`EngineConfig::limits`]).
        limits: Limits,
        /// On shutdown, how long running tasks may take to finish before they are handed back
        /// ([`EngineConfig::shutdown_grace`]; default 30 s).
        shutdown_grace: Duration,
        /// After a task's cancellation token fires (cancel, timeout, lost lease), how long its
        /// function may take to return before it is dropped ([`EngineConfig::cancel_grace`];
        /// default 5 s).
        cancel_grace: Duration,
        /// Where "now" comes from for this node ([`EngineConfig::clock`]; default the system's).
        clock: Clock,
    }

    /// The engine; `InvalidInput` naming the setting when the settings cannot work (see
    /// [`EngineConfig::validate`]).
    pub fn build(self) -> Result<Engine> {
        let mut config = self.config;
        config.concurrency = config.concurrency.max(1);
        config.validate()?;
        Ok(Engine {
            inner: Arc::new(Inner::new(
                self.store
                    .unwrap_or_else(|| Arc::new(MemoryStore::with_clock(config.clock.clone()))),
                self.queue.unwrap_or_else(|| Arc::new(MemoryQueue::new())),
                self.cache.unwrap_or_else(|| Arc::new(MemoryCache::default())),
                config,
            )),
        })
    }
}
