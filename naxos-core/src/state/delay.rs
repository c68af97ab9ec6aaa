//! Delayed executions (`?delayMs=`, `?runAt=`): created at once, started when their time comes.
//!
//! [`ExecutionState::create`] with a delay still ahead decides no task: the execution is PENDING
//! with [`scheduled_for`](crate::model::ExecutionSummary::scheduled_for) set and every task
//! PENDING, so nothing can be claimed, republished or recovered, and its deadline is not yet
//! judged. The creation lists it in [`Changes::scheduled`]; the engine that created it starts it
//! then ([`ExecutionState::start_delayed`]) and the sweepers start what a node that stopped left
//! ([`ExecutionState::wake_due`], which starts a due execution as it wakes due tasks).
//!
//! Starting is what a creation does without a delay — the roots are decided, QUEUED or as their
//! `when` conditions say —, at the time it happens: `start_time` is then, and the job's
//! `timeoutMs` counts from then (the deadline moves by how late the start is). A cancel before
//! the start ends it CANCELLED with no task ever run; nothing starts it afterwards.

use chrono::{DateTime, Utc};

use super::{Changes, ExecutionState};
use crate::{Error, Result};

impl ExecutionState {
    /// Starts the delayed execution whose time has come, as the module says. `Conflict` when it
    /// is not waiting for its time (started, finished, or never delayed) or its time is after
    /// `now`.
    pub fn start_delayed(&mut self, now: DateTime<Utc>) -> Result<Changes> {
        self.unfinished()?;
        let id = self.summary.id;
        let Some(at) = self.summary.scheduled_for.filter(|_| self.summary.is_delayed()) else {
            return Err(Error::conflict(format!("execution {id} is not waiting to start")));
        };
        if at > now {
            let at = at.to_rfc3339();
            return Err(Error::conflict(format!("execution {id} starts at {at}, not yet")));
        }
        let mut ch = Changes::default();
        self.begin(now, &mut ch);
        Ok(ch)
    }

    /// Starts the execution if it is delayed and due by `now` and `budget` is not spent (it
    /// spends one); true when it did.
    pub(super) fn start_if_due(&mut self, now: DateTime<Utc>, budget: &mut usize, ch: &mut Changes) -> bool {
        let due = self.summary.is_delayed() && self.summary.scheduled_for.is_some_and(|at| at <= now);
        if !due || *budget == 0 {
            return false;
        }
        *budget -= 1;
        self.begin(now, ch);
        true
    }

    /// When the job's timeout began to count: the execution's creation, or for a delayed one
    /// its start (its scheduled time while it has not started).
    pub(super) fn timeout_from(&self) -> DateTime<Utc> {
        match self.summary.scheduled_for {
            Some(at) => self.summary.start_time.unwrap_or(at),
            None => self.summary.created_at,
        }
    }

    /// The delayed execution starts at `now`: its deadline moves by how late that is after its
    /// scheduled time, and its roots are decided.
    fn begin(&mut self, now: DateTime<Utc>, ch: &mut Changes) {
        let late = now - self.timeout_from();
        self.summary.deadline = self
            .summary
            .deadline
            .map(|d| d.checked_add_signed(late).unwrap_or(DateTime::<Utc>::MAX_UTC));
        self.summary.start_time = Some(now);
        self.summary.updated_at = now;
        self.start_roots(now, ch);
    }
}
