//! Admission: tasks that may not start yet wait QUEUED without their message, marked with
//! why ([`BlockedBy`]), until admitted again: a pause (here) or a concurrency limit (see
//! `concurrency.rs`; [`ExecutionState::claim_admitted`] decides both at the claim).
//!
//! A paused definition's tasks are stopped at the claim: the Store, which knows the definition
//! is paused, blocks the task instead of claiming it ([`ExecutionState::block`]) and the
//! message that asked for it is dropped. Tasks keep becoming QUEUED and published as usual
//! while a definition is paused (no transition needs to know of the pause); they are blocked
//! when a worker asks for them. When the definition is resumed, the Store unblocks its blocked
//! tasks ([`ExecutionState::unblock`]): each is QUEUED anew and published. The stale sweep
//! never republishes a blocked task.

use chrono::{DateTime, Utc};

use super::{Changes, ExecutionState, Transitioned};
use crate::backend::ClaimedTask;
use crate::model::{BlockedBy, TaskRef, TaskStatus};
use crate::Result;

/// What a claim did: see [`ExecutionState::claim_admitted`].
#[derive(Debug)]
pub enum Admitted {
    /// The task was claimed.
    Claimed(ClaimedTask),
    /// The task was blocked instead (why), and what that changed.
    Blocked(Changes, Block),
}

/// Why a claim blocked its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// The execution's definition (named) is paused.
    Paused(String),
    /// No slot of the task's concurrency limit (its scope named) is free.
    Concurrency(String),
    /// The task's rate limit (its scope named) gives it a turn `after` this long.
    RateLimit {
        /// The limit's scope.
        scope: String,
        /// How long until its turn.
        after: std::time::Duration,
    },
}

impl Transitioned for Admitted {
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        match self {
            Admitted::Claimed(c) => Some(&mut c.changes),
            Admitted::Blocked(ch, _) => Some(ch),
        }
    }
}

impl Admitted {
    /// True when the claim started the task or booked its turn under its rate limit: what
    /// makes a Store keep the rate window the claim's decision left (`rate.rs`).
    pub fn keeps_rate_window(&self) -> bool {
        matches!(
            self,
            Admitted::Claimed(_) | Admitted::Blocked(_, Block::RateLimit { .. })
        )
    }

    /// The claimed task, or `Conflict` saying why a blocked one waits (what a Store's claim
    /// answers, after the block committed).
    pub fn claimed(self, task: &TaskRef) -> Result<ClaimedTask> {
        match self {
            Admitted::Claimed(c) => Ok(c),
            Admitted::Blocked(_, Block::Paused(definition_id)) => Err(crate::Error::conflict(format!(
                "task {task} is blocked: job definition `{definition_id}` is paused"
            ))),
            Admitted::Blocked(_, Block::Concurrency(scope)) => Err(crate::Error::conflict(format!(
                "task {task} waits for a slot of its concurrency limit {scope}"
            ))),
            Admitted::Blocked(_, Block::RateLimit { scope, after }) => Err(crate::Error::Deferred {
                message: format!("task {task} waits {after:?} for its turn under its rate limit {scope}"),
                after,
            }),
        }
    }
}

impl ExecutionState {
    /// Blocks the QUEUED (or due RETRYING) task `task`, at its attempt, for `reason` instead of
    /// claiming it: it stays QUEUED (a RETRYING one becomes QUEUED) without a message until
    /// [`unblock`](Self::unblock). A concurrency slot it holds (it was admitted to one) stays
    /// its: a run blocked by a pause or waiting for its rate limit's turn keeps its place, and
    /// the claim admits no other run (its changes go nowhere). `Conflict` when the execution is
    /// finished or the task is not waiting to run at that attempt, as for a claim.
    pub fn block(&mut self, task: &TaskRef, reason: BlockedBy, now: DateTime<Utc>) -> Result<Changes> {
        self.unfinished()?;
        let i = self.guard(task, &[TaskStatus::Queued, TaskStatus::Retrying])?;
        let mut ch = Changes::default();
        if self.tasks[i].blocked_by != Some(reason) {
            self.release_turn(i, &mut ch);
        }
        if self.tasks[i].status == TaskStatus::Retrying {
            self.tasks[i].due_at = None;
            self.mark_queued(i, now);
            self.set_task(i, TaskStatus::Queued, None, now, &mut ch);
        }
        self.tasks[i].blocked_by = Some(reason);
        self.summary.updated_at = now;
        Ok(ch)
    }

    /// True when some task waits blocked for `reason`.
    pub fn blocked(&self, reason: BlockedBy) -> bool {
        self.tasks.iter().any(|t| t.blocked_by == Some(reason))
    }

    /// Admits every task blocked for `reason`: QUEUED anew at `now`, its message to publish.
    pub fn unblock(&mut self, reason: BlockedBy, now: DateTime<Utc>) -> Changes {
        let mut ch = Changes::default();
        if self.is_finished() {
            return ch;
        }
        for i in 0..self.tasks.len() {
            if self.tasks[i].blocked_by == Some(reason) && self.tasks[i].status == TaskStatus::Queued {
                self.mark_queued(i, now);
                let t = &self.tasks[i];
                ch.ready.push(self.summary.task_ref(t));
            }
        }
        ch
    }
}
