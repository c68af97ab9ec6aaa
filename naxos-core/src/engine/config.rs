//! Engine settings and the clock it reads.

use std::time::Duration;

pub use crate::clock::Clock;

use crate::model::{Limits, RetentionDefaults};
use crate::{Error, Result};

/// How an engine (one node) behaves. `Default` gives production-minded values.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's id: lease owner and node-registry key. Default `node-<random>`.
    pub node_id: String,
    /// What this node does, as shown in the node registry: `all`, `api` or `worker`.
    pub role: String,
    /// Whether [`Engine::start`](super::Engine::start) runs a worker pool. An API-only node
    /// sets this to false: it still sweeps and registers itself, but consumes no tasks.
    /// Default true.
    pub workers: bool,
    /// Task attempts run at once on this node (and the queue prefetch). Default 16.
    pub concurrency: usize,
    /// Whether a task made ready here — a submitted execution's first tasks, the dependents a
    /// finish here released — runs on this node at once while it has a spare concurrency slot,
    /// claimed without a queue message. What finds no spare slot is published; a node whose
    /// slots are taken (or whose pool waits for one) publishes everything. It saves the
    /// broker's durable round trip a task (BENCHMARKS.md: "Ready tasks run where they became
    /// ready"), at a price: a DAG's parallel branches then run on the node that released them
    /// as far as its slots go, where through the queue each is one message any node may take
    /// (DESIGN §4) — right for I/O-bound tasks, not for CPU-bound ones that should spread.
    /// Crash safety is the same either way: until its claim commits, the task is QUEUED in the
    /// Store, and the stale sweep publishes it if this node dies first. Default false.
    pub run_ready_here: bool,
    /// How long a claim holds a task without a heartbeat. Default 30 s. A worker that cannot
    /// renew a lease within 90 % of this stops its attempt (it fences itself).
    pub lease_ttl: Duration,
    /// How often running tasks' leases are renewed; `None` (the default) for a third of
    /// `lease_ttl`. At most half of `lease_ttl`.
    pub heartbeat_interval: Option<Duration>,
    /// How often the sweeper looks for expired leases, lost messages and timeouts. Default 1 s.
    pub sweep_interval: Duration,
    /// A QUEUED task older than this is presumed to have lost its message and is republished.
    /// Default 10 s.
    pub republish_after: Duration,
    /// A task whose lease expires more often than this FAILS (it probably kills its worker).
    /// Default 3.
    pub max_lease_expiries: u32,
    /// How often the scheduler looks for due schedule ticks. Default 1 s.
    pub schedule_interval: Duration,
    /// A schedule tick not fired within this long after its time counts as **missed** (no
    /// node ran the scheduler then), and its schedule's `catchUp` decides whether it runs.
    /// One fired later than its time, but within this, runs as usual. Default 60 s.
    pub schedule_grace: Duration,
    /// How long COMPLETED executions are kept after they ended, unless their definition says
    /// otherwise (its `retention.completedMs`). Default 7 days.
    pub retention_completed: Duration,
    /// How long FAILED and CANCELLED executions are kept after they ended, unless their
    /// definition says otherwise (its `retention.failedMs`). Default 7 days.
    pub retention_failed: Duration,
    /// Nodes not heard from for longer than this leave the node registry. Default 1 hour.
    pub node_retention: Duration,
    /// Executions not yet started (PENDING) across the whole Store above which a submit is
    /// refused with [`Error::Overloaded`](crate::Error::Overloaded) instead of queueing
    /// without bound; `None` for no limit. The count is read from the Store at most once per
    /// [`sweep_interval`](Self::sweep_interval) and this node's own submits since are added to
    /// it, so several nodes submitting at once may overshoot by what they admit in one
    /// interval. Default 100,000.
    pub max_pending_executions: Option<u64>,
    /// Largest task output, as JSON bytes; a larger one fails the task. Default 1 MiB.
    pub max_output_bytes: usize,
    /// Limits checked when a definition is registered.
    pub limits: Limits,
    /// On shutdown, how long running tasks may take to finish before they are handed back.
    /// Default 30 s.
    pub shutdown_grace: Duration,
    /// After a task's cancellation token fires, how long it may take to return. Default 5 s.
    pub cancel_grace: Duration,
    /// Where "now" comes from for this node: the worker's timers, the delays of retries and
    /// the node registry. Leases, due times and deadlines are the Store's clock's: the
    /// engine's default in-memory store gets this one.
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            node_id: format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            role: "all".into(),
            workers: true,
            concurrency: 16,
            run_ready_here: false,
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: None,
            sweep_interval: Duration::from_secs(1),
            republish_after: Duration::from_secs(10),
            max_lease_expiries: 3,
            schedule_interval: Duration::from_secs(1),
            schedule_grace: Duration::from_secs(60),
            retention_completed: Duration::from_secs(7 * 24 * 3600),
            retention_failed: Duration::from_secs(7 * 24 * 3600),
            node_retention: Duration::from_secs(3600),
            max_pending_executions: Some(100_000),
            max_output_bytes: 1 << 20,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            clock: Clock::System,
        }
    }
}

impl EngineConfig {
    /// How often leases are renewed: [`heartbeat_interval`](Self::heartbeat_interval), or a
    /// third of [`lease_ttl`](Self::lease_ttl).
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval.unwrap_or(self.lease_ttl / 3)
    }

    /// The server's default retention by end state, as [`Store::prune`](crate::backend::Store::prune) takes it.
    pub fn retention(&self) -> RetentionDefaults {
        RetentionDefaults {
            completed: self.retention_completed,
            failed: self.retention_failed,
        }
    }

    /// Refuses settings the engine cannot run with, naming the first one found.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("lease_ttl", self.lease_ttl),
            ("heartbeat_interval", self.heartbeat_interval()),
            ("sweep_interval", self.sweep_interval),
            ("republish_after", self.republish_after),
            ("schedule_interval", self.schedule_interval),
            ("schedule_grace", self.schedule_grace),
            ("retention_completed", self.retention_completed),
            ("retention_failed", self.retention_failed),
            ("node_retention", self.node_retention),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::InvalidInput(format!(
                "the engine setting {name} must be more than zero"
            )));
        }
        if self.heartbeat_interval() > self.lease_ttl / 2 {
            return Err(Error::InvalidInput(format!(
                "the engine setting heartbeat_interval ({:?}) must be at most half of lease_ttl ({:?}), \
                 so that a lease is renewed at least once before a worker gives it up",
                self.heartbeat_interval(),
                self.lease_ttl
            )));
        }
        if self.node_id.trim().is_empty() {
            return Err(Error::InvalidInput(
                "the engine setting node_id must not be empty".into(),
            ));
        }
        if self.max_pending_executions == Some(0) {
            return Err(Error::InvalidInput(
                "the engine setting max_pending_executions must be more than zero (or None)".into(),
            ));
        }
        if self.max_output_bytes == 0 {
            return Err(Error::InvalidInput(
                "the engine setting max_output_bytes must be more than zero".into(),
            ));
        }
        Ok(())
    }
}
