//! How long finished executions are kept: a definition's own retention, the server's default,
//! and the one rule that decides when a finished execution may be pruned.
//!
//! An execution is pruned once it is finished and its end time is older than its definition
//! version's retention for its end state, else the server's default for that state. A
//! CANCELLED execution follows the failed period (`failedMs`): both are runs that did not
//! complete, kept for looking into.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ExecutionStatus;
use crate::clock::{after, before};

/// The longest retention a definition may ask for: 100 years, in milliseconds.
pub const MAX_RETENTION_MS: u64 = 100 * 365 * 24 * 3_600_000;

/// A definition's own retention, the job-level `"retention": {"completedMs": N, "failedMs": N}`:
/// how long its finished executions are kept after they end, by end state. A period left out
/// follows the server's default for that state ([`RetentionDefaults`]); CANCELLED executions
/// follow `failedMs`. Each period is positive, at most [`MAX_RETENTION_MS`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// How long a COMPLETED execution is kept after it ended, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<u64>,
    /// How long a FAILED or CANCELLED execution is kept after it ended, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_ms: Option<u64>,
}

impl Retention {
    /// Keeps COMPLETED executions `completed` and FAILED or CANCELLED ones `failed`.
    pub fn new(completed: Duration, failed: Duration) -> Self {
        Self {
            completed_ms: Some(millis(completed)),
            failed_ms: Some(millis(failed)),
        }
    }

    /// The period this retention gives an execution that ended in `status` (`None` when it
    /// leaves that state to the default, or `status` is not an end state).
    pub fn period(&self, status: ExecutionStatus) -> Option<Duration> {
        let ms = match EndState::of(status)? {
            EndState::Completed => self.completed_ms,
            EndState::Failed => self.failed_ms,
        };
        ms.map(Duration::from_millis)
    }

    /// True when it leaves every end state to the default.
    pub fn is_empty(&self) -> bool {
        self.completed_ms.is_none() && self.failed_ms.is_none()
    }
}

/// The server's retention by end state, for definitions that set none: what
/// [`Store::prune`](crate::backend::Store::prune) is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDefaults {
    /// How long COMPLETED executions are kept after they ended.
    pub completed: Duration,
    /// How long FAILED and CANCELLED executions are kept after they ended.
    pub failed: Duration,
}

impl RetentionDefaults {
    /// The same period for every end state.
    pub fn uniform(period: Duration) -> Self {
        Self {
            completed: period,
            failed: period,
        }
    }

    /// Where a finished execution stands for pruning: its [`Expiry`], from its end state, its
    /// end time and its definition's own retention (`None` while it is not finished).
    pub fn expiry(status: ExecutionStatus, ended: DateTime<Utc>, own: Option<&Retention>) -> Option<Expiry> {
        let state = EndState::of(status)?;
        Some(match own.and_then(|r| r.period(status)) {
            Some(period) => Expiry {
                class: ExpiryClass::Own,
                at: after(ended, period),
            },
            None => Expiry {
                class: match state {
                    EndState::Completed => ExpiryClass::Completed,
                    EndState::Failed => ExpiryClass::Failed,
                },
                at: ended,
            },
        })
    }

    /// The bound of `class` at `now`: an [`Expiry`] of that class with `at` before it is due.
    pub fn cutoff(&self, class: ExpiryClass, now: DateTime<Utc>) -> DateTime<Utc> {
        match class {
            ExpiryClass::Completed => before(now, self.completed),
            ExpiryClass::Failed => before(now, self.failed),
            ExpiryClass::Own => now,
        }
    }

    /// True when a finished execution standing at `expiry` is due for pruning at `now`.
    pub fn is_due(&self, expiry: Expiry, now: DateTime<Utc>) -> bool {
        expiry.at < self.cutoff(expiry.class, now)
    }
}

/// Where a finished execution stands for pruning: a class and an instant, so that a Store can
/// index finished executions by `(class, at)` and find the due ones of each class with one
/// range scan up to [`RetentionDefaults::cutoff`] — the instant of the default classes is the
/// end time (their period is the server's, known only when pruning), that of
/// [`ExpiryClass::Own`] the end time plus the definition's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry {
    /// Whose period applies.
    pub class: ExpiryClass,
    /// The end time (default classes), or when the definition's period runs out (own).
    pub at: DateTime<Utc>,
}

/// Whose retention period applies to a finished execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpiryClass {
    /// COMPLETED, its definition leaving it to the server's default.
    Completed,
    /// FAILED or CANCELLED, its definition leaving it to the server's default.
    Failed,
    /// Its definition's own period for its end state.
    Own,
}

impl ExpiryClass {
    /// Every class, in order.
    pub const ALL: [ExpiryClass; 3] = [ExpiryClass::Completed, ExpiryClass::Failed, ExpiryClass::Own];
}

/// The two kinds of end state retention tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndState {
    Completed,
    /// FAILED or CANCELLED.
    Failed,
}

impl EndState {
    fn of(status: ExecutionStatus) -> Option<Self> {
        match status {
            ExecutionStatus::Completed => Some(Self::Completed),
            ExecutionStatus::Failed | ExecutionStatus::Cancelled => Some(Self::Failed),
            ExecutionStatus::Pending | ExecutionStatus::Running => None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn an_execution_follows_its_definition_else_the_default_for_its_end_state() {
        let defaults = RetentionDefaults {
            completed: Duration::from_secs(100),
            failed: Duration::from_secs(1_000),
        };
        let own = Retention {
            completed_ms: Some(10_000),
            failed_ms: None,
        };
        let now = at(500);
        let due = |status, ended, own: Option<&Retention>| {
            defaults.is_due(RetentionDefaults::expiry(status, ended, own).unwrap(), now)
        };
        // Completed: own 10 s, else the default 100 s.
        assert!(due(ExecutionStatus::Completed, at(489), Some(&own)));
        assert!(!due(ExecutionStatus::Completed, at(491), Some(&own)));
        assert!(due(ExecutionStatus::Completed, at(399), None));
        assert!(!due(ExecutionStatus::Completed, at(401), None));
        // Failed and cancelled: the definition leaves them to the default 1,000 s.
        for status in [ExecutionStatus::Failed, ExecutionStatus::Cancelled] {
            assert!(!due(status, at(-400), Some(&own)), "{status:?}");
            assert!(due(status, at(-501), Some(&own)), "{status:?}");
        }
        assert_eq!(
            RetentionDefaults::expiry(ExecutionStatus::Running, at(0), Some(&own)),
            None
        );
        assert_eq!(
            RetentionDefaults::expiry(
                ExecutionStatus::Cancelled,
                at(0),
                Some(&Retention::new(Duration::from_secs(1), Duration::from_secs(2)))
            ),
            Some(Expiry {
                class: ExpiryClass::Own,
                at: at(2)
            })
        );
    }

    #[test]
    fn the_json_is_camel_case_and_strict() {
        let r: Retention = serde_json::from_str(r#"{"completedMs":5,"failedMs":7}"#).unwrap();
        assert_eq!(r.period(ExecutionStatus::Completed), Some(Duration::from_millis(5)));
        assert_eq!(r.period(ExecutionStatus::Cancelled), Some(Duration::from_millis(7)));
        assert_eq!(serde_json::to_string(&Retention::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<Retention>(r#"{"completed":5}"#).is_err());
    }
}
