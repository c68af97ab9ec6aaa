//! Signals: named messages sent to an execution for its `waitFor` tasks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A signal sent to an execution before any task waited for it: kept, in the order received,
/// until a `waitFor` task of its name starts waiting, which consumes it (each signal once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// The signal's name.
    pub name: String,
    /// What was sent with it: the output of the task that consumes it.
    pub payload: Value,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// Most signals an execution keeps unconsumed; past it a signal is refused (`Conflict`).
pub const MAX_PENDING_SIGNALS: usize = 100;
