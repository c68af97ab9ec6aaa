//! Fan-outs: `forEach` tasks and their instances.
//!
//! When the trigger of a `forEach` task holds (and its `when` is true), its list is evaluated
//! once, and the task becomes RUNNING without a lease — no worker runs it — with one
//! **instance** per item: a task run of its own, added to the execution after the tasks of the
//! definition, with the id `task[index]` ([`Instance::task_id`]), the task's function, no
//! dependencies, and its item in its plan. Instances are QUEUED at once and from then on are
//! tasks like any other: claimed, leased, retried, recovered and fenced one by one, by every
//! Store, through the same transitions.
//!
//! The fan-in happens in the transition that ends an instance ([`instance_ended`]): once every
//! instance COMPLETED, the task COMPLETES with their outputs in order; once one FAILED for
//! good, the task FAILS naming it, and its instances not yet started are CANCELLED (those
//! running finish, and change nothing). Each is decided once: only while the task is RUNNING.
//! A list longer than `maxFanOut`, or an expression that fails, FAILS the task; an empty list
//! COMPLETES it with `[]`.
//!
//! A fan-out that starts over (a retry of the execution, a restart from a task at or above it)
//! evaluates its list again and reuses its instance runs by index: an instance that COMPLETED
//! on the same item keeps its output when the execution's failed part is retried; every other
//! starts over under its next attempt number (so a worker of an earlier attempt stays fenced
//! out). Instances past the new list's end are SKIPPED with [`rules::NOT_IN_LIST`] and count
//! for nothing.
//!
//! [`instance_ended`]: ExecutionState::instance_ended

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{rules, Changes, ExecutionState};
use crate::model::{Instance, TaskPlan, TaskRun, TaskStatus};

impl ExecutionState {
    /// Starts the fan-out at `i` (its trigger holds, its condition is true): evaluates its list
    /// and makes its instances QUEUED (not yet announced: see [`settle_fan_out`](Self::settle_fan_out)).
    /// The error is what the task FAILS with.
    pub(super) fn start_fan_out(&mut self, i: usize, list: &str, now: DateTime<Utc>) -> Result<(), String> {
        let items = crate::condition::evaluate_list(list, &self.params, self.completed_upstream(i))?;
        let (slot, rate) = (self.slot_of(i)?, self.rate_of(i)?);
        let max = self.tasks[i].plan.max_fan_out();
        if items.len() > max as usize {
            return Err(rules::too_many_items(items.len(), max));
        }
        self.begin_unleased(i, TaskStatus::Running, None, now);
        let of = self.tasks[i].task_id.clone();
        let mut existing = self.instances_of(&of);
        let count = items.len();
        for (index, item) in items.into_iter().enumerate() {
            let index = index as u32;
            match existing.get(index as usize).copied() {
                Some(k) => {
                    let kept = self.tasks[k].status == TaskStatus::Completed
                        && self.tasks[k].plan.instance.as_ref().is_some_and(|x| x.item == item);
                    if !kept {
                        self.restart_instance(k, item, now);
                        self.tasks[k].slot.clone_from(&slot);
                        self.tasks[k].rate.clone_from(&rate);
                    }
                }
                None => {
                    let k = self.tasks.len();
                    let run = instance_run(&self.tasks[i], index, item);
                    self.tasks.push(run);
                    self.outputs.push(None);
                    self.graph.grow(1);
                    self.mark_queued(k, now);
                    self.tasks[k].slot.clone_from(&slot);
                    self.tasks[k].rate.clone_from(&rate);
                }
            }
        }
        // Instances past the list's end (it was longer in an earlier run) count for nothing.
        for k in existing.drain(..).skip(count) {
            if self.tasks[k].status != TaskStatus::Skipped {
                self.discard_instance(k, now);
            }
        }
        Ok(())
    }

