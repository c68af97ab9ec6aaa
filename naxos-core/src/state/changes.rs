//! What a transition changed that its caller must pass on or persist.

use chrono::{DateTime, Utc};

use super::ChildStart;
use crate::model::{Attempt, ExecutionId, StatusEvent, TaskRef};

/// Effects of a committed transition. The engine publishes `ready`, `delayed` and `events`
/// after the commit, and sets a timer for each of `waiting` and `scheduled`; a Store that keeps
/// rows persists `history`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Tasks now QUEUED: publish a message for each.
    pub ready: Vec<TaskRef>,
    /// Tasks now RETRYING: publish each at its due time.
    pub delayed: Vec<(TaskRef, DateTime<Utc>)>,
    /// Tasks now WAITING (a `sleep`, or a `waitFor` with a timeout) with their due time: wake
    /// each then ([`Store::wake`](crate::backend::Store::wake)).
    pub waiting: Vec<(TaskRef, DateTime<Utc>)>,
    /// Executions created to start later (`delayMs`, `runAt`) with their time: start each then
    /// ([`Store::start_delayed`](crate::backend::Store::start_delayed)).
    pub scheduled: Vec<(ExecutionId, DateTime<Utc>)>,
    /// Child executions that sub-job tasks started: the Store creates each in the same
    /// transaction and empties this list (what the children's creation changed is added to
    /// these changes), so a caller of a Store never sees it filled.
    pub children: Vec<ChildStart>,
    /// Child executions of sub-jobs that the transition cancelled (the parent was stopped):
    /// stop each, after the commit.
    pub stopped_children: Vec<ExecutionId>,
    /// Concurrency scopes a run stopped holding a slot of (see `concurrency.rs`), once per
    /// slot: the Store admits the runs waiting for them after the commit and empties this
    /// list (what the admissions changed is added to these changes), so a caller of a Store
    /// never sees it filled.
    pub freed_slots: Vec<String>,
    /// Rate-limit scopes a run stopped waiting for its booked turn in otherwise than by
    /// starting (cancelled, blocked for another reason, taken over by the stale sweep), once per
    /// turn: the Store gives each turn back to its window after the commit
    /// ([`RateWindow::release`](super::RateWindow::release)) and empties this list.
    pub released_turns: Vec<String>,
    /// Status changes, in order.
    pub events: Vec<StatusEvent>,
    /// Attempt records started or ended, each as it now stands (keyed by execution, task and
    /// attempt: an ended record replaces the started one).
    pub history: Vec<HistoryEntry>,
}

impl Changes {
    /// True when there is nothing to pass on or persist.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
            && self.delayed.is_empty()
            && self.waiting.is_empty()
            && self.scheduled.is_empty()
            && self.children.is_empty()
            && self.stopped_children.is_empty()
            && self.freed_slots.is_empty()
            && self.released_turns.is_empty()
            && self.events.is_empty()
            && self.history.is_empty()
    }

    /// Appends `other`.
    pub fn extend(&mut self, other: Changes) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.ready.extend(other.ready);
        self.delayed.extend(other.delayed);
        self.waiting.extend(other.waiting);
        self.scheduled.extend(other.scheduled);
        self.children.extend(other.children);
        self.stopped_children.extend(other.stopped_children);
        self.freed_slots.extend(other.freed_slots);
        self.released_turns.extend(other.released_turns);
        self.events.extend(other.events);
        self.history.extend(other.history);
    }
}

/// One attempt record of one task, as a transition left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The task.
    pub task_id: String,
    /// The record.
    pub record: Attempt,
}
