//! The state one node's engine shares between its handle, workers and sweeper.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use super::announce::Announcer;
use super::definitions::Definitions;
use super::events::EventHub;
use super::timers::{self, Timers};
use super::{scheduler, sweeper, worker, EngineConfig};
use crate::backend::{Cache, Changes, Queue, StopReason, Store};
use crate::model::{ExecutionId, ExecutionStatus, TaskRef};
use crate::sync::lock;
use crate::task::Registry;
use crate::{Error, Result};

/// Shared by every clone of an [`Engine`](super::Engine).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) registry: Registry,
    pub(crate) config: EngineConfig,
    pub(crate) definitions: Definitions,
    pub(crate) events: Arc<EventHub>,
    /// Timers of the waits this node started.
    pub(crate) timers: Timers,
    announcer: Announcer,
    /// Admission control for submits.
    pub(crate) admission: Admission,
    /// Running attempts on this node, by attempt (two attempts of one task may overlap here: an
    /// old one slow to stop, and its successor), with their cancellation tokens.
    running: Mutex<HashMap<TaskRef, CancellationToken>>,
    /// Fires when the node stops taking work.
    pub(crate) stopping: CancellationToken,
    /// Fires when the shutdown grace has run out: in-flight attempts are cancelled and handed back.
    pub(crate) hard_stop: CancellationToken,
    /// In-flight attempts.
    pub(crate) tracker: TaskTracker,
    /// This node's concurrency slots ([`EngineConfig::concurrency`]): one for each attempt
    /// running here, whether its task came through the queue or became ready here.
    pub(crate) slots: Arc<Semaphore>,
    loops: Mutex<Option<Vec<JoinHandle<()>>>>,
    /// Set by the first successful [`start`](Self::start), never cleared.
    started: AtomicBool,
    pub(crate) started_at: DateTime<Utc>,
}

impl Inner {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        cache: Arc<dyn Cache>,
        config: EngineConfig,
    ) -> Self {
        let started_at = config.clock.now();
        let events = Arc::new(EventHub::new(queue.clone()));
        let concurrency = config.concurrency;
        Self {
            events: events.clone(),
            announcer: Announcer::new(queue.clone(), events),
            timers: Timers::default(),
            admission: Admission::default(),
            store,
            queue,
            cache,
            registry: Registry::default(),
            config,
            definitions: Definitions::default(),
            running: Mutex::default(),
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(concurrency)),
            loops: Mutex::new(None),
            started: AtomicBool::new(false),
            started_at,
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }

    /// Passes on what a committed transition changed: its events, then its ready tasks, then
    /// its retries, and sets a timer for each wait it started and each delayed execution it
    /// created. The ready tasks wait until the events are out, so that whatever they cause
    /// is announced after its cause on any node (see `announce.rs`). A failed publish is logged,
    /// not returned: the Store already holds the truth and the sweeper republishes lost task
    /// messages.
    pub(crate) async fn dispatch(&self, mut changes: Changes) {
        let mut children = std::mem::take(&mut changes.stopped_children);
        self.publish_changes(changes).await;
        // The children of a stopped parent's sub-jobs, and theirs in turn.
        while let Some(child) = children.pop() {
            match self.store.stop_execution(child, StopReason::Cancelled).await {
                Ok(mut outcome) => {
                    for task in &outcome.running {
                        self.cancel_local(task);
                    }
                    children.append(&mut outcome.changes.stopped_children);
                    self.publish_changes(outcome.changes).await;
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(error = %e, %child, "stopping a sub-job's child failed; the sweeper will stop it");
                }
            }
        }
    }

    /// Publishes what a committed transition changed: events, tasks to queue now or later,
    /// timers to set.
    async fn publish_changes(&self, changes: Changes) {
        if !changes.events.is_empty() {
            super::metrics::events(&changes.events);
            self.events.observe(&changes.events, true);
            if changes.ready.is_empty() {
                self.announcer.announce(changes.events);
            } else {
                self.announcer.announce_and_wait(changes.events).await;
            }
        }
        if !changes.ready.is_empty() {
            if let Err(e) = self.queue.publish(&changes.ready).await {
                tracing::warn!(error = %e, tasks = changes.ready.len(), "publish failed; the sweeper will republish");
            }
        }
        for (task, due) in &changes.delayed {
            let delay = (*due - self.now()).to_std().unwrap_or_default();
            if let Err(e) = self.queue.publish_delayed(task, delay).await {
                tracing::warn!(error = %e, %task, "delayed publish failed; the sweeper will republish when due");
            }
        }
        for (task, due) in changes.waiting {
            self.timers.add(task, due);
        }
        for (id, at) in changes.scheduled {
            self.timers.start(id, at);
        }
    }

    /// Stops an execution and fires the tokens of its attempts running here.
    pub(crate) async fn stop(&self, id: ExecutionId, reason: StopReason) -> Result<ExecutionStatus> {
        let outcome = self.store.stop_execution(id, reason).await?;
        for task in &outcome.running {
            self.cancel_local(task);
        }
        self.dispatch(outcome.changes).await;
        Ok(outcome.status)
    }

    fn running(&self) -> MutexGuard<'_, HashMap<TaskRef, CancellationToken>> {
        lock(&self.running)
    }

    pub(crate) fn track_running(&self, task: &TaskRef, token: CancellationToken) {
        let mut running = self.running();
        running.insert(task.clone(), token);
        super::metrics::running(running.len());
    }

    pub(crate) fn untrack_running(&self, task: &TaskRef) {
        let mut running = self.running();
        running.remove(task);
        super::metrics::running(running.len());
    }

    pub(crate) fn cancel_local(&self, task: &TaskRef) {
        if let Some(token) = self.running().get(task) {
            token.cancel();
        }
    }

    pub(crate) fn running_count(&self) -> usize {
        self.running().len()
    }

    /// True once the node was started (even if it has shut down since).
    pub(crate) fn was_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Whether this node's workers are taking tasks now: it runs workers, was started, and is
    /// not stopping.
    pub(crate) fn takes_tasks(&self) -> bool {
        self.config.workers && self.was_started() && !self.stopping.is_cancelled()
    }

    pub(crate) fn start(self: &Arc<Self>) -> Result<()> {
        let mut loops = lock(&self.loops);
        if loops.is_some() {
            return Err(Error::conflict("the engine is already started"));
        }
        if self.stopping.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let mut handles = vec![
            tokio::spawn(sweeper::run(self.clone())),
            tokio::spawn(super::outbox::run(self.clone())),
            tokio::spawn(scheduler::run(self.clone())),
            tokio::spawn(timers::run(self.clone())),
        ];
        if self.config.workers {
            handles.push(tokio::spawn(worker::run(self.clone())));
        }
        *loops = Some(handles);
        self.started.store(true, Ordering::Release);
        tracing::info!(
            node = %self.config.node_id,
            workers = self.config.workers,
            concurrency = self.config.concurrency,
            "engine started"
        );
        Ok(())
    }

    pub(crate) async fn shutdown(&self) {
        self.stopping.cancel();
        // Event streams would keep their connections (and a graceful server) open for as long
        // as their executions run: they end now, and their readers re-read the Store.
        self.events.end_streams();
        let loops = lock(&self.loops).take();
        for handle in loops.unwrap_or_default() {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "engine loop ended abnormally");
            }
        }
        self.tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                running = self.running_count(),
                "shutdown grace over: handing back running tasks"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
        self.announcer.flush().await;
        self.events.close();
        tracing::info!(node = %self.config.node_id, "engine stopped");
    }
}
