//! A node's one feed of status events, fanned out to whoever watches an execution here: the
//! `wait_for` callers and the event streams ([`EventStream`], the HTTP API's SSE).
//!
//! One pump subscribes to the Queue's events — the node's own included, so an event stream gets
//! every event once and in the order published. The engine also hands the hub its own events as
//! they commit, so that `wait_for` wakes without the broker's round trip (a second wake-up from
//! the pump is harmless), and so that streams still hear of them when publishing failed.
//!
//! Two kinds of watcher, each as light as its job allows: a caller of `wait_for` only needs to
//! hear that an execution ended, so all of an execution's waiters share one `Notify`; a stream
//! gets every event of its execution in a bounded buffer, and is dropped when it falls behind or
//! when the subscription breaks — its stream ends, and its reader re-reads the Store (the
//! truth) instead of reading a gap.
//!
//! Where the Queue can route events by execution (RabbitMQ), the pump's subscription receives
//! only the executions watched here (see `binder.rs`); elsewhere it receives all and the hub
//! filters. A `wait_for` caller has its execution selected only after a short wait
//! ([`SELECT_AFTER`]): most executions awaited on a node end there, heard without the broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, OnceCell};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::binder::Binder;
use super::inner::Inner;
use crate::backend::{EventSubscription, Queue, SelectedEvents};
use crate::model::{Execution, ExecutionId, StatusEvent};
use crate::sync::lock;
use crate::Result;

/// Events a stream may have unread before it is dropped.
const STREAM_BUFFER: usize = 256;
/// First pause between two Store reads while waiting. Events wake the waiter; the reads are a
/// safety net for an event lost with a broker connection, so they back off to [`MAX_POLL`]
/// instead of loading the Store while thousands of executions are awaited at once.
const FIRST_POLL: Duration = Duration::from_millis(250);
/// Longest pause between two Store reads while waiting (and between two tries of the pump's
/// subscription).
const MAX_POLL: Duration = Duration::from_secs(2);
/// How long a waiter relies on this node's own events before it also selects its execution's
/// events from the broker (for an end on another node). An execution that ends here sooner
/// costs the broker no binding, unbinding and deliveries back (≈ 1.5 ms of a lone diamond on
/// the full stack: BENCHMARKS.md); one that ends elsewhere sooner is seen by the Store read
/// that follows the selection.
const SELECT_AFTER: Duration = Duration::from_millis(20);

/// Who watches which execution on this node.
#[derive(Debug, Default)]
struct Watchers {
    /// The waiters of each execution's end: one `Notify` and how many wait on it.
    ends: HashMap<ExecutionId, (Arc<Notify>, usize)>,
    /// The event streams of each execution: a key (to unregister) and a buffer each.
    streams: HashMap<ExecutionId, Vec<(u64, mpsc::Sender<StatusEvent>)>>,
}

impl Watchers {
    fn watches(&self, id: ExecutionId) -> bool {
        self.ends.contains_key(&id) || self.streams.contains_key(&id)
    }