    /// After the fan-out at `i` was announced RUNNING: announces its QUEUED instances, or
    /// completes it at once when it has nothing left to run (an empty list, or every instance
    /// kept from an earlier run).
    pub(super) fn settle_fan_out(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        let live = self.live_instances(&self.tasks[i].task_id);
        let queued: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&k| self.tasks[k].status == TaskStatus::Queued)
            .collect();
        if queued.is_empty() {
            self.fan_in(i, now, ch);
            return;
        }
        for k in queued {
            let t = &self.tasks[k];
            ch.ready.push(self.summary.task_ref(t));
            self.set_task(k, TaskStatus::Queued, None, now, ch);
        }
    }

    /// The instance at `k` just ended: decides its fan-out, if it still runs.
    pub(super) fn instance_ended(&mut self, k: usize, now: DateTime<Utc>, ch: &mut Changes) {
        let Some(of) = self.tasks[k].plan.instance.as_ref().map(|x| x.of.clone()) else {
            return;
        };
        let Some(i) = self.index_of(&of) else {
            return;
        };
        self.fan_in(i, now, ch);
    }

    /// Decides the RUNNING fan-out at `i` from its instances: COMPLETED with their outputs in
    /// order once all completed; FAILED naming the first that failed (its unstarted instances
    /// CANCELLED); else it keeps running.
    fn fan_in(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        if self.tasks[i].status != TaskStatus::Running || self.tasks[i].lease.is_some() {
            return;
        }
        let live = self.live_instances(&self.tasks[i].task_id);
        if let Some(&failed) = live.iter().find(|&&k| self.tasks[k].status == TaskStatus::Failed) {
            let index = self.tasks[failed].plan.instance.as_ref().map_or(0, |x| x.index);
            let error = rules::instance_failed(index, self.tasks[failed].error.as_deref());
            for &k in &live {
                if matches!(
                    self.tasks[k].status,
                    TaskStatus::Pending | TaskStatus::Queued | TaskStatus::Retrying
                ) {
                    let t = &mut self.tasks[k];
                    t.end_time = Some(now);
                    t.due_at = None;
                    self.set_task(k, TaskStatus::Cancelled, None, now, ch);
                }
            }
            self.tasks[i].end_time = Some(now);
            self.fail(i, error, now, ch);
            return;
        }
        if live.iter().all(|&k| self.tasks[k].status == TaskStatus::Completed) {
            let outputs = live
                .iter()
                .map(|&k| self.outputs[k].as_deref().cloned().unwrap_or(Value::Null))
                .collect();
            self.complete(i, Arc::new(Value::Array(outputs)), now, ch);
        }
    }

    /// True when the task at `k` is an instance whose fan-out no longer runs (it FAILED while
    /// this instance ran): the instance must not be queued again.
    pub(super) fn orphaned(&self, k: usize) -> bool {
        let Some(x) = self.tasks[k].plan.instance.as_ref() else {
            return false;
        };
        self.index_of(&x.of)
            .is_none_or(|i| self.tasks[i].status != TaskStatus::Running)
    }

    /// The orphaned instance at `k` (see [`orphaned`](Self::orphaned)) ends CANCELLED instead
    /// of being queued again.
    pub(super) fn cancel_orphan(&mut self, k: usize, now: DateTime<Utc>, ch: &mut Changes) {
        let t = &mut self.tasks[k];
        t.lease = None;
        t.due_at = None;
        t.end_time = Some(now);
        self.set_task(k, TaskStatus::Cancelled, None, now, ch);
    }

    /// The indices of the instance runs of the task `of`, in index order.
    fn instances_of(&self, of: &str) -> Vec<usize> {
        let mut found: Vec<(u32, usize)> = (self.defined..self.tasks.len())
            .filter_map(|k| {
                let x = self.tasks[k].plan.instance.as_ref()?;
                (x.of == of).then_some((x.index, k))
            })
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, k)| k).collect()
    }

    /// The instances of the task `of` in its current list (not SKIPPED as past its end), in
    /// index order.
    fn live_instances(&self, of: &str) -> Vec<usize> {
        let mut live = self.instances_of(of);
        live.retain(|&k| self.tasks[k].status != TaskStatus::Skipped);
        live
    }

    /// The instance at `k` starts over on `item`, QUEUED under its next attempt number.
    fn restart_instance(&mut self, k: usize, item: Value, now: DateTime<Utc>) {
        self.outputs[k] = None;
        let t = &mut self.tasks[k];
        if let Some(x) = Arc::make_mut(&mut t.plan).instance.as_mut() {
            x.item = item;
        }
        t.attempt += 1;
        t.failures = 0;
        t.lease_expiries = 0;
        t.error = None;
        t.due_at = None;
        t.start_time = None;
        t.end_time = None;
        self.mark_queued(k, now);
    }

    /// The instance at `k` leaves its fan-out's list: SKIPPED with [`rules::NOT_IN_LIST`]
    /// under its next attempt number (a worker still on it is fenced out), silently (it is no
    /// task of the definition that anyone waits for).
    fn discard_instance(&mut self, k: usize, now: DateTime<Utc>) {
        self.outputs[k] = None;
        let t = &mut self.tasks[k];
        t.attempt += 1;
        t.status = TaskStatus::Skipped;
        t.blocked_by = None;
        t.error = Some(rules::NOT_IN_LIST.to_string());
        t.lease = None;
        t.due_at = None;
        t.end_time.get_or_insert(now);
    }

    /// Before a restart: the instances of the fan-out at `i` that will not be kept are
    /// discarded, so that nothing runs before the fan-out starts again (`keep_completed`: an
    /// instance that COMPLETED stays, to be kept if its item is the same).
    pub(super) fn discard_instances_of(&mut self, i: usize, keep_completed: bool, now: DateTime<Utc>) {
        for k in self.instances_of(&self.tasks[i].task_id.clone()) {
            let status = self.tasks[k].status;
            if !(keep_completed && status == TaskStatus::Completed) && status != TaskStatus::Skipped {
                self.discard_instance(k, now);
            }
        }
    }
}

/// The run of instance `index` of the fan-out `task`, on `item`: PENDING, attempt 1.
fn instance_run(task: &TaskRun, index: u32, item: Value) -> TaskRun {
    TaskRun::pending(
        Instance::task_id(&task.task_id, index),
        task.name.clone(),
        task.function_name.clone(),
        Vec::new(),
        Arc::new(TaskPlan {
            instance: Some(Instance {
                of: task.task_id.clone(),
                index,
                item,
            }),
            concurrency: task.plan.concurrency.clone(),
            rate_limit: task.plan.rate_limit.clone(),
            ..TaskPlan::default()
        }),
    )
}
