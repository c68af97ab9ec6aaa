//! The three pluggable backends and their contracts.
//!
//! - [`Store`]: the source of truth — definitions, executions, and the task state machine as
//!   atomic, guarded transitions.
//! - [`Queue`]: moves task messages ([`TaskRef`](crate::model::TaskRef)) between nodes and
//!   carries status events. A message is only a wake-up: the Store decides what runs.
//! - [`Cache`]: a node-local cache of immutable definition versions.
//!
//! All three are object-safe and held as `Arc<dyn …>`. The in-memory implementations live in
//! [`crate::memory`]; the conformance suite that defines a correct backend in `testkit`.

mod cache;
mod queue;
mod store;

pub use crate::model::NewTask;
pub use crate::state::{Changes, HistoryEntry};
pub use cache::Cache;
pub use queue::{Acknowledger, Consumer, Delivery, EventSelector, EventSubscription, Queue, SelectedEvents};
pub use store::{
    ClaimRequest, ClaimedTask, Created, DefinitionPut, ExecutionPage, ExecutionQuery, FinishReport, Fired, LeaseState,
    NewExecution, ScheduleTick, SignalOutcome, StopOutcome, StopReason, Store, StoreCounts, TaskFinish, TaskOutcome,
};

use std::future::Future;
use std::time::Duration;

/// Runs `call` (a call to `service`, described by `what`) with a deadline: past `limit` it fails
/// as a transient error, "`service` did not answer `what` within `limit`". For backend
/// implementors: a server that stops answering must fail the call, not hang its caller.
pub async fn within<T>(
    limit: Duration,
    service: &str,
    what: &str,
    call: impl Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(crate::Error::transient(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{service} did not answer {what} within {limit:?}"),
        )))
    })
}
