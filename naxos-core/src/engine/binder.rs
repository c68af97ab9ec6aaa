//! Keeps a selected event subscription ([`SelectedEvents`](crate::backend::SelectedEvents))
//! choosing exactly the executions watched on this node, so that a node with a few event
//! streams open on a busy cluster receives their events and not everyone's.
//!
//! One task applies the changes in order. Each command only names an execution; the task
//! compares what is watched now with what is selected and does what closes the gap, so commands
//! that race (a watcher leaving as another arrives) cannot leave the two apart. A new
//! subscription (after the old one broke) starts with nothing selected: the task selects every
//! watched execution again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::backend::EventSelector;
use crate::model::ExecutionId;
use crate::sync::lock;

/// What the binder task is asked to do.
enum Command {
    /// Bring execution `id`'s selection in line with its watchers, then say so.
    Sync(ExecutionId, Option<oneshot::Sender<()>>),
    /// A new subscription: select every watched execution on it.
    Reset(Arc<dyn EventSelector>),
}

/// The handle the hub and its watchers' guards use. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Binder {
    tx: mpsc::UnboundedSender<Command>,
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<Command>>>>,
    /// A selector was installed: from then on changes are sent (before, nothing consumes them).
    active: Arc<AtomicBool>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Sync(id, _) => write!(f, "Sync({id})"),
            Command::Reset(_) => f.write_str("Reset"),
        }
    }
}

impl Binder {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            active: Arc::default(),
        }
    }

    /// Installs the selector of a new subscription; `watched` says what to select. The first
    /// call starts the binder task.
    pub(crate) fn install(
        &self,
        selector: Arc<dyn EventSelector>,
        watched: impl Fn(ExecutionId) -> bool + Send + 'static,
        all_watched: impl Fn() -> Vec<ExecutionId> + Send + 'static,
    ) {
        if let Some(rx) = lock(&self.rx).take() {
            tokio::spawn(run(rx, watched, all_watched));
        }
        self.active.store(true, Ordering::Release);
        let _ = self.tx.send(Command::Reset(selector));
    }

    /// Brings execution `id`'s selection in line with its watchers, in the background.
    pub(crate) fn sync(&self, id: ExecutionId) {
        if self.active.load(Ordering::Acquire) {
            let _ = self.tx.send(Command::Sync(id, None));
        }
    }

    /// Brings execution `id`'s selection in line with its watchers, and waits until it is.
    pub(crate) async fn sync_and_wait(&self, id: ExecutionId) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Sync(id, Some(done))).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Command>,
    watched: impl Fn(ExecutionId) -> bool,
    all_watched: impl Fn() -> Vec<ExecutionId>,
) {
    let mut selector: Option<Arc<dyn EventSelector>> = None;
    let mut selected: HashSet<ExecutionId> = HashSet::new();
    while let Some(command) = rx.recv().await {
        match command {
            Command::Reset(new) => {
                selected.clear();
                for id in all_watched() {
                    select(&*new, &mut selected, id).await;
                }
                selector = Some(new);
            }
            Command::Sync(id, done) => {
                if let Some(s) = &selector {
                    match (watched(id), selected.contains(&id)) {
                        (true, false) => select(&**s, &mut selected, id).await,
                        (false, true) => {
                            selected.remove(&id);
                            if let Err(e) = s.deselect(id).await {
                                tracing::debug!(error = %e, %id, "could not deselect an execution's events");
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}

async fn select(selector: &dyn EventSelector, selected: &mut HashSet<ExecutionId>, id: ExecutionId) {
    match selector.select(id).await {
        Ok(()) => {
            selected.insert(id);
        }
        // The subscription is probably broken: the pump subscribes again and resets.
        Err(e) => tracing::debug!(error = %e, %id, "could not select an execution's events"),
    }
}
