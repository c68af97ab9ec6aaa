//! Wakes WAITING tasks (`sleep`, and `waitFor` with a timeout) at their due time.
//!
//! A node keeps a timer for every wait its own transitions started ([`Changes::waiting`]) and,
//! when one is due, asks the Store to [wake](crate::backend::Store::wake) the task. The timers
//! are only this node's memory: the sweepers of every node wake what is due and was left by a
//! node that stopped ([`Store::wake_due`](crate::backend::Store::wake_due)), so a wait survives
//! any crash and ends at most a sweep interval late. A task woken twice (by its timer and a
//! sweeper, or two sweepers) is woken once: the second call is a stale `Conflict`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::inner::Inner;
use crate::model::TaskRef;
use crate::sync::lock;

/// Wakes fire this long after their due time, so that a Store whose clock runs a little behind
/// the node's still finds the task due.
const MARGIN: Duration = Duration::from_millis(5);

/// A wait to wake: when, and which task.
type Timer = (DateTime<Utc>, TaskRef);

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
        let _ = self.add.send((due, task));
    }
}

/// Wakes each task of [`Timers`] at its due time until the node stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(mut incoming) = lock(&inner.timers.due).take() else {
        return;
    };
    // By due time, then by arrival (two tasks may be due at the same instant).
    let mut pending: BTreeMap<(DateTime<Utc>, u64), TaskRef> = BTreeMap::new();
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
                Some((due, task)) => {
                    arrivals += 1;
                    pending.insert((due, arrivals), task);
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

async fn wake(inner: &Inner, task: &TaskRef) {
    match inner.store.wake(task).await {
        Ok(changes) => inner.dispatch(changes).await,
        Err(e) if e.is_conflict() || e.is_not_found() => {
            tracing::debug!(%task, reason = %e, "a wait ended before its timer");
        }
        Err(e) => tracing::warn!(%task, error = %e, "waking a task failed; a sweeper will wake it"),
    }
}
