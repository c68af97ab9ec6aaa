//! Lease renewal for one running attempt.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{LeaseState, Store};
use crate::model::TaskRef;
use crate::Result;

/// Renews one attempt's lease in the Store.
#[derive(Clone)]
pub(crate) struct Heartbeat {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) task: TaskRef,
    pub(crate) ttl: Duration,
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat").field("task", &self.task).finish()
    }
}

impl Heartbeat {
    /// Extends the lease by the TTL from now (the Store's now).
    pub(crate) async fn beat(&self) -> Result<LeaseState> {
        self.store.heartbeat(&self.task, self.ttl).await
    }
}
