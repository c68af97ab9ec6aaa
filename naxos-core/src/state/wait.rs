//! Durable waits: `sleep` and `waitFor` tasks, and the signals they wait for.
//!
//! When the trigger of such a task holds it becomes WAITING instead of QUEUED — no message, no
//! worker: a sleep until its due time (`ms` after now, or the time `until` gives), a wait
//! until a signal of its name arrives or its `timeoutMs` runs out. Its due time is in
//! `due_at`; the engine wakes it then ([`Changes::waiting`], [`ExecutionState::wake`]) and the
//! sweepers wake what a node that died left behind ([`ExecutionState::wake_due`], which also
//! starts the delayed executions that are due: see `delay.rs`).
//!
//! A sleep wakes COMPLETED (output `null`); a wait wakes FAILED (`signal <name> timed out`).
//! A signal ([`ExecutionState::signal`]) completes the first task WAITING for its name, with
//! the signal's payload as output; when none waits yet it is kept, in order, and the first
//! task of its name that starts waiting consumes it at once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{rules, Changes, ExecutionState};
use crate::backend::SignalOutcome;
use crate::clock::after;
use crate::model::{Signal, TaskKind, TaskRef, TaskStatus, MAX_PENDING_SIGNALS};
use crate::{Error, Result};

impl ExecutionState {
    /// The signals received that no task consumed yet, in order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// This state with `signals` as its unconsumed signals (a Store that keeps them apart
    /// from the task runs adds them when it loads an execution).
    pub fn with_signals(mut self, signals: Vec<Signal>) -> Self {
        self.signals = signals;
        self
    }

    /// Wakes the WAITING task `task` (at its attempt) whose due time has come: a sleep
    /// COMPLETES, a wait for a signal FAILS as timed out. `Conflict` when the task is not
    /// waiting at that attempt, or not due yet.
    pub fn wake(&mut self, task: &TaskRef, now: DateTime<Utc>) -> Result<Changes> {
        self.unfinished()?;
        let i = self.guard(task, &[TaskStatus::Waiting])?;
        if self.tasks[i].due_at.is_none_or(|d| d > now) {
            return Err(Error::conflict(format!("task {task} is not due yet")));
        }
        let mut ch = Changes::default();
        self.wake_at(i, now, &mut ch);
        self.finish_if_done(now, &mut ch);
        Ok(ch)
    }

    /// Wakes every WAITING task due by `now`, at most `budget` of them (the budget is spent by
    /// as many), as [`wake`](Self::wake) does; or, for a delayed execution whose time has come,
    /// starts it (spending one), as [`start_delayed`](Self::start_delayed) does.
    pub fn wake_due(&mut self, now: DateTime<Utc>, budget: &mut usize) -> Changes {
        let mut ch = Changes::default();
        if self.start_if_due(now, budget, &mut ch) {
            // A delayed execution has no task WAITING before it starts.
            return ch;
        }
        for i in 0..self.tasks.len() {
            if *budget == 0 {
                break;
            }
            let t = &self.tasks[i];
            if t.status == TaskStatus::Waiting && t.due_at.is_some_and(|d| d <= now) {
                *budget -= 1;
                self.wake_at(i, now, &mut ch);
            }
        }
        self.finish_if_done(now, &mut ch);
        ch
    }

    /// Sends the signal `name` with `payload`: the first task WAITING for it (in task order)
    /// COMPLETES with the payload as output; with none waiting, the signal is kept for the first
    /// that will. `Conflict` when the execution is finished or already keeps
    /// [`MAX_PENDING_SIGNALS`]; `InvalidInput` when no task of the execution waits for `name`.
    pub fn signal(&mut self, name: &str, payload: Value, now: DateTime<Utc>) -> Result<SignalOutcome> {
        self.unfinished()?;
        let waits_for = |i: usize| matches!(self.tasks[i].plan.kind(), TaskKind::WaitFor(w) if w.signal == name);
        if !(0..self.tasks.len()).any(waits_for) {
            return Err(Error::InvalidInput(format!(
                "no task of execution {} waits for signal `{name}`",
                self.summary.id
            )));
        }
        let waiting = (0..self.tasks.len()).find(|&i| waits_for(i) && self.tasks[i].status == TaskStatus::Waiting);
        let mut ch = Changes::default();
        let Some(i) = waiting else {
            if self.signals.len() >= MAX_PENDING_SIGNALS {
                return Err(Error::conflict(format!(
                    "execution {} already keeps {MAX_PENDING_SIGNALS} signals no task took",
                    self.summary.id
                )));
            }
            self.signals.push(Signal {
                name: name.to_string(),
                payload,
                received_at: now,
            });
            self.summary.updated_at = now;
            return Ok(SignalOutcome::default());
        };
        self.complete(i, Arc::new(payload), now, &mut ch);
        self.finish_if_done(now, &mut ch);
        Ok(SignalOutcome {
            delivered_to: Some(self.tasks[i].task_id.clone()),
            changes: ch,
        })
    }

