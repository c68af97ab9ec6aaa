//! One execution held in memory, and the task state machine applied to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::backend::{Changes, ClaimRequest, ClaimedTask, NewExecution, StopReason, TaskOutcome};
use crate::model::{
    EventKind, Execution, ExecutionStatus, ExecutionSummary, Lease, StatusEvent, TaskRef, TaskRun, TaskStatus,
};
use crate::{Error, Result};

/// An execution, its tasks and their indices.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) summary: ExecutionSummary,
    params: Arc<Value>,
    tasks: Vec<TaskRun>,
    outputs: Vec<Option<Arc<Value>>>,
    index: HashMap<String, usize>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Record {
    /// A new execution with its root tasks QUEUED.
    pub(super) fn create(new: NewExecution, changes: &mut Changes) -> Self {
        let index: HashMap<String, usize> = new
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.task_id.clone(), i))
            .collect();
        let deps: Vec<Vec<usize>> = new
            .tasks
            .iter()
            .map(|t| t.dependencies.iter().filter_map(|d| index.get(d).copied()).collect())
            .collect();
        let mut dependents = vec![Vec::new(); new.tasks.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let now = new.now;
        let tasks = new
            .tasks
            .into_iter()
            .zip(&deps)
            .map(|(t, ds)| TaskRun {
                task_id: t.task_id,
                name: t.name,
                function_name: t.function_name,
                status: TaskStatus::Pending,
                dependencies: t.dependencies,
                remaining_dependencies: ds.len() as u32,
                attempt: 1,
                attempts: 0,
                failures: 0,
                lease_expiries: 0,
                error: None,
                output: None,
                lease: None,
                queued_at: None,
                due_at: None,
                start_time: None,
                end_time: None,
            })
            .collect::<Vec<_>>();
        let mut record = Self {
            summary: ExecutionSummary {
                id: new.id,
                definition_id: new.definition_id,
                definition_version: new.definition_version,
                status: ExecutionStatus::Pending,
                error: None,
                idempotency_key: new.idempotency_key,
                deadline: new.deadline,
                created_at: now,
                updated_at: now,
                start_time: None,
                end_time: None,
            },
            params: Arc::new(new.params),
            outputs: vec![None; tasks.len()],
            tasks,
            index,
            deps,
            dependents,
        };
        changes.events.push(record.execution_event(now));
        for i in 0..record.tasks.len() {
            if record.deps[i].is_empty() {
                record.enqueue(i, now, changes);
            }
        }
        record
    }

    /// A copy with every task and output, for readers.
    pub(super) fn snapshot(&self) -> Execution {
        let tasks = self
            .tasks
            .iter()
            .zip(&self.outputs)
            .map(|(t, o)| TaskRun {
                output: o.as_deref().cloned(),
                ..t.clone()
            })
            .collect();
        Execution {
            summary: self.summary.clone(),
            data: (*self.params).clone(),
            tasks,
        }
    }

    pub(super) fn is_finished(&self) -> bool {
        self.summary.status.is_terminal()
    }

    pub(super) fn tasks(&self) -> &[TaskRun] {
        &self.tasks
    }

    /// QUEUED/RETRYING → RUNNING under a lease.
    pub(super) fn claim(&mut self, req: &ClaimRequest) -> Result<ClaimedTask> {
        if self.is_finished() {
            return Err(Error::conflict(format!(
                "execution {} is {}",
                self.summary.id, self.summary.status
            )));
        }
        let i = self.guard(&req.task, &[TaskStatus::Queued, TaskStatus::Retrying])?;
        let now = req.now;
        let mut changes = Changes::default();
        let t = &mut self.tasks[i];
        t.attempts += 1;
        t.lease = Some(Lease {
            owner: req.owner.clone(),
            expires_at: req.lease_until,
        });
        t.start_time = Some(now);
        t.end_time = None;
        t.due_at = None;
        let (attempts, failures, queued_at) = (t.attempts, t.failures, t.queued_at);
        if self.summary.status == ExecutionStatus::Pending {
            self.summary.start_time = Some(now);
            self.set_execution(ExecutionStatus::Running, None, now, &mut changes);
        }
        self.set_task(i, TaskStatus::Running, now, &mut changes);
        let upstream: BTreeMap<String, Arc<Value>> = self.deps[i]
            .iter()
            .filter_map(|&d| Some((self.tasks[d].task_id.clone(), self.outputs[d].clone()?)))
            .collect();
        Ok(ClaimedTask {
            task: req.task.clone(),
            definition_id: self.summary.definition_id.clone(),
            definition_version: self.summary.definition_version,
            attempts,
            failures,
            queued_at,
            params: self.params.clone(),
            upstream,
            changes,
        })
    }

    /// Extends a lease; `Ok(false)` when the task was cancelled under it.
    pub(super) fn heartbeat(&mut self, task: &TaskRef, until: DateTime<Utc>) -> Result<bool> {
        let i = self.guard(task, &[TaskStatus::Running, TaskStatus::Cancelled])?;
        let t = &mut self.tasks[i];
        match (t.status, t.lease.as_mut()) {
            (TaskStatus::Running, Some(lease)) => {
                lease.expires_at = until;
                Ok(true)
            }
            (TaskStatus::Cancelled, Some(_)) => Ok(false),
            _ => Err(Error::conflict(format!("task {task} holds no lease"))),
        }
    }

    /// Applies one attempt's outcome.
    pub(super) fn finish(
        &mut self,
        task: &TaskRef,
        outcome: TaskOutcome,
        now: DateTime<Utc>,
        ch: &mut Changes,
    ) -> Result<()> {
        let i = self.guard(task, &[TaskStatus::Running])?;
        let t = &mut self.tasks[i];
        t.lease = None;
        t.end_time = Some(now);
        match outcome {
            TaskOutcome::Completed(output) => {
                t.error = None;
                self.outputs[i] = Some(Arc::new(output));
                self.set_task(i, TaskStatus::Completed, now, ch);
                for k in 0..self.dependents[i].len() {
                    let d = self.dependents[i][k];
                    let dep = &mut self.tasks[d];
                    dep.remaining_dependencies = dep.remaining_dependencies.saturating_sub(1);
                    if dep.remaining_dependencies == 0 && dep.status == TaskStatus::Pending {
                        self.enqueue(d, now, ch);
                    }
                }
            }
            TaskOutcome::Failed {
                error,
                retry_at: Some(due),
            } => {
                t.failures += 1;
                t.attempt += 1;
                t.error = Some(error);
                t.due_at = Some(due);
                let next = t.task_ref(self.summary.id);
                self.set_task(i, TaskStatus::Retrying, now, ch);
                ch.delayed.push((next, due));
            }
            TaskOutcome::Failed { error, retry_at: None } => {
                t.failures += 1;
                self.fail(i, error, now, ch);
            }
        }
        self.finish_if_done(now, ch);
        Ok(())
    }

    /// RUNNING → QUEUED with the next attempt (graceful hand-back).
    pub(super) fn release(&mut self, task: &TaskRef, now: DateTime<Utc>, ch: &mut Changes) -> Result<()> {
        let i = self.guard(task, &[TaskStatus::Running])?;
        self.tasks[i].attempt += 1;
        self.enqueue(i, now, ch);
        Ok(())
    }

    /// Cancels every unfinished task; returns the ones that were running.
    pub(super) fn stop(&mut self, reason: StopReason, now: DateTime<Utc>, ch: &mut Changes) -> Result<Vec<TaskRef>> {
        if self.is_finished() {
            return Err(Error::conflict(format!(
                "execution {} is already {}",
                self.summary.id, self.summary.status
            )));
        }
        let mut running = Vec::new();
        for i in 0..self.tasks.len() {
            let t = &mut self.tasks[i];
            if t.status.is_terminal() {
                continue;
            }
            if t.status == TaskStatus::Running {
                running.push(t.task_ref(self.summary.id));
            } else {
                t.lease = None;
            }
            t.end_time = Some(now);
            t.due_at = None;
            self.set_task(i, TaskStatus::Cancelled, now, ch);
        }
        self.summary.end_time = Some(now);
        match reason {
            StopReason::Cancelled => self.set_execution(ExecutionStatus::Cancelled, None, now, ch),
            StopReason::TimedOut => {
                let error = "the execution ran past its timeoutMs deadline".to_string();
                self.set_execution(ExecutionStatus::Failed, Some(error), now, ch)
            }
        }
        Ok(running)
    }

    /// Resets the failed, skipped and cancelled tasks of a finished execution.
    pub(super) fn retry(&mut self, now: DateTime<Utc>, ch: &mut Changes) -> Result<()> {
        if !matches!(
            self.summary.status,
            ExecutionStatus::Failed | ExecutionStatus::Cancelled
        ) {
            return Err(Error::conflict(format!(
                "execution {} is {}; only FAILED or CANCELLED executions can be retried",
                self.summary.id, self.summary.status
            )));
        }
        self.summary.end_time = None;
        self.set_execution(ExecutionStatus::Running, None, now, ch);
        for i in 0..self.tasks.len() {
            let t = &mut self.tasks[i];
            if !matches!(
                t.status,
                TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled
            ) {
                continue;
            }
            t.attempt += 1;
            t.failures = 0;
            t.lease_expiries = 0;
            t.error = None;
            t.lease = None;
            t.due_at = None;
            t.start_time = None;
            t.end_time = None;
            t.status = TaskStatus::Pending;
        }
        for i in 0..self.tasks.len() {
            if self.tasks[i].status != TaskStatus::Pending {
                continue;
            }
            let remaining = self.deps[i]
                .iter()
                .filter(|&&d| self.tasks[d].status != TaskStatus::Completed)
                .count() as u32;
            self.tasks[i].remaining_dependencies = remaining;
            if remaining == 0 {
                self.enqueue(i, now, ch);
            } else {
                self.set_task(i, TaskStatus::Pending, now, ch);
            }
        }
        Ok(())
    }

    /// Requeues (or fails) running tasks whose lease expired before `now`.
    pub(super) fn recover_expired(
        &mut self,
        now: DateTime<Utc>,
        max_expiries: u32,
        budget: &mut usize,
        ch: &mut Changes,
    ) {
        for i in 0..self.tasks.len() {
            if *budget == 0 {
                break;
            }
            let t = &mut self.tasks[i];
            let expired = t.status == TaskStatus::Running && t.lease.as_ref().is_some_and(|l| l.expires_at < now);
            if !expired {
                continue;
            }
            *budget -= 1;
            let owner = t.lease.take().map(|l| l.owner).unwrap_or_default();
            t.lease_expiries += 1;
            t.attempt += 1;
            t.end_time = Some(now);
            if t.lease_expiries > max_expiries {
                let error = format!(
                    "the lease expired {} times (last held by node `{owner}`): giving up",
                    t.lease_expiries
                );
                self.fail(i, error, now, ch);
            } else {
                t.error = Some(format!("the lease held by node `{owner}` expired; requeued"));
                self.enqueue(i, now, ch);
            }
        }
        self.finish_if_done(now, ch);
    }

    /// Re-announces QUEUED tasks and RETRYING tasks due before `before`.
    pub(super) fn take_stale(
        &mut self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        budget: &mut usize,
        ch: &mut Changes,
    ) {
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
                    self.enqueue(i, now, ch);
                }
                _ => continue,
            }
            *budget -= 1;
        }
    }

    fn guard(&self, task: &TaskRef, statuses: &[TaskStatus]) -> Result<usize> {
        let i = *self
            .index
            .get(&task.task_id)
            .ok_or_else(|| Error::not_found("task", format!("{}/{}", task.execution_id, task.task_id)))?;
        let t = &self.tasks[i];
        if t.attempt != task.attempt || !statuses.contains(&t.status) {
            return Err(Error::conflict(format!(
                "task {task} is stale: the task is {} at attempt {}",
                t.status, t.attempt
            )));
        }
        Ok(i)
    }

    fn enqueue(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        let t = &mut self.tasks[i];
        t.lease = None;
        t.queued_at = Some(now);
        ch.ready.push(t.task_ref(self.summary.id));
        self.set_task(i, TaskStatus::Queued, now, ch);
    }

    /// FAILED, and every transitive dependent still waiting SKIPPED.
    fn fail(&mut self, i: usize, error: String, now: DateTime<Utc>, ch: &mut Changes) {
        self.tasks[i].error = Some(error);
        self.tasks[i].due_at = None;
        self.set_task(i, TaskStatus::Failed, now, ch);
        let failed = self.tasks[i].task_id.clone();
        let mut stack = self.dependents[i].clone();
        while let Some(d) = stack.pop() {
            if self.tasks[d].status.is_terminal() {
                continue;
            }
            self.tasks[d].error = Some(format!("skipped: upstream task `{failed}` failed"));
            self.tasks[d].end_time = Some(now);
            self.set_task(d, TaskStatus::Skipped, now, ch);
            stack.extend_from_slice(&self.dependents[d]);
        }
    }

    fn finish_if_done(&mut self, now: DateTime<Utc>, ch: &mut Changes) {
        if self.is_finished() || !self.tasks.iter().all(|t| t.status.is_terminal()) {
            return;
        }
        let failed = self.tasks.iter().find(|t| t.status == TaskStatus::Failed);
        let (status, error) = match failed {
            Some(t) => (
                ExecutionStatus::Failed,
                Some(format!(
                    "task `{}` failed: {}",
                    t.task_id,
                    t.error.as_deref().unwrap_or("unknown error")
                )),
            ),
            None if self.tasks.iter().any(|t| t.status == TaskStatus::Cancelled) => (ExecutionStatus::Cancelled, None),
            None => (ExecutionStatus::Completed, None),
        };
        self.summary.end_time = Some(now);
        self.set_execution(status, error, now, ch);
    }

    fn set_task(&mut self, i: usize, status: TaskStatus, now: DateTime<Utc>, ch: &mut Changes) {
        let t = &mut self.tasks[i];
        t.status = status;
        self.summary.updated_at = now;
        ch.events.push(StatusEvent {
            execution_id: self.summary.id,
            definition_id: self.summary.definition_id.clone(),
            kind: EventKind::Task {
                task_id: t.task_id.clone(),
                attempt: t.attempt,
                status,
            },
            error: if status.is_terminal() || status == TaskStatus::Retrying {
                t.error.clone()
            } else {
                None
            },
            at: now,
        });
    }

    fn set_execution(&mut self, status: ExecutionStatus, error: Option<String>, now: DateTime<Utc>, ch: &mut Changes) {
        self.summary.status = status;
        self.summary.error = error;
        self.summary.updated_at = now;
        ch.events.push(self.execution_event(now));
    }

    fn execution_event(&self, now: DateTime<Utc>) -> StatusEvent {
        StatusEvent {
            execution_id: self.summary.id,
            definition_id: self.summary.definition_id.clone(),
            kind: EventKind::Execution {
                status: self.summary.status,
            },
            error: self.summary.error.clone(),
            at: now,
        }
    }
}
