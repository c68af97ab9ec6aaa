//! Concurrency limits (`"concurrency": {"limit", "key"}`): at most `limit` runs of a task at
//! once across every node, per key value.
//!
//! A run of a task with a limit gets its **slot** when the task starts: the scope it counts
//! against — its definition, its task and its key value ([`scope`]; the key is evaluated then,
//! and an evaluation error FAILS the task). A fan-out's instances share their task's scope and
//! each counts. How many runs hold a slot of a scope spans executions, so the Store keeps that
//! count and says at a claim whether a slot is free: fewer than `limit` runs hold one **and none
//! waits** — a fresh claim never passes a waiting run ([`ExecutionState::claim_admitted`]).
//!
//! - A claim that finds a slot free takes it: the run holds it ([`TaskRun::holds_slot`]) until
//!   it stops running — finished, retried, released, recovered after its lease, cancelled —,
//!   and the transition that ends the hold names the scope in [`Changes::freed_slots`]. An
//!   admitted run that a pause blocks, or that waits for its rate limit's turn, keeps its slot
//!   (every run of the scope is of the same definition, so a pause holds them all back anyway).
//! - A claim that finds none free blocks the run ([`BlockedBy::Concurrency`]): QUEUED without
//!   a message; the message that asked for it is dropped.
//! - After the commit of a transition that freed slots, the Store admits, for each scope, the
//!   waiting runs while slots are free — those of the highest execution priority first, then
//!   the oldest (by the time they became QUEUED) — ([`ExecutionState::admit_slot`]). An admitted run
//!   holds its slot from then, while its message travels, so no claim can take it meanwhile.
//!   The sweeper admits too ([`Store::admit_blocked`](crate::backend::Store::admit_blocked)),
//!   for a node that died between the commit and the admission.
//!
//! [`TaskRun::holds_slot`]: crate::model::TaskRun::holds_slot
//! [`BlockedBy::Concurrency`]: crate::model::BlockedBy::Concurrency

use chrono::{DateTime, Utc};

use super::admission::{Admitted, Block};
use super::rate::RateVerdict;
use super::{Changes, ExecutionState};
use crate::backend::ClaimRequest;
use crate::model::{BlockedBy, Instance, RateLimit, TaskRef, TaskStatus};
use crate::Result;

/// The longest scope (in bytes, as [`scope`] writes it): a key that makes it longer FAILS its
/// task (a Store indexes runs by scope, and index keys are bounded).
pub const MAX_SCOPE_LEN: usize = 448;

/// The scope of a concurrency limit: definition `definition_id`'s task `task_id`, per `key`
/// when the limit has one — as a JSON array, which no two different scopes share.
pub fn scope(definition_id: &str, task_id: &str, key: Option<&str>) -> String {
    let parts: Vec<&str> = [Some(definition_id), Some(task_id), key]
        .into_iter()
        .flatten()
        .collect();
    serde_json::to_string(&parts).unwrap_or_default()
}

impl ExecutionState {
    /// The slot scope of the task at `i` as it starts, if it has a limit; the error is what the
    /// task FAILS with (its key did not evaluate to a string).
    pub(super) fn slot_of(&self, i: usize) -> std::result::Result<Option<String>, String> {
        let Some(limit) = &self.tasks[i].plan.concurrency else {
            return Ok(None);
        };
        let task = Instance::definition_task(&self.tasks[i].task_id);
        self.scope_of(i, task, "concurrency.key", limit.key.as_deref())
            .map(Some)
    }

    /// The scope of a limit of the task `task` (the task at `i`, or the fan-out it is an
    /// instance of), per the value of the key expression `key` of the field `field`.
    pub(super) fn scope_of(
        &self,
        i: usize,
        task: &str,
        field: &str,
        key: Option<&str>,
    ) -> std::result::Result<String, String> {
        let key = match key {
            Some(source) => Some(crate::condition::evaluate_key(
                field,
                source,
                &self.params,
                self.completed_upstream(i),
            )?),
            None => None,
        };
        let scope = scope(&self.summary.definition_id, task, key.as_deref());
        if scope.len() > MAX_SCOPE_LEN {
            return Err(format!(
                "`{field}` gave a key too long: its scope takes {} bytes, over the limit of {MAX_SCOPE_LEN}",
                scope.len()
            ));
        }
        Ok(scope)
    }

    /// The slot a claim of `task` needs, with its limit: when the task waits to run at that
    /// attempt, has a limit, and holds no slot yet (an admitted run holds one already).
    pub fn slot_wanted(&self, task: &TaskRef) -> Option<(&str, u32)> {
        let i = self.index_of(&task.task_id)?;
        let t = &self.tasks[i];
        let waiting = matches!(t.status, TaskStatus::Queued | TaskStatus::Retrying) && t.attempt == task.attempt;
        waiting.then(|| self.slot_wanted_at(i)).flatten()
    }

    /// [`slot_wanted`](Self::slot_wanted) of the task at `i`, which waits to run.
    fn slot_wanted_at(&self, i: usize) -> Option<(&str, u32)> {
        let t = &self.tasks[i];
        match (t.holds_slot, &t.slot, &t.plan.concurrency) {
            (false, Some(scope), Some(limit)) => Some((scope, limit.limit)),
            _ => None,
        }
    }