    /// Starts the task at `i`, whose trigger holds and whose condition is true, as its kind
    /// says: QUEUED for a function, WAITING for a sleep or a wait, RUNNING with its instances
    /// QUEUED for a fan-out, RUNNING for a sub-job (its child named once announced: see
    /// `subjob.rs`), not yet announced. The error is what the task FAILS with: a `sleep.until`,
    /// `forEach` or `subJob.params` that could not be evaluated, a list over `maxFanOut`, a
    /// sub-job nested too deep.
    pub(super) fn start(&mut self, i: usize, now: DateTime<Utc>) -> std::result::Result<(), String> {
        let due = match self.tasks[i].plan.kind() {
            TaskKind::Function => {
                let (slot, rate) = (self.slot_of(i)?, self.rate_of(i)?);
                self.mark_queued(i, now);
                self.tasks[i].slot = slot;
                self.tasks[i].rate = rate;
                return Ok(());
            }
            TaskKind::ForEach(list) => {
                let list = list.to_string();
                return self.start_fan_out(i, &list, now);
            }
            TaskKind::SubJob(_) => {
                self.check_sub_job(i)?;
                self.begin_unleased(i, TaskStatus::Running, None, now);
                // Its child is named when it is announced (once: see `launch_child`).
                Arc::make_mut(&mut self.tasks[i].plan).child = None;
                return Ok(());
            }
            TaskKind::Sleep(sleep) => match (sleep.ms, sleep.until.as_deref()) {
                (_, Some(until)) => Some(
                    crate::condition::evaluate_time("sleep.until", until, &self.params, self.completed_upstream(i))?
                        .max(now),
                ),
                (ms, None) => Some(after(now, std::time::Duration::from_millis(ms.unwrap_or(0)))),
            },
            TaskKind::WaitFor(wait) => wait
                .timeout_ms
                .map(|ms| after(now, std::time::Duration::from_millis(ms))),
        };
        self.begin_unleased(i, TaskStatus::Waiting, due, now);
        Ok(())
    }

    /// After the task at `i` was announced WAITING: completes it at once when it can (a sleep
    /// already due, a wait whose signal is kept), else lists its due time in `ch.waiting`.
    pub(super) fn settle_wait(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        let kept = match self.tasks[i].plan.kind() {
            TaskKind::WaitFor(w) => self.signals.iter().position(|s| s.name == w.signal),
            _ => None,
        };
        if let Some(k) = kept {
            let signal = self.signals.remove(k);
            self.complete(i, Arc::new(signal.payload), now, ch);
            return;
        }
        match self.tasks[i].due_at {
            Some(due) if due <= now => self.wake_at(i, now, ch),
            Some(due) => {
                let task = self.summary.task_ref(&self.tasks[i]);
                ch.waiting.push((task, due));
            }
            None => {}
        }
    }

    /// The due WAITING task at `i` wakes: a sleep COMPLETES, a wait FAILS as timed out.
    fn wake_at(&mut self, i: usize, now: DateTime<Utc>, ch: &mut Changes) {
        match self.tasks[i].plan.kind() {
            TaskKind::WaitFor(w) => {
                let error = rules::signal_timed_out(&w.signal);
                self.tasks[i].end_time = Some(now);
                self.fail(i, error, now, ch);
            }
            _ => self.complete(i, Arc::new(Value::Null), now, ch),
        }
    }
}
