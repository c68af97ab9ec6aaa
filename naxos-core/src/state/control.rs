//! Operator actions on a whole execution: stop (cancel, timeout), retry of the failed part, and
//! restart from a task.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{rules, Changes, ExecutionState};
use crate::backend::{StopOutcome, StopReason};
use crate::clock::after;
use crate::model::{AttemptOutcome, ExecutionStatus, TaskStatus};
use crate::Result;

impl ExecutionState {
    /// Every unfinished task becomes CANCELLED and the execution CANCELLED, or FAILED for a
    /// timeout — or FAILED naming the task when one had already failed for good. Running tasks keep their lease, so their worker's next heartbeat learns of it;
    /// their attempts end CANCELLED. `Conflict` when the execution is already finished.
    pub fn stop(&mut self, reason: StopReason, now: DateTime<Utc>) -> Result<StopOutcome> {
        self.unfinished()?;
        let mut ch = Changes::default();
        let mut running = Vec::new();
        for i in 0..self.tasks.len() {
            let status = self.tasks[i].status;
            if status.is_terminal() {
                continue;
            }
            // A fan-out is RUNNING without a lease: no worker runs it (its instances are tasks).
            if status == TaskStatus::Running && self.tasks[i].lease.is_some() {
                running.push(self.summary.task_ref(&self.tasks[i]));
                self.end_attempt(i, AttemptOutcome::Cancelled, None, now, &mut ch);
            } else {
                self.tasks[i].lease = None;
                let t = &self.tasks[i];
                if let (TaskStatus::Running, Some(child)) = (status, t.plan.child.filter(|_| t.plan.sub_job.is_some()))
                {
                    // A sub-job: its child is stopped after the commit.
                    ch.stopped_children.push(child);
                    self.end_attempt(i, AttemptOutcome::Cancelled, None, now, &mut ch);
                }
            }
            let t = &mut self.tasks[i];
            t.end_time = Some(now);
            // Its `blockedBy` goes with the status change, which gives back what it waited for.
            self.set_task(i, TaskStatus::Cancelled, None, now, &mut ch);
            self.tasks[i].due_at = None;
        }
        self.summary.end_time = Some(now);
        // A task that already FAILED decides the outcome: the execution FAILS naming it.
        let (status, error) = match (rules::verdict(&self.tasks), reason) {
            (Some((ExecutionStatus::Failed, error)), _) => (ExecutionStatus::Failed, error),
            (_, StopReason::Cancelled) => (ExecutionStatus::Cancelled, None),
            (_, StopReason::TimedOut) => (ExecutionStatus::Failed, Some(rules::TIMED_OUT.to_string())),
        };
        self.set_execution(status, error, now, &mut ch);
        Ok(StopOutcome {
            status,
            running,
            changes: ch,
        })
    }

    /// Re-runs the failed part of a FAILED or CANCELLED execution: its FAILED and CANCELLED
    /// tasks, those SKIPPED below a failure, and every task below one of them, start over (next
    /// attempt number, fresh retry budget, no output); those whose trigger holds become QUEUED
    /// (as their condition says), the rest PENDING, and the execution RUNNING with a fresh
    /// deadline (its definition version's `timeout`, counted from now). A task skipped by its own
    /// condition, or on a branch not taken, with nothing failed above it, stays as it is: its
    /// inputs did not change. `Conflict` for any other execution status.
    pub fn retry(&mut self, timeout: Option<Duration>, now: DateTime<Utc>) -> Result<Changes> {
        if !matches!(
            self.summary.status,
            ExecutionStatus::Failed | ExecutionStatus::Cancelled
        ) {
            return Err(rules::not_retryable(self.summary.id, self.summary.status));
        }
        // A failed instance starts over with its fan-out (which failed too), keeping the
        // instances that completed.
        let failed = (0..self.defined)
            .filter(|&i| rules::outcome(&self.tasks[i]) == Some(rules::Outcome::Failed))
            .collect();
        Ok(self.restart(failed, true, timeout, now))
    }

    /// Re-runs the task `task_id` and every task below it, keeping what the others did (their
    /// outputs feed the re-run): on a FAILED, CANCELLED or COMPLETED execution, which becomes
    /// RUNNING with a fresh deadline (`timeout`, its definition version's, from now). The task
    /// starts over as [`retry`](Self::retry) starts
    /// tasks over (QUEUED when its trigger holds, as its condition says); a task elsewhere that
    /// failed or was cancelled stays so, and decides the execution's end as before.
    /// `Conflict` on a PENDING or RUNNING execution; `NotFound` for an unknown task.
    pub fn retry_from(&mut self, task_id: &str, timeout: Option<Duration>, now: DateTime<Utc>) -> Result<Changes> {
        if !self.summary.status.is_terminal() {
            return Err(rules::not_restartable(self.summary.id, self.summary.status));
        }
        let i = self
            .index_of(task_id)
            .filter(|&i| i < self.defined)
            .ok_or_else(|| rules::no_task(self.summary.id, task_id))?;
        Ok(self.restart(vec![i], false, timeout, now))
    }

    /// Starts over the tasks of `roots` (of the definition) and every task below them, and the
    /// execution. A fan-out among them starts over with its list evaluated again; with
    /// `keep_completed`, its instances that completed on the same item are kept.
    fn restart(
        &mut self,
        roots: Vec<usize>,
        keep_completed: bool,
        timeout: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Changes {
        let mut ch = Changes::default();
        self.summary.end_time = None;
        // The job's timeout counts again from the retry: the old deadline has passed, or is near.
        // (It is the definition's, given by the Store: the old deadline's distance from an anchor
        // would count the time between two retries in.)
        self.summary.deadline = timeout.map(|t| after(now, t));
        self.set_execution(ExecutionStatus::Running, None, now, &mut ch);
        let mut stack = roots;
        let mut reset = vec![false; self.tasks.len()];
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut reset[i], true) {
                stack.extend_from_slice(self.graph.dependents(i));
            }
        }
        let reset: Vec<usize> = (0..self.defined).filter(|&i| reset[i]).collect();
        for &i in &reset {
            if self.tasks[i].plan.for_each.is_some() {
                self.discard_instances_of(i, keep_completed, now);
            }
        }
        for &i in &reset {
            self.outputs[i] = None;
            let t = &mut self.tasks[i];
            t.attempt += 1;
            t.failures = 0;
            t.lease_expiries = 0;
            t.error = None;
            t.lease = None;
            t.due_at = None;
            t.start_time = None;
            t.end_time = None;
            t.blocked_by = None;
            t.status = TaskStatus::Pending;
        }
        for &i in &reset {
            let remaining = self
                .graph
                .dependencies(i)
                .iter()
                .filter(|&&d| self.tasks[d].status != TaskStatus::Completed)
                .count() as u32;
            self.tasks[i].remaining_dependencies = remaining;
        }
        // Every task that starts over is announced: QUEUED, decided by its condition or
        // trigger, or PENDING.
        self.decide(reset.iter().map(|&i| (i, true)), now);
        self.announce(reset, now, &mut ch);
        self.finish_if_done(now, &mut ch);
        ch
    }
}
