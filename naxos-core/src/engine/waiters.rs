//! `wait_for`: callers woken by terminal status events, with polling as a safety net.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::inner::Inner;
use crate::backend::Queue;
use crate::model::{Execution, ExecutionId, StatusEvent};
use crate::sync::lock;
use crate::Result;

/// First pause between two Store reads while waiting. Events wake the waiter; the reads are a
/// safety net for an event lost with a broker connection, so they back off to [`MAX_POLL`]
/// instead of loading the Store while thousands of executions are awaited at once.
const FIRST_POLL: Duration = Duration::from_millis(250);
/// Longest pause between two Store reads while waiting.
const MAX_POLL: Duration = Duration::from_secs(2);

type WaitMap = Mutex<HashMap<ExecutionId, (Arc<Notify>, usize)>>;

/// The executions someone waits for, and the event pump that wakes them.
#[derive(Debug)]
pub(crate) struct Waiters {
    queue: Arc<dyn Queue>,
    map: Arc<WaitMap>,
    pump: Mutex<Option<JoinHandle<()>>>,
    closed: CancellationToken,
}

impl Waiters {
    pub(crate) fn new(queue: Arc<dyn Queue>) -> Self {
        Self {
            queue,
            map: Arc::default(),
            pump: Mutex::new(None),
            closed: CancellationToken::new(),
        }
    }

    /// Wakes the waiters of executions that reached a terminal status.
    pub(crate) fn observe(&self, events: &[StatusEvent]) {
        wake(&self.map, events);
    }

    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    fn register(&self, id: ExecutionId) -> WaitGuard {
        self.start_pump();
        let mut map = lock(&self.map);
        let entry = map.entry(id).or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        WaitGuard {
            map: self.map.clone(),
            id,
            notify: entry.0.clone(),
        }
    }

    /// Subscribes to the Queue's events once, so executions finishing on other nodes wake
    /// waiters here too.
    fn start_pump(&self) {
        let mut pump = lock(&self.pump);
        if pump.is_some() || self.closed.is_cancelled() {
            return;
        }
        let (queue, map, closed) = (self.queue.clone(), self.map.clone(), self.closed.clone());
        *pump = Some(tokio::spawn(async move {
            while !closed.is_cancelled() {
                let mut events = match queue.subscribe_events().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "event subscription failed; waiters poll");
                        tokio::select! {
                            _ = closed.cancelled() => return,
                            _ = tokio::time::sleep(MAX_POLL) => continue,
                        }
                    }
                };
                loop {
                    let next = tokio::select! {
                        _ = closed.cancelled() => return,
                        next = events.next() => next,
                    };
                    match next {
                        Ok(Some(event)) => wake(&map, std::slice::from_ref(&event)),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }));
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

fn wake(map: &WaitMap, events: &[StatusEvent]) {
    let map = lock(map);
    if map.is_empty() {
        return;
    }
    for e in events {
        if e.execution_status().is_some_and(|s| s.is_terminal()) {
            if let Some((notify, _)) = map.get(&e.execution_id) {
                notify.notify_waiters();
            }
        }
    }
}

struct WaitGuard {
    map: Arc<WaitMap>,
    id: ExecutionId,
    notify: Arc<Notify>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if let Some(entry) = map.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.id);
            }
        }
    }
}

pub(crate) async fn wait_for(inner: &Inner, id: ExecutionId) -> Result<Execution> {
    let guard = inner.waiters.register(id);
    let mut poll = FIRST_POLL;
    loop {
        let notified = guard.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let execution = inner.store.get_execution(id).await?;
        if execution.status.is_terminal() {
            return Ok(execution);
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(poll) => poll = (poll * 2).min(MAX_POLL),
        }
    }
}
