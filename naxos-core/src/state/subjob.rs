//! Sub-jobs: a task that runs another definition as a child execution.
//!
//! When the trigger of a `subJob` task holds, the task becomes RUNNING without a lease (no
//! worker runs it), starts an attempt, and names its child: the transition lists it in
//! [`Changes::children`] and the Store creates it **in the same transaction** (see
//! [`ChildStart`]), so a crash never leaves a parent waiting for a child that does not exist.
//! The child's id is derived from (parent, task, attempt) and the Store's clock, so every
//! Store given the same transitions creates the same child.
//!
//! When the child ends, the Store applies [`ExecutionState::child_ended`] to the parent in the
//! transaction that ended the child (a child's transition is the only one that locks two
//! executions, always child before parent): COMPLETED gives the task the child's outputs by
//! task id; FAILED is a retryable failure — while the task's `maxRetry` allows, a new child
//! starts at once under the next attempt; CANCELLED (from elsewhere) fails the task for good.
//!
//! Stopping the parent lists the children of its running sub-jobs in
//! [`Changes::stopped_children`]; the engine stops each after the commit (and their children in
//! turn), and its sweeper stops any child left running under a finished parent.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{rules, Changes, ExecutionState};
use crate::backend::NewExecution;
use crate::model::{
    AttemptOutcome, ExecutionId, ExecutionStatus, ParentLink, Priority, StoredDefinition, TaskKind, TaskRef,
    TaskStatus, TraceParent, MAX_SUB_JOB_DEPTH,
};
use crate::{Error, Result};

/// The node name on the attempt records of a sub-job task (no worker runs them).
pub const SUB_JOB_NODE: &str = "subJob";

/// A child execution that a transition started: the Store creates it, in the same transaction,
/// from its definition version ([`execution`](ChildStart::execution)).
#[derive(Debug, Clone, PartialEq)]
pub struct ChildStart {
    /// The child's id.
    pub id: ExecutionId,
    /// The definition it runs.
    pub definition_id: String,
    /// Its version, pinned.
    pub version: u32,
    /// Its params (an object).
    pub params: Value,
    /// The parent task that started it.
    pub parent: ParentLink,
    /// The parent's trace context, which the child carries on.
    pub traceparent: Option<TraceParent>,
    /// The parent's priority, which the child inherits.
    pub priority: Priority,
}

impl ChildStart {
    /// The new execution to create, of `definition` (the version [`ChildStart::version`] of
    /// [`ChildStart::definition_id`]).
    pub fn execution(self, definition: &StoredDefinition) -> NewExecution {
        NewExecution {
            id: self.id,
            traceparent: self.traceparent,
            priority: self.priority,
            parent: Some(self.parent),
            ..NewExecution::new(definition, self.params)
        }
    }
}

impl ExecutionState {
    /// For an execution a sub-job started, which the transition that changed `before` into
    /// this state just finished: the parent's task to settle with
    /// [`child_ended`](Self::child_ended), in the same transaction.
    pub fn settles_parent(&self, before_finished: bool) -> Option<TaskRef> {
        if before_finished || !self.is_finished() {
            return None;
        }
        self.summary.parent.as_ref().map(ParentLink::task)
    }

    /// Settles the sub-job task `task` (at its attempt) with its child `child`, which ended:
    /// COMPLETED gives the task the child's outputs (`{taskId: output}`); FAILED starts a new
    /// child under the next attempt while the task's `maxRetry` allows, else FAILS the task;
    /// CANCELLED FAILS it for good. `Conflict` when the execution is finished, or the task is not
    /// running that child at that attempt (cancelled, restarted, or a child of an older attempt).
    pub fn child_ended(&mut self, task: &TaskRef, child: &ExecutionState, now: DateTime<Utc>) -> Result<Changes> {
        self.unfinished()?;
        let i = self
            .index_of(&task.task_id)
            .ok_or_else(|| rules::no_task(self.summary.id, &task.task_id))?;
        let t = &self.tasks[i];
        if t.attempt != task.attempt
            || t.status != TaskStatus::Running
            || t.lease.is_some()
            || t.plan.child != Some(child.summary.id)
        {
            return Err(rules::stale(task, t.status, t.attempt));
        }
        let id = child.summary.id;
        let mut ch = Changes::default();
        match child.summary.status {
            ExecutionStatus::Completed => {
                self.end_attempt(i, AttemptOutcome::Completed, None, now, &mut ch);
                self.tasks[i].end_time = Some(now);
                self.complete(i, Arc::new(child.outputs_by_task()), now, &mut ch);
            }
            ExecutionStatus::Failed if self.tasks[i].failures < self.tasks[i].plan.max_retry => {
                let error = rules::sub_job_failed(id, child.summary.error.as_deref());
                self.end_attempt(i, AttemptOutcome::Retrying, Some(error.clone()), now, &mut ch);
                let t = &mut self.tasks[i];
                t.failures += 1;
                t.attempt += 1;
                t.error = Some(error);
                Arc::make_mut(&mut t.plan).child = None;
                self.begin_unleased(i, TaskStatus::Running, None, now);
                self.set_task(i, TaskStatus::Running, None, now, &mut ch);
                self.launch_child(i, now, &mut ch);
            }
            ExecutionStatus::Failed | ExecutionStatus::Cancelled => {
                let error = match child.summary.status {
                    ExecutionStatus::Failed => rules::sub_job_failed(id, child.summary.error.as_deref()),
                    _ => rules::sub_job_cancelled(id),
                };
                self.end_attempt(i, AttemptOutcome::Failed, Some(error.clone()), now, &mut ch);
                let t = &mut self.tasks[i];
                t.failures += 1;
                t.end_time = Some(now);
                self.fail(i, error, now, &mut ch);
            }
            status => {
                return Err(Error::conflict(format!("sub-job {id} has not ended: it is {status}")));
            }
        }
        self.finish_if_done(now, &mut ch);
        Ok(ch)
    }

