//! What the sweepers close: expired leases and lost publishes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{rules, Changes, ExecutionState};
use crate::clock::before;
use crate::model::{AttemptOutcome, BlockedBy, TaskStatus};

impl ExecutionState {
    /// Recovers RUNNING tasks whose lease expired before `now`, at most `budget` of them (the
    /// budget is spent by as many): each is QUEUED again under the next attempt number, or
    /// FAILED once its lease has expired more than `max_expiries` times.
    pub fn recover_expired(&mut self, now: DateTime<Utc>, max_expiries: u32, budget: &mut usize) -> Changes {
        let mut ch = Changes::default();
        for i in 0..self.tasks.len() {
            if *budget == 0 {
                break;
            }
            let t = &self.tasks[i];
            let expired = t.status == TaskStatus::Running && t.lease.as_ref().is_some_and(|l| l.expires_at < now);
            if !expired {
                continue;
            }
            *budget -= 1;
            let orphaned = self.orphaned(i);
            self.end_attempt(
                i,
                AttemptOutcome::Expired,
                Some(rules::ATTEMPT_EXPIRED.to_string()),
                now,
                &mut ch,
            );
            let t = &mut self.tasks[i];
            let owner = t.lease.take().map(|l| l.owner).unwrap_or_default();
            t.lease_expiries += 1;
            t.attempt += 1;
            t.end_time = Some(now);
            if t.lease_expiries > max_expiries {
                let error = rules::lease_gave_up(t.lease_expiries, &owner);
                self.fail(i, error, now, &mut ch);
            } else if orphaned {
                self.cancel_orphan(i, now, &mut ch);
            } else {
                t.error = Some(rules::lease_expired(&owner));
                self.enqueue(i, now, &mut ch);
            }
        }
        self.finish_if_done(now, &mut ch);
        ch
    }

    /// Takes over tasks whose queue message may be lost, at most `budget` of them, and returns
    /// them in `ready`:
    ///
    /// - QUEUED for longer than `older_than` — doubled for every time the task was already
    ///   republished since it became QUEUED (up to 2^[`MAX_DOUBLINGS`]): a task that waits behind
    ///   a backlog, rather than lost, is not published again every `older_than`. Stamped as
    ///   queued at `now`, so the next scan leaves it alone.
    /// - RETRYING due more than `older_than` ago: made QUEUED.
    /// - QUEUED waiting for its rate limit, its turn more than `older_than` ago: QUEUED anew
    ///   (its booked message was lost).
    pub fn take_stale(&mut self, older_than: Duration, now: DateTime<Utc>, budget: &mut usize) -> Changes {
        let mut ch = Changes::default();
        for i in 0..self.tasks.len() {
            if *budget == 0 {
                break;
            }
            let t = &mut self.tasks[i];
            match t.status {
                // A blocked task has no message to lose: it is published when admitted.
                TaskStatus::Queued
                    if t.blocked_by.is_none()
                        && t.queued_at
                            .is_some_and(|q| q < before(now, republish_wait(older_than, t.republished))) =>
                {
                    t.queued_at = Some(now);
                    t.republished += 1;
                    ch.ready.push(self.summary.task_ref(t));
                }
                TaskStatus::Retrying if t.due_at.is_some_and(|d| d < before(now, older_than)) => {
                    t.due_at = None;
                    self.enqueue(i, now, &mut ch);
                }
                // Waiting for its rate limit, its turn long past: its message was lost on the way.
                TaskStatus::Queued
                    if t.blocked_by == Some(BlockedBy::RateLimit)
                        && t.due_at.is_some_and(|d| d < before(now, older_than)) =>
                {
                    self.release_turn(i, &mut ch);
                    self.tasks[i].due_at = None;
                    self.mark_queued(i, now);
                    let t = &self.tasks[i];
                    ch.ready.push(self.summary.task_ref(t));
                }
                _ => continue,
            }
            *budget -= 1;
        }
        ch
    }
}

/// How many times a republish wait doubles at most (10 s becomes at most ~43 min).
pub const MAX_DOUBLINGS: u32 = 8;

/// How long a QUEUED task republished `republished` times waits before the next republish.
pub fn republish_wait(older_than: Duration, republished: u32) -> Duration {
    older_than.saturating_mul(1 << republished.min(MAX_DOUBLINGS))
}
