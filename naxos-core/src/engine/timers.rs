//! Wakes WAITING tasks (`sleep`, and `waitFor` with a timeout) at their due time, and starts
//! delayed executions (`delayMs`, `runAt`) at theirs.
//!
//! A node keeps a timer for every wait its own transitions started ([`Changes::waiting`]) and
//! every delayed execution it created ([`Changes::scheduled`]) and, when one is due, asks the
//! Store to [wake](crate::backend::Store::wake) the task or
//! [start](crate::backend::Store::start_delayed) the execution. The timers are only this node's
//! memory: the sweepers of every node wake and start what is due and was left by a node that
//! stopped ([`Store::wake_due`](crate::backend::Store::wake_due)), so a wait or a delayed start
//! survives any crash and happens at most a sweep interval late. What is woken or started twice
//! (by its timer and a sweeper, or two sweepers) happens once: the second call is a `Conflict`.
//!
//! [`Changes::waiting`]: crate::backend::Changes::waiting
//! [`Changes::scheduled`]: crate::backend::Changes::scheduled

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::inner::Inner;
use crate::model::{ExecutionId, TaskRef};
use crate::sync::lock;

/// Wakes fire this long after their due time, so that a Store whose clock runs a little behind
/// the node's still finds the task due.
const MARGIN: Duration = Duration::from_millis(5);

/// What a timer does when it fires.
#[derive(Debug)]
enum Due {
    /// Wakes a WAITING task.
    Task(TaskRef),
    /// Starts a delayed execution.
    Execution(ExecutionId),
}

/// A timer: when, and what.
type Timer = (DateTime<Utc>, Due);

/// The timers of one node: a channel the dispatcher fills and the timer loop drains.
#[derive(Debug)]
pub(crate) struct Timers {
    add: UnboundedSender<Timer>,
    due: Mutex<Option<UnboundedReceiver<Timer>>>,
}

impl Default for Timers {
    fn default() -> Self {
        let (add, due) = unbounded_channel();
        Self {
            add,
            due: Mutex::new(Some(due)),
        }
    }
}

impl Timers {
    /// Wake `task` at `due`.
    pub(crate) fn add(&self, task: TaskRef, due: DateTime<Utc>) {
        // Fails only once the loop is gone (the node stopped): the sweepers wake it then.
        let _ = self.add.send((due, Due::Task(task)));
    }

    /// Start the delayed execution `id` at `at`.
    pub(crate) fn start(&self, id: ExecutionId, at: DateTime<Utc>) {
        // As in `add`: once the node stopped, the sweepers start it.
        let _ = self.add.send((at, Due::Execution(id)));
    }
}

/// Wakes each task of [`Timers`] at its due time until the node stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(mut incoming) = lock(&inner.timers.due).take() else {
        return;
    };
    // By due time, then by arrival (two timers may be due at the same instant).
    let mut pending: BTreeMap<(DateTime<Utc>, u64), Due> = BTreeMap::new();
    let mut arrivals = 0u64;
    loop {
        let next = pending.first_key_value().map(|((due, _), _)| *due);
        let sleep = async {
            match next {
                Some(due) => tokio::time::sleep((due - inner.now()).to_std().unwrap_or_default() + MARGIN).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.stopping.cancelled() => break,
            added = incoming.recv() => match added {
                Some((at, due)) => {
                    arrivals += 1;
                    pending.insert((at, arrivals), due);
                }
                None => break,
            },
            _ = sleep => {
                let now = inner.now();
                while let Some(entry) = pending.first_entry().filter(|e| e.key().0 <= now) {
                    wake(&inner, &entry.remove()).await;
                }
            }
        }
    }
}

async fn wake(inner: &Inner, due: &Due) {
    match due {
        Due::Task(task) => match inner.store.wake(task).await {
            Ok(changes) => inner.dispatch(changes).await,
            Err(e) if e.is_conflict() || e.is_not_found() => {
                tracing::debug!(%task, reason = %e, "a wait ended before its timer");
            }
            Err(e) => tracing::warn!(%task, error = %e, "waking a task failed; a sweeper will wake it"),
        },
        Due::Execution(id) => match inner.store.start_delayed(*id).await {
            Ok(changes) => inner.dispatch(changes).await,
            Err(e) if e.is_conflict() || e.is_not_found() => {
                tracing::debug!(execution_id = %id, reason = %e, "a delayed execution started or ended before its timer");
            }
            Err(e) => {
                tracing::warn!(execution_id = %id, error = %e, "starting a delayed execution failed; a sweeper will start it")
            }
        },
    }
}