    /// The outputs of the definition's tasks that COMPLETED, by task id: what a sub-job task
    /// completes with (a fan-out's instances are in their task's output).
    fn outputs_by_task(&self) -> Value {
        let outputs: Map<String, Value> = (0..self.defined)
            .filter(|&i| self.tasks[i].status == TaskStatus::Completed)
            .filter_map(|i| Some((self.tasks[i].task_id.clone(), (**self.outputs[i].as_ref()?).clone())))
            .collect();
        Value::Object(outputs)
    }

    /// Whether the sub-job task at `i` may start a child: its nesting depth, and its params.
    /// The error is what the task FAILS with.
    pub(super) fn check_sub_job(&self, i: usize) -> std::result::Result<(), String> {
        let depth = self.summary.parent.as_ref().map_or(0, |p| p.depth) + 1;
        if depth > MAX_SUB_JOB_DEPTH {
            return Err(format!(
                "sub-job nesting deeper than {MAX_SUB_JOB_DEPTH}: execution {} is already at depth {}",
                self.summary.id,
                depth - 1
            ));
        }
        self.child_params(i).map(drop)
    }

    /// The params of the child of the sub-job task at `i`: its `params` expression over the
    /// params and the outputs of its COMPLETED direct dependencies, or the parent's params.
    fn child_params(&self, i: usize) -> std::result::Result<Value, String> {
        let TaskKind::SubJob(job) = self.tasks[i].plan.kind() else {
            return Err(format!("task {} is not a sub-job", self.tasks[i].task_id));
        };
        match job.params.as_deref() {
            None => Ok((*self.params).clone()),
            Some(source) => {
                crate::condition::evaluate_object("subJob.params", source, &self.params, self.completed_upstream(i))
            }
        }
    }

    /// The sub-job task at `i`, RUNNING and announced, starts its attempt and names its child,
    /// listed in `ch.children` for the Store to create — once: a task announced again in the
    /// same transition (a restart announces every task it reset) already has its child.
    pub(super) fn launch_child(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        if self.tasks[i].plan.child.is_some() {
            return;
        }

        let version = self.tasks[i].plan.sub_job.as_ref().and_then(|j| j.version);
        let (params, version) = match (self.child_params(i), version) {
            (Ok(params), Some(version)) => (params, version),
            (Err(error), _) => {
                self.tasks[i].end_time = Some(now);
                return self.fail(i, error, now, ch);
            }
            (Ok(_), None) => {
                let error = format!("the sub-job of task {} has no pinned version", self.tasks[i].task_id);
                self.tasks[i].end_time = Some(now);
                return self.fail(i, error, now, ch);
            }
        };
        let t = &mut self.tasks[i];
        t.attempts += 1;
        let parent = ParentLink {
            execution_id: self.summary.id,
            task_id: t.task_id.clone(),
            attempt: t.attempt,
            depth: self.summary.parent.as_ref().map_or(0, |p| p.depth) + 1,
        };
        let id = child_id(&parent, now);
        Arc::make_mut(&mut t.plan).child = Some(id);
        let definition_id = t
            .plan
            .sub_job
            .as_ref()
            .map(|j| j.definition_id.clone())
            .unwrap_or_default();
        self.begin_attempt(i, SUB_JOB_NODE, now, ch);
        ch.children.push(ChildStart {
            id,
            definition_id,
            version,
            params,
            parent,
            traceparent: self.summary.traceparent,
            priority: self.summary.priority,
        });
    }
}

/// The id of the child that `parent` starts at `now`: a UUIDv7 of `now`'s millisecond, its
/// other bits from a hash of the parent task and attempt — the same in every Store — and its
/// lowest four bits the parent execution's, so a Store that shards executions by those bits
/// keeps a family in one shard.
fn child_id(parent: &ParentLink, now: DateTime<Utc>) -> ExecutionId {
    let mut bytes = [0u8; 10];
    for (k, chunk) in bytes.chunks_mut(5).enumerate() {
        let mut h = std::hash::DefaultHasher::new();
        (k, parent.execution_id, &parent.task_id, parent.attempt).hash(&mut h);
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    let parent_low = parent.execution_id.as_bytes()[15] & 0x0f;
    bytes[9] = (bytes[9] & 0xf0) | parent_low;
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::backend::StopReason;
    use crate::model::{JobDefinition, TaskBuilder};

    #[test]
    fn a_restart_above_a_cancelled_sub_job_starts_one_child() {
        let def = JobDefinition::builder("p")
            .task(TaskBuilder::new("empty", "f").for_each("[]"))
            .task(TaskBuilder::sub_job("later", "c").after(["empty"]))
            .build();
        let stored = Arc::new(StoredDefinition::new(1, Utc::now(), def));
        let mut new = NewExecution::new(&stored, json!({}));
        new.pin_sub_jobs(|_| Some(1));
        let now = Utc::now();
        let (mut state, created) = ExecutionState::create(new, now).unwrap();
        assert_eq!(created.children.len(), 1, "{created:?}");
        state.stop(StopReason::Cancelled, now).unwrap();
        let restarted = state.retry_from("empty", None, now).unwrap();
        let call = &state.tasks()[state.index_of("later").unwrap()];
        assert_eq!(restarted.children.len(), 1, "{:?}", restarted.children);
        assert_eq!(
            (call.attempt, call.attempts, call.history.len()),
            (2, 2, 2),
            "{:?}",
            call.history
        );
    }
}
