//! Execution and task statuses, uppercase on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an execution stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Created; no task has started yet.
    Pending,
    /// At least one task has started and not every task is finished.
    Running,
    /// Every task completed.
    Completed,
    /// A task failed for good (or the job timed out); its dependents were skipped.
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

/// Where one task of an execution stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Ready; a message for it is (or will be) on the queue.
    Queued,
    /// Claimed by a worker, under a lease.
    Running,
    /// Failed retryably; waits for its backoff before the next attempt.
    Retrying,
    /// A `sleep` or `waitFor` task waiting for its due time or its signal, holding no worker.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Failed for good.
    Failed,
    /// Not run because a dependency failed.
    Skipped,
    /// Not run (or its result discarded) because the execution was cancelled.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// True when the execution will not change again (unless retried).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The wire name, e.g. `"RUNNING"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses a wire name, ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 9] = [
        Self::Pending,
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Waiting,
        Self::Completed,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// True when the task will not change again (unless the execution is retried).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled)
    }

    /// The wire name, e.g. `"QUEUED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Retrying => "RETRYING",
            Self::Waiting => "WAITING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Skipped => "SKIPPED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses a wire name, ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_uppercase_and_round_trip() {
        for s in ExecutionStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(ExecutionStatus::parse(&s.as_str().to_lowercase()), Some(s));
        }
        for s in TaskStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<TaskStatus>(&json).unwrap(), s);
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskStatus::parse("DONE"), None);
    }
}
