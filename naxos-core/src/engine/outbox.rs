//! Publishing the ready tasks of executions created outside the engine — in a caller's own
//! database transaction — as soon as the Store says there are some, and on every sweep.

use std::sync::Arc;
use std::time::Duration;

use super::inner::Inner;
use crate::Result;

/// Executions taken per Store call.
const BATCH: usize = 100;
/// The pause after a failed wait for a wake-up (a lost database connection).
const RETRY: Duration = Duration::from_secs(1);

/// Waits for the Store's wake-ups and publishes what they announce, until the node stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = inner.stopping.cancelled() => break,
            woken = inner.store.unpublished_wakeup() => {
                let drained = match woken {
                    Ok(()) => drain(&inner).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = drained {
                    tracing::warn!(error = %e, "waiting for executions created outside the engine failed; the sweeper still takes them");
                    tokio::select! {
                        _ = inner.stopping.cancelled() => break,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
}

/// Takes and publishes every unpublished execution's ready tasks; returns how many tasks.
pub(crate) async fn drain(inner: &Inner) -> Result<usize> {
    let mut published = 0;
    loop {
        let changes = inner.store.take_unpublished(BATCH).await?;
        if changes.is_empty() {
            return Ok(published);
        }
        published += changes.ready.len();
        inner.dispatch(changes).await;
    }
}
