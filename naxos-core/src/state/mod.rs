//! The execution state machine, written once.
//!
//! An [`ExecutionState`] is one execution with its task runs and dependency graph; every
//! transition is a method that takes the operation and `now` (the Store's clock) and returns
//! the [`Changes`] it made — tasks made ready or delayed, status events, attempt records — or a
//! typed error that leaves the state as it was. No I/O, no async, no clock.
//!
//! Every Store applies these functions: the in-memory store keeps the states in a map; a store
//! of rows loads one execution under its lock, applies the transition, and writes back what
//! changed. A backend may hand-write a hot path in its own query language for plain tasks; the
//! differential test of the conformance suite holds it to these functions.
//!
//! | file | transitions |
//! | --- | --- |
//! | `run.rs` | claim, heartbeat, finish (complete / retry at / fail), release |
//! | `control.rs` | stop (cancel, timeout), retry of the failed part, restart from a task |
//! | `recovery.rs` | lease-expiry recovery, stale-publish take-over |
//! | `trigger.rs` | which waiting tasks a change starts or rules out: triggers, `when` conditions |
//! | `wait.rs` | durable waits: `sleep` and `waitFor` tasks woken when due, signals |
//! | `fanout.rs` | `forEach` tasks: their instances, and the fan-in when those end |
//! | `delay.rs` | delayed executions (`delayMs`, `runAt`): started when their time comes |
//! | `subjob.rs` | `subJob` tasks: the child each attempt starts, and the task settled when it ends |
//! | `admission.rs` | tasks blocked instead of claimed (a paused definition), and admitted again |
//! | `concurrency.rs` | concurrency limits: the slot a claim takes, runs waiting for one, admitted as slots free |
//! | `rate.rs` | rate limits: the window of recent starts a claim is decided by, turns booked for the rest |
//! | `rules.rs` | how an execution ends, how a finished task counts for triggers, error and event texts |
//!
//! The rules it owns: fencing by attempt (a transition names the attempt it is for and fails
//! with `Conflict` on any other), fan-in counting (a dependent becomes QUEUED when its trigger
//! holds — for the default `allSuccess`, when its last dependency completes —, once), `when`
//! conditions evaluated once when the trigger holds, a task SKIPPED as soon as its trigger can
//! no longer hold (for `allSuccess`: every transitive dependent of a FAILED task), and the
//! execution ending exactly once, as [`rules::verdict`] says.

mod admission;
mod changes;
mod concurrency;
mod control;
mod delay;
mod family;
mod fanout;
mod graph;
mod rate;
mod recovery;
pub mod rules;
mod run;
mod subjob;
mod trigger;
mod wait;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use admission::{Admitted, Block};
pub use changes::{Changes, HistoryEntry};
pub use concurrency::{scope, MAX_SCOPE_LEN};
pub use family::{settle_family, Family, FamilyStep, FamilyWalk, Transitioned};
pub use graph::Graph;
pub use rate::{RateVerdict, RateWindow};
pub use recovery::{republish_wait, MAX_DOUBLINGS};
pub use subjob::{ChildStart, SUB_JOB_NODE};

use crate::backend::NewExecution;
use crate::clock::after;
use crate::model::{
    Attempt, AttemptOutcome, Execution, ExecutionStatus, ExecutionSummary, Signal, TaskRef, TaskRun, TaskStatus,
};
use crate::{Error, Result};

/// One execution: its summary, params, task runs with their outputs and attempt history, and
/// its dependency graph.
///
/// The task runs are the definition's tasks in sorted id order, then the instances of its
/// fan-outs (see `fanout.rs`) in the order they were added — the order of a Store's positions.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionState {
    summary: ExecutionSummary,
    params: Arc<Value>,
    /// The task runs; their `output` is kept in `outputs` instead.
    tasks: Vec<TaskRun>,
    /// How many of `tasks` are the definition's (the rest are fan-out instances).
    defined: usize,
    outputs: Vec<Option<Arc<Value>>>,
    graph: Graph,
    /// Signals received that no task consumed yet, in order.
    signals: Vec<Signal>,
}

