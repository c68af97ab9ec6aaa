//! Whether anything will run an execution this node waits for: `wait_for` on an engine that
//! was never started, with no other node running tasks on its Store, would wait for ever.

use std::time::Duration;

use super::inner::Inner;
use crate::model::{ExecutionId, NodeInfo};
use crate::{Error, Result};

/// A node that reported within this long (or three of this node's sweep intervals, if longer)
/// counts as alive. The HTTP API's default for showing a node alive is the same.
const ALIVE_WITHIN: Duration = Duration::from_secs(15);
/// The shortest time a never-started engine gives another node to report itself.
const MIN_GRACE: Duration = Duration::from_secs(1);
/// How often the node registry is read meanwhile.
const STEP: Duration = Duration::from_millis(50);

/// Returns at once on an engine that was started (its own workers, or the node it belongs to,
/// run tasks), or when execution `id` already finished. Otherwise waits until some node that
/// runs tasks (a worker pool) is alive in the Store's node registry — every node reports at
/// each sweep, so this allows two sweep intervals (at least [`MIN_GRACE`]) — and fails with a
/// [`Error::Conflict`] that says so when none appears.
pub(crate) async fn ensure_runner(inner: &Inner, id: ExecutionId) -> Result<()> {
    if inner.was_started() {
        return Ok(());
    }
    let sweep = inner.config.sweep_interval;
    let alive_within = ALIVE_WITHIN.max(sweep * 3);
    let deadline = tokio::time::Instant::now() + (sweep * 2).max(MIN_GRACE);
    loop {
        if inner.store.get_execution(id).await?.status.is_terminal() {
            return Ok(());
        }
        let now = inner.now();
        let runs_tasks =
            |n: &NodeInfo| n.concurrency > 0 && (now - n.last_seen).to_std().unwrap_or_default() <= alive_within;
        if inner.store.list_nodes().await?.iter().any(runs_tasks) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::conflict(format!(
                "execution {id} would never finish: this engine was never started (call `Engine::start` \
                 first), and no other node that runs tasks has reported to its Store"
            )));
        }
        tokio::time::sleep(STEP).await;
    }
}
