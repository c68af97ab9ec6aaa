//! Which waiting tasks a change lets start, and which it rules out: triggers and `when`
//! conditions.
//!
//! After a task finishes (or an execution is created or retried), the PENDING tasks below it are
//! **decided**, one cascade per transition:
//!
//! - its trigger holds: the task's `when` is evaluated (once) — true or none, QUEUED; false,
//!   SKIPPED with [`rules::CONDITION_FALSE`]; an evaluation error, FAILED with that error;
//! - its trigger can no longer hold: SKIPPED at once, [`rules::skipped_below`] naming the
//!   failed task above when a dependency counts as failed, else [`rules::trigger_unmet`];
//! - otherwise it keeps waiting.
//!
//! A task SKIPPED or FAILED this way decides the tasks below it in turn. Every decision depends
//! only on the dependencies' final states, so the order of the cascade does not matter; its
//! events are announced in task order. For plain tasks (`allSuccess`, no condition) this is the
//! rule that came before triggers: QUEUED when the last dependency completes, SKIPPED below a
//! failure.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::rules::{self, Outcome};
use super::{Changes, ExecutionState};
use crate::model::{TaskStatus, Trigger};

/// What a waiting task's trigger says.
enum Readiness {
    Wait,
    Ready,
    Never,
}

impl ExecutionState {
    /// Decides the PENDING tasks among `candidates`, and through them the tasks below, as the
    /// module says; returns the tasks it moved, for [`announce`](Self::announce).
    ///
    /// A candidate comes with `scan`: false when all that changed above it is that a dependency
    /// COMPLETED — then an `allSuccess` task needs only its fan-in count —, true when a
    /// dependency may have ended otherwise.
    pub(super) fn decide(
        &mut self,
        candidates: impl IntoIterator<Item = (usize, bool)>,
        now: DateTime<Utc>,
    ) -> Vec<usize> {
        let mut work: BTreeMap<usize, bool> = BTreeMap::new();
        for (i, scan) in candidates {
            *work.entry(i).or_default() |= scan;
        }
        let mut moved = Vec::new();
        while let Some((i, scan)) = work.pop_first() {
            if self.tasks[i].status != TaskStatus::Pending {
                continue;
            }
            let (status, error) = match self.readiness(i, scan) {
                Readiness::Wait => continue,
                Readiness::Ready => match self.condition(i) {
                    Ok(true) => match self.start(i, now) {
                        Ok(()) => {
                            moved.push(i);
                            continue;
                        }
                        Err(error) => (TaskStatus::Failed, error),
                    },
                    Ok(false) => (TaskStatus::Skipped, rules::CONDITION_FALSE.to_string()),
                    Err(error) => (TaskStatus::Failed, error),
                },
                Readiness::Never => {
                    let error = match self.failure_above(i) {
                        Some(f) => rules::skipped_below(&self.tasks[f].task_id),
                        None => rules::trigger_unmet(self.tasks[i].plan.trigger),
                    };
                    (TaskStatus::Skipped, error)
                }
            };
            let t = &mut self.tasks[i];
            t.status = status;
            t.error = Some(error);
            t.end_time = Some(now);
            t.due_at = None;
            moved.push(i);
            for &d in self.graph.dependents(i) {
                work.insert(d, true);
            }
        }
        moved
    }

    /// Announces the tasks of `moved` in task order, each as it now stands: its status event
    /// (with its error when SKIPPED or FAILED) and, when QUEUED, its message to publish. Then
    /// each that became WAITING is settled: completed at once when it can, else its due time
    /// listed (see `wait.rs`); and each fan-out that started (RUNNING) announces its instances
    /// (see `fanout.rs`).
    pub(super) fn announce(&mut self, mut moved: Vec<usize>, now: DateTime<Utc>, ch: &mut Changes) {
        moved.sort_unstable();
        moved.dedup();
        if moved
            .iter()
            .any(|&i| matches!(self.tasks[i].status, TaskStatus::Waiting | TaskStatus::Running))
        {
            self.mark_started(now, ch);
        }
        for &i in &moved {
            let t = &self.tasks[i];
            let status = t.status;
            if status == TaskStatus::Queued {
                ch.ready.push(self.summary.task_ref(t));
            }
            let error = match status {
                TaskStatus::Skipped | TaskStatus::Failed => t.error.clone(),
                _ => None,
            };
            self.set_task(i, status, error, now, ch);
        }
        for i in moved {
            match self.tasks[i].status {
                TaskStatus::Waiting => self.settle_wait(i, now, ch),
                TaskStatus::Running if self.tasks[i].plan.sub_job.is_some() => self.launch_child(i, now, ch),
                TaskStatus::Running => self.settle_fan_out(i, now, ch),
                _ => {}
            }
        }
    }

    /// What the trigger of the PENDING task at `i` says of its dependencies as they stand.
    fn readiness(&self, i: usize, scan: bool) -> Readiness {
        let t = &self.tasks[i];
        let deps = self.graph.dependencies(i);
        if deps.is_empty() {
            return Readiness::Ready;
        }
        if t.plan.trigger == Trigger::AllSuccess && !scan {
            return if t.remaining_dependencies == 0 {
                Readiness::Ready
            } else {
                Readiness::Wait
            };
        }
        let (mut completed, mut failed, mut open) = (0, 0, 0);
        for &d in deps {
            match rules::outcome(&self.tasks[d]) {
                None => open += 1,
                Some(Outcome::Completed) => completed += 1,
                Some(Outcome::Failed) => failed += 1,
                Some(Outcome::Skipped) => {}
            }
        }
        let all = deps.len();
        match t.plan.trigger {
            Trigger::AllSuccess if completed == all => Readiness::Ready,
            Trigger::AllSuccess if completed + open < all => Readiness::Never,
            Trigger::NoneFailed if failed > 0 => Readiness::Never,
            Trigger::NoneFailed | Trigger::AllDone if open == 0 => Readiness::Ready,
            Trigger::AnySuccess if completed > 0 => Readiness::Ready,
            Trigger::AnySuccess if open == 0 => Readiness::Never,
            _ => Readiness::Wait,
        }
    }

    /// The `when` condition of the task at `i` over the params and the outputs of its COMPLETED
    /// direct dependencies; true when it has none.
    fn condition(&self, i: usize) -> Result<bool, String> {
        let Some(source) = self.tasks[i].plan.when.as_deref() else {
            return Ok(true);
        };
        crate::condition::evaluate(source, &self.params, self.completed_upstream(i))
    }

    /// The FAILED (or CANCELLED) task whose failure reaches the task at `i` through its
    /// dependencies — the first in task order —, if one does.
    fn failure_above(&self, i: usize) -> Option<usize> {
        self.graph.dependencies(i).iter().find_map(|&d| {
            let t = &self.tasks[d];
            match (rules::outcome(t), t.status) {
                (Some(Outcome::Failed), TaskStatus::Failed | TaskStatus::Cancelled) => Some(d),
                (Some(Outcome::Failed), _) => self.failure_above(d),
                _ => None,
            }
        })
    }
}