impl ExecutionState {
    /// A new PENDING execution, created at `now`, with its root tasks QUEUED — or decided by
    /// their `when` conditions: SKIPPED or FAILED (with what that decides below them), and the
    /// execution then finished at once if no task is left to run.
    ///
    /// With a [`NewExecution::delay`] still ahead of `now`, no task is decided: the execution
    /// waits for its time, listed in [`Changes::scheduled`] (see `delay.rs`). A delay beyond
    /// [`Delay::MAX`](crate::model::Delay::MAX) is `InvalidInput` naming its parameter.
    pub fn create(new: NewExecution, now: DateTime<Utc>) -> Result<(Self, Changes)> {
        let scheduled_for = new.delay.map(|d| d.start(now)).transpose()?.flatten();
        let mut tasks: Vec<TaskRun> = new
            .tasks
            .iter()
            .map(|t| {
                TaskRun::pending(
                    t.task_id.clone(),
                    t.name.clone(),
                    t.function_name.clone(),
                    t.dependencies.clone(),
                    t.plan.clone(),
                )
            })
            .collect();
        if !tasks.is_sorted_by(|a, b| a.task_id <= b.task_id) {
            tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        }
        let graph = graph_of(&tasks)?;
        for (i, t) in tasks.iter_mut().enumerate() {
            t.remaining_dependencies = graph.dependencies(i).len() as u32;
        }
        let defined = tasks.len();
        let mut state = Self {
            summary: ExecutionSummary {
                id: new.id,
                definition_id: new.definition_id,
                definition_version: new.definition_version,
                status: ExecutionStatus::Pending,
                error: None,
                idempotency_key: new.idempotency_key,
                traceparent: new.traceparent,
                schedule_id: new.schedule_id,
                deadline: new.timeout.map(|t| after(scheduled_for.unwrap_or(now), t)),
                created_at: now,
                updated_at: now,
                start_time: None,
                end_time: None,
                scheduled_for,
                parent: new.parent,
                priority: new.priority,
            },
            params: Arc::new(new.params),
            outputs: vec![None; tasks.len()],
            tasks,
            defined,
            graph,
            signals: Vec::new(),
        };
        let mut changes = Changes::default();
        changes.events.push(state.execution_event(now));
        match scheduled_for {
            Some(at) => changes.scheduled.push((state.summary.id, at)),
            None => state.start_roots(now, &mut changes),
        }
        Ok((state, changes))
    }

    /// Decides the root tasks (QUEUED, or as their conditions say) and what that decides below
    /// them, and finishes the execution if nothing is left to run.
    fn start_roots(&mut self, now: DateTime<Utc>, ch: &mut Changes) {
        let roots: Vec<(usize, bool)> = (0..self.tasks.len())
            .filter(|&i| self.graph.dependencies(i).is_empty())
            .map(|i| (i, false))
            .collect();
        let moved = self.decide(roots, now);
        self.announce(moved, now, ch);
        self.finish_if_done(now, ch);
    }

    /// The state of a stored execution, as [`Store::get_execution`](crate::backend::Store::get_execution)
    /// returns it (outputs in the task runs; the history may be left out, since transitions only
    /// append to it). Fan-out instances keep the order they come in: a Store gives them in the
    /// order of their positions, which is the order they were added.
    pub fn from_execution(execution: Execution) -> Result<Self> {
        let Execution { summary, data, tasks } = execution;
        let (mut tasks, instances): (Vec<TaskRun>, Vec<TaskRun>) =
            tasks.into_iter().partition(|t| t.plan.instance.is_none());
        tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let defined = tasks.len();
        let mut graph = graph_of(&tasks)?;
        graph.grow(instances.len());
        tasks.extend(instances);
        let outputs = tasks.iter_mut().map(|t| t.output.take().map(Arc::new)).collect();
        Ok(Self {
            summary,
            params: Arc::new(data),
            tasks,
            defined,
            outputs,
            graph,
            signals: Vec::new(),
        })
    }

    /// The execution as readers see it: every task with its output.
    pub fn snapshot(&self) -> Execution {
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

    /// Id, status and timestamps.
    pub fn summary(&self) -> &ExecutionSummary {
        &self.summary
    }

    /// The params.
    pub fn params(&self) -> &Arc<Value> {
        &self.params
    }

    /// The task runs in sorted id order (their `output` is `None`: see [`output`](Self::output)).
    pub fn tasks(&self) -> &[TaskRun] {
        &self.tasks
    }

    /// The output of the task at `index`, once it COMPLETED.
    pub fn output(&self, index: usize) -> Option<&Arc<Value>> {
        self.outputs[index].as_ref()
    }

    /// The dependency graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The index of a task id (of the definition's tasks, or of a fan-out instance).
    pub fn index_of(&self, task_id: &str) -> Option<usize> {
        if task_id.contains('[') {
            return (self.defined..self.tasks.len()).find(|&k| self.tasks[k].task_id == task_id);
        }
        self.tasks[..self.defined]
            .binary_search_by(|t| t.task_id.as_str().cmp(task_id))
            .ok()
    }

    /// True once the execution reached a terminal status.
    pub fn is_finished(&self) -> bool {
        self.summary.status.is_terminal()
    }

    /// True when the execution is unfinished, not waiting for its time, and its deadline is
    /// before `now` ([`ExecutionSummary::is_overdue`]).
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.summary.is_overdue(now)
    }

