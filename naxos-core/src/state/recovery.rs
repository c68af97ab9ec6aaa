//! What the sweepers close: expired leases and lost publishes.

use chrono::{DateTime, Utc};

use super::{rules, Changes, ExecutionState};
use crate::model::{AttemptOutcome, TaskStatus};

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
            } else {
                t.error = Some(rules::lease_expired(&owner));
                self.enqueue(i, now, &mut ch);
            }
        }
        self.finish_if_done(now, &mut ch);
        ch
    }

    /// Takes over tasks whose queue message may be lost, at most `budget` of them: QUEUED
    /// since before `before` (stamped as queued at `now`, so the next scan leaves them alone),
    /// and RETRYING due before `before` (made QUEUED). All are returned in `ready`.
    pub fn take_stale(&mut self, before: DateTime<Utc>, now: DateTime<Utc>, budget: &mut usize) -> Changes {
        let mut ch = Changes::default();
        for i in 0..self.tasks.len() {
            if *budget == 0 {
                break;
            }
            let t = &mut self.tasks[i];
            match t.status {
                TaskStatus::Queued if t.queued_at.is_some_and(|q| q < before) => {
                    t.queued_at = Some(now);
                    ch.ready.push(t.task_ref(self.summary.id));
                }
                TaskStatus::Retrying if t.due_at.is_some_and(|d| d < before) => {
                    t.due_at = None;
                    self.enqueue(i, now, &mut ch);
                }
                _ => continue,
            }
            *budget -= 1;
        }
        ch
    }
}
