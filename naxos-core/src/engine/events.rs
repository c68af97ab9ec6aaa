//! A node's one feed of status events, fanned out to whoever watches an execution here: the
//! `wait_for` callers and the HTTP event streams.
//!
//! One pump subscribes to the Queue's events — the node's own included, so an event stream gets
//! every event once and in the order published. The engine also hands the hub its own events as
//! they commit: the watchers of an execution's end (`wait_for`) wake at once, and when
//! publishing failed the streams get them this way instead. Each watcher of an execution gets that execution's events in a
//! bounded buffer. A watcher that falls behind is dropped, and when the subscription breaks
//! every watcher is: its stream ends, and it re-reads the Store (the truth) instead of reading
//! a gap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::inner::Inner;
use crate::backend::Queue;
use crate::model::{Execution, ExecutionId, StatusEvent};
use crate::sync::lock;
use crate::Result;

/// Events a watcher may have unread before it is dropped.
const WATCH_BUFFER: usize = 256;
/// First pause between two Store reads while waiting. Events wake the waiter; the reads are a
/// safety net for an event lost with a broker connection, so they back off to [`MAX_POLL`]
/// instead of loading the Store while thousands of executions are awaited at once.
const FIRST_POLL: Duration = Duration::from_millis(250);
/// Longest pause between two Store reads while waiting (and between two tries of the pump's
/// subscription).
const MAX_POLL: Duration = Duration::from_secs(2);

/// One watcher: its key, whether it wants only the execution's end, and its buffer.
#[derive(Debug)]
struct Watcher {
    key: u64,
    end_only: bool,
    tx: mpsc::Sender<StatusEvent>,
}

type Watchers = Mutex<HashMap<ExecutionId, Vec<Watcher>>>;

/// The executions watched on this node, and the pump that feeds them.
#[derive(Debug)]
pub(crate) struct EventHub {
    queue: Arc<dyn Queue>,
    watchers: Arc<Watchers>,
    next_key: AtomicU64,
    pump: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    closed: CancellationToken,
}

/// The status events of one execution, from the moment it was opened, as this node learns
/// them. Ends (`None`) when the node shuts down or when the reader fell more than a buffer
/// behind; either way the Store has the current state.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<StatusEvent>,
    _guard: WatchGuard,
}

impl EventStream {
    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<StatusEvent> {
        self.rx.recv().await
    }
}

impl EventHub {
    pub(crate) fn new(queue: Arc<dyn Queue>) -> Self {
        Self {
            queue,
            watchers: Arc::default(),
            next_key: AtomicU64::new(0),
            pump: tokio::sync::Mutex::new(None),
            closed: CancellationToken::new(),
        }
    }

    /// Passes this node's own events on as they commit: to the watchers of an execution's end
    /// (a duplicate end from the pump later is harmless to them, and they wake without the
    /// broker's round trip), and — when the Queue could not carry them (`published` false) —
    /// to every watcher.
    pub(crate) fn observe(&self, events: &[StatusEvent], published: bool) {
        deliver(&self.watchers, events, !published);
    }

    pub(crate) fn close(&self) {
        self.closed.cancel();
        lock(&self.watchers).clear();
    }

    /// Starts watching execution `id`: every event, or (`end_only`) just its end. Fails when
    /// the Queue's event subscription cannot be opened.
    pub(crate) async fn watch(&self, id: ExecutionId, end_only: bool) -> Result<EventStream> {
        self.start_pump().await?;
        let (tx, rx) = mpsc::channel(if end_only { 1 } else { WATCH_BUFFER });
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        if !self.closed.is_cancelled() {
            lock(&self.watchers)
                .entry(id)
                .or_default()
                .push(Watcher { key, end_only, tx });
        }
        Ok(EventStream {
            rx,
            _guard: WatchGuard {
                watchers: self.watchers.clone(),
                id,
                key,
            },
        })
    }

    /// Subscribes to the Queue's events once (waiting for the subscription, so that a watcher
    /// registered after this returns misses nothing), and keeps a pump feeding the watchers.
    async fn start_pump(&self) -> Result<()> {
        let mut pump = self.pump.lock().await;
        if pump.as_ref().is_some_and(|p| !p.is_finished()) || self.closed.is_cancelled() {
            return Ok(());
        }
        let first = self.queue.subscribe_events().await?;
        let (queue, watchers, closed) = (self.queue.clone(), self.watchers.clone(), self.closed.clone());
        *pump = Some(tokio::spawn(async move {
            let mut events = Some(first);
            while !closed.is_cancelled() {
                let Some(mut subscription) = events.take() else {
                    match queue.subscribe_events().await {
                        Ok(s) => events = Some(s),
                        Err(e) => {
                            tracing::debug!(error = %e, "event subscription failed; watchers read the store");
                            tokio::select! {
                                _ = closed.cancelled() => return,
                                _ = tokio::time::sleep(MAX_POLL) => {}
                            }
                        }
                    }
                    continue;
                };
                loop {
                    let next = tokio::select! {
                        _ = closed.cancelled() => return,
                        next = subscription.next() => next,
                    };
                    match next {
                        Ok(Some(event)) => deliver(&watchers, std::slice::from_ref(&event), true),
                        Ok(None) | Err(_) => break,
                    }
                }
                // Events may have been lost with the subscription: every watcher starts over
                // from the Store.
                lock(&watchers).clear();
            }
        }));
        Ok(())
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Hands each event to the watchers of its execution (only to those of its end unless
/// `to_streams`); one whose buffer is full is dropped.
fn deliver(watchers: &Watchers, events: &[StatusEvent], to_streams: bool) {
    let mut watchers = lock(watchers);
    if watchers.is_empty() {
        return;
    }
    for e in events {
        let Some(list) = watchers.get_mut(&e.execution_id) else {
            continue;
        };
        let end = e.execution_status().is_some_and(|s| s.is_terminal());
        list.retain(|w| {
            let wanted = if w.end_only { end } else { to_streams };
            // A full end-only buffer already holds the end it waits for.
            !wanted || w.tx.try_send(e.clone()).is_ok() || w.end_only
        });
        if list.is_empty() {
            watchers.remove(&e.execution_id);
        }
    }
}

#[derive(Debug)]
struct WatchGuard {
    watchers: Arc<Watchers>,
    id: ExecutionId,
    key: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut watchers = lock(&self.watchers);
        if let Some(list) = watchers.get_mut(&self.id) {
            list.retain(|w| w.key != self.key);
            if list.is_empty() {
                watchers.remove(&self.id);
            }
        }
    }
}

/// Waits until execution `id` is finished: woken by its events, reading the Store as the
/// truth, and polling it (backing off) in case an event was lost.
pub(crate) async fn wait_for(inner: &Inner, id: ExecutionId) -> Result<Execution> {
    let mut events = inner.events.watch(id, true).await.ok();
    let mut poll = FIRST_POLL;
    loop {
        let execution = inner.store.get_execution(id).await?;
        if execution.status.is_terminal() {
            return Ok(execution);
        }
        let woken = async {
            loop {
                match events.as_mut() {
                    Some(stream) => match stream.next().await {
                        Some(_) => return,
                        // The subscription broke or the node shuts down: the polls carry on alone.
                        None => events = None,
                    },
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(poll) => poll = (poll * 2).min(MAX_POLL),
        }
    }
}