    /// The index of `task` if it is at `task.attempt` in one of `statuses`; the fencing guard.
    /// A fan-out is RUNNING without a lease, and no worker's: it is never a running task here.
    fn guard(&self, task: &TaskRef, statuses: &[TaskStatus]) -> Result<usize> {
        let i = self
            .index_of(&task.task_id)
            .ok_or_else(|| rules::no_task(self.summary.id, &task.task_id))?;
        let t = &self.tasks[i];
        let fan_out = t.status == TaskStatus::Running && t.lease.is_none();
        if t.attempt != task.attempt || !statuses.contains(&t.status) || fan_out {
            return Err(rules::stale(task, t.status, t.attempt));
        }
        Ok(i)
    }

    /// Fails with `Conflict` once the execution is finished.
    fn unfinished(&self) -> Result<()> {
        if self.is_finished() {
            return Err(rules::finished(self.summary.id, self.summary.status));
        }
        Ok(())
    }

    /// The task becomes QUEUED: announced, and its message to publish.
    fn enqueue(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        self.free_slot(i, ch);
        self.mark_queued(i, now);
        self.announce(vec![i], now, ch);
    }

    /// The task starts at `now` in `status` without a worker (a wait, WAITING until `due`; a
    /// fan-out, RUNNING while its instances run), not yet announced.
    fn begin_unleased(&mut self, i: usize, status: TaskStatus, due: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        let t = &mut self.tasks[i];
        t.status = status;
        t.lease = None;
        t.queued_at = None;
        t.due_at = due;
        t.start_time = Some(now);
        t.end_time = None;
    }

    /// The task becomes QUEUED at `now`, not yet announced.
    fn mark_queued(&mut self, i: usize, now: DateTime<Utc>) {
        let t = &mut self.tasks[i];
        t.status = TaskStatus::Queued;
        t.lease = None;
        t.queued_at = Some(now);
        t.republished = 0;
        t.blocked_by = None;
    }

    /// COMPLETED with `output`: counted down in every dependent still waiting, and those
    /// decided (QUEUED when their trigger holds and their condition is true).
    fn complete(&mut self, i: usize, output: Arc<Value>, now: DateTime<Utc>, ch: &mut Changes) {
        let t = &mut self.tasks[i];
        t.lease = None;
        t.end_time = Some(now);
        t.error = None;
        t.due_at = None;
        self.outputs[i] = Some(output);
        self.set_task(i, TaskStatus::Completed, None, now, ch);
        // Fan-in: only a dependent still waiting counts down, then its trigger decides.
        for k in 0..self.graph.dependents(i).len() {
            let dep = &mut self.tasks[self.graph.dependents(i)[k]];
            if dep.status == TaskStatus::Pending {
                dep.remaining_dependencies = dep.remaining_dependencies.saturating_sub(1);
            }
        }
        self.decide_below(i, false, now, ch);
        self.instance_ended(i, now, ch);
    }

    /// The outputs of the COMPLETED direct dependencies of the task at `i`, by task id.
    fn completed_upstream(&self, i: usize) -> impl Iterator<Item = (&str, &Value)> {
        self.graph
            .dependencies(i)
            .iter()
            .filter_map(|&d| Some((self.tasks[d].task_id.as_str(), &**self.outputs[d].as_ref()?)))
    }

    /// FAILED with `error`, and the tasks waiting below it decided (with the default trigger,
    /// every transitive dependent still waiting SKIPPED).
    fn fail(&mut self, i: usize, error: String, now: DateTime<Utc>, ch: &mut Changes) {
        let t = &mut self.tasks[i];
        t.error = Some(error.clone());
        t.due_at = None;
        self.set_task(i, TaskStatus::Failed, Some(error), now, ch);
        self.decide_below(i, true, now, ch);
        self.instance_ended(i, now, ch);
    }

    /// Decides the tasks waiting on the task at `i`, which just ended (`scan`: otherwise than
    /// COMPLETED), and announces what moved.
    fn decide_below(&mut self, i: usize, scan: bool, now: DateTime<Utc>, ch: &mut Changes) {
        let below: Vec<(usize, bool)> = self.graph.dependents(i).iter().map(|&d| (d, scan)).collect();
        if below.is_empty() {
            return;
        }
        let moved = self.decide(below, now);
        self.announce(moved, now, ch);
    }

