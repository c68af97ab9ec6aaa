//! One simulated node's life: the fault it carries, whether it died, and the log of the
//! function calls of every node.

use std::future::{pending, poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use serde_json::Value;
use tokio::sync::Notify;

use super::fault::{Fault, StoreCall};
use crate::sync::lock;
use crate::task::{TaskContext, TaskError, TaskFn};
use crate::Error;

/// A node of a scenario. The scenario's faults not yet fired are shared by its nodes: each
/// fires once, in whichever node reaches its point. Once a crash fired, the node is dead: then
/// every Store, Queue and function call it makes waits for ever, as the calls of a killed
/// process never happen.
#[derive(Debug)]
pub(crate) struct Node {
    faults: Arc<Mutex<Vec<Fault>>>,
    dead: AtomicBool,
    died: Arc<Notify>,
    calls: [AtomicU32; StoreCall::ALL.len()],
    /// Whether its engine runs ready tasks where they became ready
    /// ([`EngineConfig::run_ready_here`](crate::EngineConfig::run_ready_here)).
    pub(crate) run_ready_here: bool,
}

impl Node {
    pub(crate) fn new(faults: Arc<Mutex<Vec<Fault>>>, died: Arc<Notify>, run_ready_here: bool) -> Self {
        Self {
            run_ready_here,
            faults,
            dead: AtomicBool::new(false),
            died,
            calls: Default::default(),
        }
    }

    /// True (once) when `fault` is one of the scenario's faults not yet fired.
    pub(crate) fn fire(&self, fault: &Fault) -> bool {
        let mut faults = lock(&self.faults);
        match faults.iter().position(|f| f == fault) {
            Some(i) => {
                faults.remove(i);
                true
            }
            None => false,
        }
    }

    /// Counts a call of `call` (calls are counted per node) and fails it when an error on this
    /// one is among the faults.
    pub(crate) fn count(&self, call: StoreCall) -> crate::Result<()> {
        let n = self.calls[call as usize].fetch_add(1, Ordering::SeqCst) + 1;
        if self.fire(&Fault::StoreError(call, n)) {
            return Err(Error::transient(format!("injected: {}", Fault::StoreError(call, n))));
        }
        Ok(())
    }

    /// How many calls of `call` this node made.
    pub(crate) fn calls(&self, call: StoreCall) -> u32 {
        self.calls[call as usize].load(Ordering::SeqCst)
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Returns while the node lives; waits for ever once it died.
    pub(crate) async fn alive(&self) {
        if self.is_dead() {
            pending::<()>().await;
        }
    }

    /// Kills the node and waits for ever.
    pub(crate) async fn die<T>(&self) -> T {
        self.dead.store(true, Ordering::SeqCst);
        self.died.notify_one();
        pending().await
    }
}

/// One call of a task function.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) task: String,
    /// When it started, in the log's order.
    pub(crate) started: u64,
    /// When it returned and whether with an output; `None` when its node died first.
    pub(crate) returned: Option<(u64, bool)>,
}

/// Every function call of a scenario, ordered by one counter.
#[derive(Debug, Default)]
pub(crate) struct CallLog {
    seq: AtomicU64,
    calls: Mutex<Vec<Call>>,
}

impl CallLog {
    fn start(&self, task: &str) -> usize {
        let mut calls = lock(&self.calls);
        calls.push(Call {
            task: task.to_string(),
            started: self.seq.fetch_add(1, Ordering::SeqCst),
            returned: None,
        });
        calls.len() - 1
    }

    fn end(&self, call: usize, ok: bool) {
        lock(&self.calls)[call].returned = Some((self.seq.fetch_add(1, Ordering::SeqCst), ok));
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }
}

/// `f` as `node` runs it: logged, and stopped where the node dies.
pub(crate) fn wrap(
    f: TaskFn,
    node: Arc<Node>,
    log: Arc<CallLog>,
) -> impl Fn(TaskContext) -> std::pin::Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send>> + Send + Sync {
    move |ctx| {
        let (f, node, log) = (f.clone(), node.clone(), log.clone());
        Box::pin(async move {
            node.alive().await;
            let task = ctx.task_id().to_string();
            let call = log.start(&task);
            let mut run = f(ctx);
            if node.fire(&Fault::CrashInFunction(task)) {
                // One step of the function, then the node dies where it stands.
                if let Poll::Ready(out) = poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await {
                    log.end(call, out.is_ok());
                }
                drop(run);
                return node.die().await;
            }
            let out = run.await;
            // A node that died meanwhile (another task's fault) never saw it return.
            node.alive().await;
            log.end(call, out.is_ok());
            out
        })
    }
}