    fn all(&self) -> Vec<ExecutionId> {
        let mut ids: Vec<ExecutionId> = self.ends.keys().chain(self.streams.keys()).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The executions watched on this node, and the pump that feeds them.
#[derive(Debug)]
pub(crate) struct EventHub {
    queue: Arc<dyn Queue>,
    watchers: Arc<Mutex<Watchers>>,
    binder: Binder,
    next_key: AtomicU64,
    pump: Arc<OnceCell<JoinHandle<()>>>,
    /// A background start of the pump is under way (see [`EventHub::start_pump_soon`]).
    starting: Arc<AtomicBool>,
    closed: CancellationToken,
}

/// The status events of one execution, from the moment it was opened, as this node learns
/// them. Ends (`None`) when the node shuts down, when the reader fell more than a buffer
/// behind, or when the node's event subscription broke; either way the Store has the current
/// state.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<StatusEvent>,
    _guard: StreamGuard,
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
            binder: Binder::new(),
            next_key: AtomicU64::new(0),
            pump: Arc::default(),
            starting: Arc::default(),
            closed: CancellationToken::new(),
        }
    }

    /// Passes this node's own events on as they commit: to the waiters of an execution's end,
    /// and — when the Queue could not carry them (`published` false) — to the streams too.
    pub(crate) fn observe(&self, events: &[StatusEvent], published: bool) {
        lock(&self.watchers).pass_on(events, !published);
    }

    pub(crate) fn close(&self) {
        self.closed.cancel();
        self.end_streams();
    }

    /// Ends every event stream open now (their readers see `None`).
    pub(crate) fn end_streams(&self) {
        let ended: Vec<ExecutionId> = lock(&self.watchers).streams.drain().map(|(id, _)| id).collect();
        for id in ended {
            self.binder.sync(id);
        }
    }

    /// Starts a stream of execution `id`'s events. Fails when the Queue's event subscription
    /// cannot be opened.
    pub(crate) async fn stream(&self, id: ExecutionId) -> Result<EventStream> {
        self.start_pump().await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        if !self.closed.is_cancelled() {
            lock(&self.watchers).streams.entry(id).or_default().push((key, tx));
        }
        let guard = StreamGuard {
            watchers: self.watchers.clone(),
            binder: self.binder.clone(),
            id,
            key,
        };
        // Selected before the caller reads the Store, so that nothing after that read is missed.
        self.binder.sync_and_wait(id).await;
        Ok(EventStream { rx, _guard: guard })
    }

    /// Registers a waiter of execution `id`'s end.
    fn wait_end(&self, id: ExecutionId) -> EndGuard {
        let mut watchers = lock(&self.watchers);
        let entry = watchers.ends.entry(id).or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        drop(watchers);
        EndGuard {
            watchers: self.watchers.clone(),
            binder: self.binder.clone(),
            id,
            notify,
        }
    }

    /// Subscribes to the Queue's events once — waiting for the subscription, so that a stream
    /// opened after this returns misses nothing — and starts the pump that feeds the watchers.
    async fn start_pump(&self) -> Result<()> {
        if self.closed.is_cancelled() {
            return Ok(());
        }
        start_pump(&self.pump, &self.queue, &self.watchers, &self.binder, &self.closed).await
    }

    /// Starts the pump in the background if it is not running, without waiting for the
    /// subscription (a `wait_for` caller polls the Store meanwhile, and must not wait on a
    /// broker that is down). One such start at a time.
    fn start_pump_soon(&self) {
        if self.pump.initialized() || self.closed.is_cancelled() || self.starting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pump, queue, watchers, binder, closed, starting) = (
            self.pump.clone(),
            self.queue.clone(),
            self.watchers.clone(),
            self.binder.clone(),
            self.closed.clone(),
            self.starting.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = start_pump(&pump, &queue, &watchers, &binder, &closed).await {
                tracing::debug!(error = %e, "no event subscription; waiters poll the store");
            }
            starting.store(false, Ordering::Release);
        });
    }
}

/// Opens the first subscription and spawns the pump, once per hub.
async fn start_pump(
    cell: &OnceCell<JoinHandle<()>>,
    queue: &Arc<dyn Queue>,
    watchers: &Arc<Mutex<Watchers>>,
    binder: &Binder,
    closed: &CancellationToken,
) -> Result<()> {
    cell.get_or_try_init(|| async {
        let first = subscribe(&**queue, watchers, binder).await?;
        Ok(tokio::spawn(pump(
            first,
            queue.clone(),
            watchers.clone(),
            binder.clone(),
            closed.clone(),
        )))
    })
    .await
    .map(|_| ())
}