    /// A PENDING execution becomes RUNNING: a task of it started (claimed, or waiting).
    fn mark_started(&mut self, now: DateTime<Utc>, ch: &mut Changes) {
        self.summary.start_time.get_or_insert(now);
        if self.summary.status == ExecutionStatus::Pending {
            self.set_execution(ExecutionStatus::Running, None, now, ch);
        }
    }

    /// Ends the execution as [`rules::verdict`] says, once every task is terminal.
    fn finish_if_done(&mut self, now: DateTime<Utc>, ch: &mut Changes) {
        if self.is_finished() {
            return;
        }
        if let Some((status, error)) = rules::verdict(&self.tasks) {
            self.summary.end_time = Some(now);
            self.set_execution(status, error, now, ch);
        }
    }

    fn set_task(&mut self, i: usize, status: TaskStatus, error: Option<String>, now: DateTime<Utc>, ch: &mut Changes) {
        // A run holds its slot while RUNNING, and while QUEUED once admitted to one.
        if !matches!(status, TaskStatus::Running | TaskStatus::Queued) {
            self.free_slot(i, ch);
        }
        if status.is_terminal() {
            self.release_turn(i, ch);
        }
        let t = &mut self.tasks[i];
        // A task that ended waits for nothing (a Store's index of blocked runs must not list it).
        if status.is_terminal() {
            t.blocked_by = None;
        }
        t.status = status;
        self.summary.updated_at = now;
        ch.events.push(rules::task_event(
            self.summary.id,
            &self.summary.definition_id,
            &t.task_id,
            t.attempt,
            status,
            error,
            now,
        ));
    }

    fn set_execution(&mut self, status: ExecutionStatus, error: Option<String>, now: DateTime<Utc>, ch: &mut Changes) {
        self.summary.status = status;
        self.summary.error = error;
        self.summary.updated_at = now;
        ch.events.push(self.execution_event(now));
    }

    fn execution_event(&self, now: DateTime<Utc>) -> crate::model::StatusEvent {
        rules::execution_event(
            self.summary.id,
            &self.summary.definition_id,
            self.summary.status,
            self.summary.error.clone(),
            now,
        )
    }

    /// Starts the attempt record of the task at `i`, claimed by `node`.
    fn begin_attempt(&mut self, i: usize, node: &str, now: DateTime<Utc>, ch: &mut Changes) {
        let t = &mut self.tasks[i];
        let record = Attempt {
            attempt: t.attempt,
            node: node.into(),
            started_at: now,
            ended_at: None,
            outcome: None,
            error: None,
        };
        // Most tasks run once: no room kept for more records than there are.
        t.history.reserve_exact(1);
        t.history.push(record.clone());
        ch.history.push(HistoryEntry {
            execution_id: self.summary.id,
            task_id: t.task_id.clone(),
            record,
        });
    }

    /// Ends the record of the attempt the task at `i` is running now (call it before the
    /// lease is cleared or the attempt number moves).
    fn end_attempt(
        &mut self,
        i: usize,
        outcome: AttemptOutcome,
        error: Option<String>,
        now: DateTime<Utc>,
        ch: &mut Changes,
    ) {
        let t = &mut self.tasks[i];
        let attempt = t.attempt;
        let record = match t.history.iter_mut().rev().find(|r| r.attempt == attempt) {
            Some(r) => r,
            None => {
                // A state loaded without its history: the task still names who ran it (a
                // sub-job: no worker).
                let node = match (&t.lease, &t.plan.sub_job) {
                    (Some(l), _) => l.owner.as_str().into(),
                    (None, Some(_)) => SUB_JOB_NODE.into(),
                    (None, None) => "".into(),
                };
                t.history.push(Attempt {
                    attempt,
                    node,
                    started_at: t.start_time.unwrap_or(now),
                    ended_at: None,
                    outcome: None,
                    error: None,
                });
                t.history.last_mut().expect("just pushed")
            }
        };
        record.ended_at = Some(now);
        record.outcome = Some(outcome);
        record.error = error;
        ch.history.push(HistoryEntry {
            execution_id: self.summary.id,
            task_id: t.task_id.clone(),
            record: record.clone(),
        });
    }
}

fn graph_of(tasks: &[TaskRun]) -> Result<Graph> {
    Graph::new(
        tasks
            .iter()
            .map(|t| (t.task_id.as_str(), t.dependencies.iter().map(String::as_str))),
    )
    .map_err(|e| Error::InvalidInput(format!("execution graph: {e}")))
}