    /// True when a claim of `task_id` may be decided by a limit: its task (a fan-out's, for an
    /// instance) has a concurrency or rate limit. Cheap: it reads the definition's task, found
    /// by binary search, so a Store can skip counting for the rest.
    pub fn limited(&self, task_id: &str) -> bool {
        let task = Instance::definition_task(task_id);
        self.tasks[..self.defined]
            .binary_search_by(|t| t.task_id.as_str().cmp(task))
            .is_ok_and(|i| self.tasks[i].plan.concurrency.is_some() || self.tasks[i].plan.rate_limit.is_some())
    }

    /// The scope and limit of the slot the run `task_id` waits for, when it waits for one.
    pub fn waiting_for_slot(&self, task_id: &str) -> Option<(&str, u32)> {
        let t = &self.tasks[self.index_of(task_id)?];
        let waiting = t.status == TaskStatus::Queued && t.blocked_by == Some(BlockedBy::Concurrency);
        match (waiting, &t.slot, &t.plan.concurrency) {
            (true, Some(scope), Some(limit)) => Some((scope, limit.limit)),
            _ => None,
        }
    }

    /// Claims `req.task` as [`claim`](Self::claim) does, unless:
    ///
    /// - `paused` says the execution's definition is paused: it is blocked for that
    ///   ([`block`](Self::block));
    /// - it has a rate limit ([`rate_wanted`](Self::rate_wanted)) and `rate(scope, limit,
    ///   booked)` says wait: it waits for its turn (`rate.rs`);
    /// - it needs a slot ([`slot_wanted`](Self::slot_wanted)) and `slot_free(scope, limit)`
    ///   says none is free: it waits for one.
    ///
    /// Each is asked only when the ones before let the claim go on; a `true` of `slot_free` is
    /// a slot the Store counts as taken by this claim.
    pub fn claim_admitted(
        &mut self,
        req: &ClaimRequest,
        paused: impl FnOnce(&str) -> bool,
        rate: impl FnOnce(&str, &RateLimit, Option<DateTime<Utc>>) -> RateVerdict,
        slot_free: impl FnOnce(&str, u32) -> bool,
        now: DateTime<Utc>,
    ) -> Result<Admitted> {
        self.unfinished()?;
        let i = self.guard(&req.task, &[TaskStatus::Queued, TaskStatus::Retrying])?;
        if paused(&self.summary.definition_id) {
            let definition = self.summary.definition_id.clone();
            return self
                .block(&req.task, BlockedBy::Paused, now)
                .map(|ch| Admitted::Blocked(ch, Block::Paused(definition)));
        }
        let verdict = self
            .rate_wanted_at(i)
            .map(|(scope, limit, booked)| (scope.to_string(), rate(scope, limit, booked)));
        if let Some((scope, RateVerdict::Wait(turn))) = verdict {
            let ch = self.block(&req.task, BlockedBy::RateLimit, now)?;
            self.tasks[i].due_at = Some(turn);
            let after = (turn - now).to_std().unwrap_or_default();
            return Ok(Admitted::Blocked(ch, Block::RateLimit { scope, after }));
        }
        let wanted = self.slot_wanted_at(i).map(|(s, limit)| (s.to_string(), limit));
        if let Some((scope, limit)) = &wanted {
            if !slot_free(scope, *limit) {
                return self
                    .block(&req.task, BlockedBy::Concurrency, now)
                    .map(|ch| Admitted::Blocked(ch, Block::Concurrency(scope.clone())));
            }
        }
        let claimed = self.claim_at(i, req, now);
        if wanted.is_some() {
            self.tasks[i].holds_slot = true;
        }
        Ok(Admitted::Claimed(claimed))
    }

    /// Admits the run `task_id`, waiting for a slot: it holds the slot from `now` (its Store
    /// counted it) and is QUEUED anew, its message to publish. `None` when it no longer waits
    /// (cancelled, or admitted already): the Store gives the slot back.
    pub fn admit_slot(&mut self, task_id: &str, now: DateTime<Utc>) -> Option<Changes> {
        if self.is_finished() {
            return None;
        }
        self.waiting_for_slot(task_id)?;
        let i = self.index_of(task_id)?;
        self.mark_queued(i, now);
        self.tasks[i].holds_slot = true;
        self.summary.updated_at = now;
        let t = &self.tasks[i];
        Some(Changes {
            ready: vec![self.summary.task_ref(t)],
            ..Changes::default()
        })
    }

    /// The run at `i` gives back the slot it holds, if it does: named in `ch.freed_slots`.
    pub(super) fn free_slot(&mut self, i: usize, ch: &mut Changes) {
        let t = &mut self.tasks[i];
        if t.holds_slot {
            t.holds_slot = false;
            if let Some(scope) = &t.slot {
                ch.freed_slots.push(scope.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_distinct_json_arrays() {
        assert_eq!(scope("d", "t", None), r#"["d","t"]"#);
        assert_eq!(scope("d", "t", Some("k")), r#"["d","t","k"]"#);
        assert_ne!(scope("d", "t", Some("")), scope("d", "t", None));
        assert_ne!(scope("a\",\"b", "t", None), scope("a", "b\",\"t", None));
    }
}