/// A selected subscription (its selector handed to the binder, which selects what is watched
/// now) where the Queue offers one, else one to every event.
async fn subscribe(
    queue: &dyn Queue,
    watchers: &Arc<Mutex<Watchers>>,
    binder: &Binder,
) -> Result<Box<dyn EventSubscription>> {
    match queue.subscribe_selected_events().await? {
        Some(SelectedEvents { subscription, selector }) => {
            let (one, all) = (watchers.clone(), watchers.clone());
            binder.install(selector, move |id| lock(&one).watches(id), move || lock(&all).all());
            Ok(subscription)
        }
        None => queue.subscribe_events().await,
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Feeds the watchers from the Queue's event subscription, subscribing again when it breaks.
async fn pump(
    first: Box<dyn EventSubscription>,
    queue: Arc<dyn Queue>,
    watchers: Arc<Mutex<Watchers>>,
    binder: Binder,
    closed: CancellationToken,
) {
    let mut subscription = Some(first);
    while !closed.is_cancelled() {
        let Some(mut events) = subscription.take() else {
            match subscribe(&*queue, &watchers, &binder).await {
                Ok(s) => subscription = Some(s),
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
                next = events.next() => next,
            };
            match next {
                Ok(Some(event)) => lock(&watchers).pass_on(std::slice::from_ref(&event), true),
                Ok(None) | Err(_) => break,
            }
        }
        // Events may have been lost with the subscription: every stream starts over from the
        // Store (waiters poll it anyway).
        let ended: Vec<ExecutionId> = lock(&watchers).streams.drain().map(|(id, _)| id).collect();
        for id in ended {
            binder.sync(id);
        }
    }
}

impl Watchers {
    /// Wakes the waiters of executions that ended, and (`to_streams`) hands each event to the
    /// streams of its execution, dropping one whose buffer is full.
    fn pass_on(&mut self, events: &[StatusEvent], to_streams: bool) {
        for e in events {
            if e.execution_status().is_some_and(|s| s.is_terminal()) {
                if let Some((notify, _)) = self.ends.get(&e.execution_id) {
                    notify.notify_waiters();
                }
            }
            if !to_streams {
                continue;
            }
            let Some(list) = self.streams.get_mut(&e.execution_id) else {
                continue;
            };
            list.retain(|(_, tx)| tx.try_send(e.clone()).is_ok());
            if list.is_empty() {
                self.streams.remove(&e.execution_id);
            }
        }
    }
}

#[derive(Debug)]
struct StreamGuard {
    watchers: Arc<Mutex<Watchers>>,
    binder: Binder,
    id: ExecutionId,
    key: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut watchers = lock(&self.watchers);
        if let Some(list) = watchers.streams.get_mut(&self.id) {
            list.retain(|(k, _)| *k != self.key);
            if list.is_empty() {
                watchers.streams.remove(&self.id);
            }
        }
        drop(watchers);
        self.binder.sync(self.id);
    }
}

struct EndGuard {
    watchers: Arc<Mutex<Watchers>>,
    binder: Binder,
    id: ExecutionId,
    notify: Arc<Notify>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let mut watchers = lock(&self.watchers);
        if let Some(entry) = watchers.ends.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                watchers.ends.remove(&self.id);
            }
        }
        drop(watchers);
        self.binder.sync(self.id);
    }
}

/// Waits until execution `id` is finished: woken by its end event, reading the Store as the
/// truth, and polling it (backing off) in case an event was lost. Its execution's events are
/// selected from the broker only once it has waited [`SELECT_AFTER`].
pub(crate) async fn wait_for(inner: &Inner, id: ExecutionId) -> Result<Execution> {
    let hub = &inner.events;
    hub.start_pump_soon();
    let guard = hub.wait_end(id);
    let mut poll = FIRST_POLL;
    let mut selected = false;
    loop {
        let notified = guard.notify.notified();
        tokio::pin!(notified);
        // Registered before the read, so an end between the read and the wait still wakes us.
        notified.as_mut().enable();
        let execution = inner.store.get_execution(id).await?;
        if execution.status.is_terminal() {
            return Ok(execution);
        }
        if !selected {
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(SELECT_AFTER) => {
                    // Selected before the next Store read, so an end elsewhere is not missed.
                    hub.binder.sync_and_wait(id).await;
                    selected = true;
                }
            }
            continue;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(poll) => poll = (poll * 2).min(MAX_POLL),
        }
    }
}
