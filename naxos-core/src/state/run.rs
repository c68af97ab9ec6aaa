//! A task's run: claim, heartbeat, finish (complete / retry at / fail), release.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{rules, Changes, ExecutionState};
use crate::backend::{ClaimRequest, ClaimedTask, LeaseState, TaskOutcome};
use crate::clock::after;
use crate::model::{AttemptOutcome, Lease, TaskRef, TaskStatus};
use crate::Result;

impl ExecutionState {
    /// QUEUED or RETRYING → RUNNING under a lease for `req.owner` until `req.lease` after
    /// `now`, starting an attempt record; a PENDING execution becomes RUNNING. Returns what
    /// the task needs to run.
    ///
    /// `Conflict` when the execution is finished or the task is not at `req.task.attempt`
    /// waiting to run: the message that asked for it is a duplicate.
    pub fn claim(&mut self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<ClaimedTask> {
        self.unfinished()?;
        let i = self.guard(&req.task, &[TaskStatus::Queued, TaskStatus::Retrying])?;
        Ok(self.claim_at(i, req, now))
    }

    /// [`claim`](Self::claim) of the task at `i`, which its guard let through.
    pub(super) fn claim_at(&mut self, i: usize, req: &ClaimRequest, now: DateTime<Utc>) -> ClaimedTask {
        let mut changes = Changes::default();
        let t = &mut self.tasks[i];
        t.attempts += 1;
        t.lease = Some(Lease {
            owner: req.owner.clone(),
            expires_at: after(now, req.lease),
        });
        t.start_time = Some(now);
        t.end_time = None;
        t.due_at = None;
        t.blocked_by = None;
        let (attempts, failures, queued_at) = (t.attempts, t.failures, t.queued_at);
        let instance = t.plan.instance.as_ref().map(|x| (x.index, x.item.clone()));
        self.mark_started(now, &mut changes);
        self.set_task(i, TaskStatus::Running, None, now, &mut changes);
        self.begin_attempt(i, &req.owner, now, &mut changes);
        ClaimedTask {
            task: req.task.clone(),
            definition_id: self.summary.definition_id.clone(),
            definition_version: self.summary.definition_version,
            attempts,
            failures,
            queued_at,
            params: self.params.clone(),
            upstream: self.upstream(i),
            instance,
            traceparent: self.summary.traceparent,
            changes,
        }
    }

    /// The outputs of the direct dependencies of the task at `i` that have one, by task id (of
    /// its fan-out's, for an instance).
    fn upstream(&self, i: usize) -> BTreeMap<String, Arc<Value>> {
        let i = match &self.tasks[i].plan.instance {
            Some(x) => self.index_of(&x.of).unwrap_or(i),
            None => i,
        };
        self.graph
            .dependencies(i)
            .iter()
            .filter_map(|&d| Some((self.tasks[d].task_id.clone(), self.outputs[d].clone()?)))
            .collect()
    }

    /// Extends a RUNNING task's lease to `lease` after `now`. [`LeaseState::Cancelled`] when
    /// the execution was stopped under the lease; `Conflict` when the lease is lost.
    pub fn heartbeat(&mut self, task: &TaskRef, lease: Duration, now: DateTime<Utc>) -> Result<LeaseState> {
        let i = self.guard(task, &[TaskStatus::Running, TaskStatus::Cancelled])?;
        let lease_for = lease;
        let t = &mut self.tasks[i];
        match (t.status, t.lease.as_mut()) {
            (TaskStatus::Running, Some(lease)) => {
                lease.expires_at = after(now, lease_for);
                Ok(LeaseState::Active)
            }
            (TaskStatus::Cancelled, Some(_)) => Ok(LeaseState::Cancelled),
            _ => Err(rules::stale(task, t.status, t.attempt)),
        }
    }

    /// Records one attempt's outcome, guarded by its attempt:
    ///
    /// - completed: store the output, count it down in every dependent still waiting, and
    ///   decide those (QUEUED when their trigger holds and their condition is true);
    /// - failed with `retry_in`: RETRYING under the next attempt number, due that long after `now`
    ///   (an instance whose fan-out already failed: CANCELLED instead);
    /// - failed without: FAILED, and the tasks waiting below decided (with the default trigger,
    ///   every transitive dependent still waiting SKIPPED).
    ///
    /// The execution ends when every task is terminal.
    pub fn finish(&mut self, task: &TaskRef, outcome: TaskOutcome, now: DateTime<Utc>) -> Result<Changes> {
        let i = self.guard(task, &[TaskStatus::Running])?;
        let mut ch = Changes::default();
        match outcome {
            TaskOutcome::Completed(output) => {
                self.end_attempt(i, AttemptOutcome::Completed, None, now, &mut ch);
                self.complete(i, Arc::new(output), now, &mut ch);
            }
            TaskOutcome::Failed {
                error,
                retry_in: Some(_),
            } if self.orphaned(i) => {
                self.end_attempt(i, AttemptOutcome::Failed, Some(error), now, &mut ch);
                self.cancel_orphan(i, now, &mut ch);
            }
            TaskOutcome::Failed {
                error,
                retry_in: Some(delay),
            } => {
                let due = after(now, delay);
                self.end_attempt(i, AttemptOutcome::Retrying, Some(error.clone()), now, &mut ch);
                let t = &mut self.tasks[i];
                t.lease = None;
                t.end_time = Some(now);
                t.failures += 1;
                t.attempt += 1;
                t.error = Some(error.clone());
                t.due_at = Some(due);
                let next = self.summary.task_ref(t);
                self.set_task(i, TaskStatus::Retrying, Some(error), now, &mut ch);
                ch.delayed.push((next, due));
            }
            TaskOutcome::Failed { error, retry_in: None } => {
                self.end_attempt(i, AttemptOutcome::Failed, Some(error.clone()), now, &mut ch);
                let t = &mut self.tasks[i];
                t.lease = None;
                t.end_time = Some(now);
                t.failures += 1;
                self.fail(i, error, now, &mut ch);
            }
        }
        self.finish_if_done(now, &mut ch);
        Ok(ch)
    }

    /// RUNNING → QUEUED under the next attempt number: the worker hands the task back (shutdown).
    pub fn release(&mut self, task: &TaskRef, now: DateTime<Utc>) -> Result<Changes> {
        let i = self.guard(task, &[TaskStatus::Running])?;
        let mut ch = Changes::default();
        self.end_attempt(i, AttemptOutcome::Released, None, now, &mut ch);
        self.tasks[i].attempt += 1;
        if self.orphaned(i) {
            self.cancel_orphan(i, now, &mut ch);
            self.finish_if_done(now, &mut ch);
        } else {
            self.enqueue(i, now, &mut ch);
        }
        Ok(ch)
    }
}
