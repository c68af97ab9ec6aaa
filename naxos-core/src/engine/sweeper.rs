//! The sweeper: closes every crash window by looking at the Store, on every node at once.

use std::sync::Arc;

use super::inner::Inner;
use crate::backend::{Changes, StopReason};
use crate::model::{EventKind, NodeInfo, TaskStatus};
use crate::Result;

/// Rows looked at per scan and sweep.
pub(crate) const BATCH: usize = 1_000;
/// Prune batches per sweep at most: 10,000 finished executions a sweep.
const MAX_PRUNE_BATCHES: usize = 10;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Tasks whose lease had expired, requeued or failed.
    pub recovered: usize,
    /// QUEUED tasks (lost messages) and due retries published again.
    pub republished: usize,
    /// Ready tasks of executions created outside the engine, published for the first time
    /// (see [`Store::take_unpublished`](crate::backend::Store::take_unpublished)).
    pub unpublished: usize,
    /// WAITING tasks woken at their due time (sleeps ended, waits timed out) that no node's
    /// timer had woken. (The same call starts the delayed executions whose time came and that
    /// no node's timer started; those are not counted here.)
    pub woken: usize,
    /// Executions failed for running past their deadline.
    pub timed_out: usize,
    /// Children of sub-jobs cancelled because their parent had finished (stopped) without
    /// the stop reaching them (a node died in between).
    pub orphans_cancelled: usize,
    /// Blocked tasks admitted: after their definition's resume (that the node which resumed it
    /// did not admit), or to a concurrency slot freed by a node that died before admitting.
    pub unblocked: usize,
    /// Finished executions deleted after their retention period.
    pub pruned: u64,
}

/// Sweeps every `sweep_interval` until the node stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.stopping.cancelled() => break,
            _ = tick.tick() => {
                match sweep_once(&inner).await {
                    Ok(r) if r != SweepReport::default() => tracing::info!(?r, "sweep"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
        }
    }
}

/// How many task events of `changes` are to one of `statuses`.
fn tasks_now(changes: &Changes, statuses: &[TaskStatus]) -> usize {
    changes
        .events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Task { status, .. } if statuses.contains(status)))
        .count()
}

/// One pass. Every Store call here is safe to run on several nodes at once: each recovered or
/// republished task goes to exactly one sweeper.
pub(crate) async fn sweep_once(inner: &Inner) -> Result<SweepReport> {
    let config = &inner.config;
    let mut report = SweepReport::default();
    let recovered = inner.store.recover_expired(config.max_lease_expiries, BATCH).await?;
    report.recovered = tasks_now(&recovered, &[TaskStatus::Queued, TaskStatus::Failed]);
    inner.dispatch(recovered).await;

    report.unpublished = super::outbox::drain(inner).await?;

    let stale = inner.store.take_stale(config.republish_after, BATCH).await?;
    report.republished = stale.ready.len();
    inner.dispatch(stale).await;
    super::metrics::swept(report.recovered, report.republished);

    let woken = inner.store.wake_due(BATCH).await?;
    report.woken = tasks_now(&woken, &[TaskStatus::Completed, TaskStatus::Failed]);
    inner.dispatch(woken).await;

    for id in inner.store.overdue_executions(BATCH).await? {
        match inner.stop(id, StopReason::TimedOut).await {
            Ok(_) => report.timed_out += 1,
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
    }
    let unblocked = inner.store.admit_blocked(BATCH).await?;
    report.unblocked = unblocked.ready.len();
    inner.dispatch(unblocked).await;

    for id in inner.store.orphaned_children(BATCH).await? {
        match inner.stop(id, StopReason::Cancelled).await {
            Ok(_) => report.orphans_cancelled += 1,
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }

    // Batches, so that no one statement holds long locks, and as many as it takes (up to a
    // bound) to keep up with a node that finishes more than a batch a sweep.
    for _ in 0..MAX_PRUNE_BATCHES {
        let pruned = inner.store.prune(config.retention(), BATCH).await?;
        report.pruned += pruned;
        if pruned < BATCH as u64 {
            break;
        }
    }
    inner.store.prune_nodes(config.node_retention).await?;

    inner
        .store
        .put_node(NodeInfo {
            id: config.node_id.clone(),
            role: config.role.clone(),
            concurrency: if config.workers { config.concurrency as u32 } else { 0 },
            running: inner.running_count() as u32,
            started_at: inner.started_at,
            last_seen: inner.now(), // the Store stamps its own time
        })
        .await?;
    Ok(report)
}
