//! Crash-test your own DAG in `cargo test` (feature `testing`).
//!
//! The [`Harness`] runs **your** job definitions with **your** task functions — registered by
//! the same function your service uses — on the in-memory backends and simulated time, once
//! without faults and then once under each fault it can inject ([`Fault`]): a node killed after
//! a claim, during a function, after a function returned but before its outcome was recorded,
//! after the record but before the publish; a message duplicated or lost; a transient Store
//! error on each call. A killed node stops where it stands (its calls never return) and a
//! fresh node takes over, as after `kill -9`; leases run out and sweeps run in simulated time,
//! so a whole run takes milliseconds. A node can dispatch ready tasks two ways, and a report
//! covers both: the scenarios that lose or double a message send every task through the queue
//! (the default), so that the message exists; the others run ready tasks where they became ready
//! ([`EngineConfig::run_ready_here`]).
//!
//! Each scenario is checked against the engine's guarantees: the execution ends, and ends as
//! it does without faults (each task too); each task's outcome is recorded once; no function
//! starts before its dependencies' functions returned. The [`Report`] also says how often each
//! function ran under each fault — a task with a side effect that ran twice somewhere must be
//! idempotent, and [`Report::most_runs`] lets a test say so. [`Harness::random`] adds
//! scenarios of several faults at once, drawn from a seed. The guide is `docs/testing.md`.
//!
//! ```
//! # use naxos_core as naxos;
//! use naxos::serde_json::{json, Value};
//! use naxos::testing::Harness;
//! use naxos::{Engine, JobDefinition, TaskBuilder};
//!
//! fn register(engine: &Engine) {
//!     engine.register("fetch", |_ctx| async { Ok(json!([1, 2, 3])) });
//!     engine.register("sum", |ctx| async move {
//!         let items = ctx.upstream("fetch").cloned().unwrap_or(Value::Null);
//!         let sum: i64 = items.as_array().into_iter().flatten().filter_map(Value::as_i64).sum();
//!         Ok(json!(sum))
//!     });
//! }
//!
//! let job = JobDefinition::builder("totals")
//!     .task(TaskBuilder::new("fetch", "fetch"))
//!     .task(TaskBuilder::new("sum", "sum").after(["fetch"]))
//!     .build();
//! let report = Harness::new(register).definition(job).execute("totals", json!({})).run();
//! report.assert_guarantees();
//! // A crash during `fetch` or before its outcome is recorded runs it again.
//! assert_eq!(report.most_runs("fetch"), 2);
//! println!("{report}");
//! ```

mod fault;
mod node;
mod queue;
mod report;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

pub use fault::{Fault, StoreCall};
pub use report::{Report, Scenario};

use crate::backend::{Queue, Store};
use crate::memory::{MemoryQueue, MemoryStore};
use crate::model::{Execution, JobDefinition};
use crate::{Clock, Engine, EngineConfig, ExecuteRequest, ExecutionId};
use node::{CallLog, Node};

/// How many calls of one Store operation get an error scenario each, at most.
const MAX_CALLS_FAULTED: u32 = 32;

/// Runs a DAG under every fault; see the [module docs](self).
pub struct Harness {
    setup: Arc<dyn Fn(&Engine) + Send + Sync>,
    definitions: Vec<JobDefinition>,
    execute: Option<(String, Value)>,
    faults: Option<Vec<Fault>>,
    random: Option<(u64, usize)>,
    deadline: Duration,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("definitions", &self.definitions.len())
            .field("execute", &self.execute)
            .field("faults", &self.faults)
            .field("random", &self.random)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// A harness whose nodes get their task functions from `setup` (called on each node's
    /// engine, as your service registers them).
    pub fn new(setup: impl Fn(&Engine) + Send + Sync + 'static) -> Self {
        Self {
            setup: Arc::new(setup),
            definitions: Vec::new(),
            execute: None,
            faults: None,
            random: None,
            deadline: Duration::from_secs(3600),
        }
    }

    /// Registers a job definition (sub-jobs' definitions too, if any).
    pub fn definition(mut self, definition: JobDefinition) -> Self {
        self.definitions.push(definition);
        self
    }

    /// The execution each scenario runs: `definition_id` with `params`. Required.
    pub fn execute(mut self, definition_id: impl Into<String>, params: Value) -> Self {
        self.execute = Some((definition_id.into(), params));
        self
    }

    /// Runs only these faults (after the baseline, one a scenario) instead of every one.
    pub fn faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.faults = Some(faults.into_iter().collect());
        self
    }

    /// Also runs `scenarios` scenarios of two to four faults each, drawn from the faults the
    /// harness runs one by one, with a random generator seeded by `seed`: the same seed
    /// draws the same faults (the order in which they fire depends on the run).
    pub fn random(mut self, seed: u64, scenarios: usize) -> Self {
        self.random = Some((seed, scenarios));
        self
    }

    /// How much simulated time an execution gets to end (default one hour: enough for
    /// leases to run out and retries' backoffs to pass).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Runs the baseline, then each fault (every fault of every task of the executed
    /// definition and a Store error on each call the baseline made, unless
    /// [`faults`](Self::faults) chose), each in a runtime of its own on a thread of its own, so
    /// it may be called from a `#[test]` or from async code.
    ///
    /// Panics when [`execute`](Self::execute) was not called, or when a definition is refused.
    pub fn run(self) -> Report {
        let (definition_id, _) = self
            .execute
            .clone()
            .expect("Harness::execute names the execution to run");
        let plan = Arc::new(self);
        let baseline = plan.scenario(Vec::new(), None);
        let faults = match &plan.faults {
            Some(faults) => faults.clone(),
            None => plan.every_fault(&definition_id, &baseline.calls),
        };
        let mut runs: Vec<Vec<Fault>> = faults.iter().map(|f| vec![f.clone()]).collect();
        if let Some((seed, n)) = plan.random {
            runs.extend(draw(&faults, seed, n));
        }
        let mut scenarios = vec![baseline.scenario];
        for faults in runs {
            scenarios.push(plan.scenario(faults, baseline.ended.as_ref()).scenario);
        }
        Report { scenarios }
    }

    fn every_fault(&self, definition_id: &str, calls: &BTreeMap<StoreCall, u32>) -> Vec<Fault> {
        let definition = self
            .definitions
            .iter()
            .find(|d| d.id == definition_id)
            .unwrap_or_else(|| panic!("Harness::execute names `{definition_id}`, which is no definition given"));
        let mut faults: Vec<Fault> = definition.tasks.keys().flat_map(|t| Fault::of_task(t)).collect();
        for (&call, &n) in calls {
            faults.extend((1..=n.min(MAX_CALLS_FAULTED)).map(|i| Fault::StoreError(call, i)));
        }
        faults
    }

    /// One scenario, on a thread and a runtime of its own (paused time).
    fn scenario(self: &Arc<Self>, faults: Vec<Fault>, baseline: Option<&Execution>) -> Outcome {
        let plan = self.clone();
        let baseline = baseline.cloned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime for the scenario");
            runtime.block_on(plan.run_scenario(faults, baseline))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    async fn run_scenario(&self, faults: Vec<Fault>, baseline: Option<Execution>) -> Outcome {
        let clock = Clock::tokio();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
        let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new());
        let log = Arc::new(CallLog::default());
        let died = Arc::new(Notify::new());
        let (definition_id, params) = self.execute.clone().expect("checked by run");

        // A lost or doubled message needs the message: such scenarios send every task through
        // the queue; the others run ready tasks where they became ready (the module docs).
        let here = !faults
            .iter()
            .any(|f| matches!(f, Fault::LoseMessage(_) | Fault::DuplicateMessage(_)));
        let pending = Arc::new(std::sync::Mutex::new(faults.clone()));
        let first = Arc::new(Node::new(pending.clone(), died.clone(), here));
        let mut engines = vec![self.node(&store, &queue, &log, first.clone(), &clock, 1)];
        for d in &self.definitions {
            engines[0]
                .register_definition(d.clone())
                .await
                .unwrap_or_else(|e| panic!("definition `{}` refused: {e}", d.id));
        }
        let id = submit(&engines[0], &definition_id, &params).await;

        let started = tokio::time::Instant::now();
        let mut nodes = vec![first.clone()];
        let ended = loop {
            tokio::select! {
                _ = died.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if nodes.last().is_some_and(|n| n.is_dead()) {
                let next = Arc::new(Node::new(pending.clone(), died.clone(), here));
                engines.push(self.node(&store, &queue, &log, next.clone(), &clock, nodes.len() + 1));
                nodes.push(next);
            }
            match store.get_execution(id).await {
                Ok(e) if e.status.is_terminal() => break Some(e),
                _ if started.elapsed() > self.deadline => break None,
                _ => {}
            }
        };
        let calls = log.calls();
        let dependencies = self
            .definitions
            .iter()
            .find(|d| d.id == definition_id)
            .map(|d| d.graph.clone())
            .unwrap_or_default();
        let mut runs: BTreeMap<String, u32> = self
            .definitions
            .iter()
            .filter(|d| d.id == definition_id)
            .flat_map(|d| d.tasks.keys().map(|t| (t.clone(), 0)))
            .collect();
        for call in &calls {
            *runs.entry(call.task.clone()).or_default() += 1;
        }
        let violations = report::check(ended.as_ref(), baseline.as_ref(), &calls, &dependencies);
        let counted = StoreCall::ALL.into_iter().map(|c| (c, first.calls(c))).collect();
        Outcome {
            scenario: Scenario {
                faults,
                status: ended.as_ref().map(|e| e.status),
                runs,
                violations,
            },
            ended,
            calls: counted,
        }
    }

    /// Starts node number `n`: an engine whose Store and Queue calls go through `node`.
    fn node(
        &self,
        store: &Arc<dyn Store>,
        queue: &Arc<dyn Queue>,
        log: &Arc<CallLog>,
        node: Arc<Node>,
        clock: &Clock,
        n: usize,
    ) -> Engine {
        let config = EngineConfig {
            node_id: format!("harness-node-{n}"),
            clock: clock.clone(),
            run_ready_here: node.run_ready_here,
            ..EngineConfig::default()
        };
        let engine = Engine::builder()
            .store(Arc::new(store::FaultyStore {
                inner: store.clone(),
                node: node.clone(),
            }))
            .queue(Arc::new(queue::FaultyQueue {
                inner: queue.clone(),
                node: node.clone(),
            }))
            .config(config)
            .build()
            .expect("a harness node's engine");
        (self.setup)(&engine);
        let registry = engine.registry();
        for name in registry.names() {
            let f = registry.get(&name).expect("just listed");
            engine.register(name, node::wrap(f, node.clone(), log.clone()));
        }
        engine.start().expect("a harness node starts");
        engine
    }
}

/// What one scenario left: its verdict, the execution as it ended, and the Store calls the
/// first node made (the baseline's say which calls to fault).
struct Outcome {
    scenario: Scenario,
    ended: Option<Execution>,
    calls: BTreeMap<StoreCall, u32>,
}

/// `n` sets of two to four distinct faults out of `faults` (none when there are none), drawn with a generator seeded by `seed`.
fn draw(faults: &[Fault], seed: u64, n: usize) -> Vec<Vec<Fault>> {
    if faults.is_empty() {
        return Vec::new();
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            let mut pool = faults.to_vec();
            let k = rng.usize(2..=4).min(pool.len());
            (0..k).map(|_| pool.swap_remove(rng.usize(..pool.len()))).collect()
        })
        .collect()
}

/// Submits the execution, again after a transient error (an injected one, on creation).
async fn submit(engine: &Engine, definition_id: &str, params: &Value) -> ExecutionId {
    let mut tries = 0;
    loop {
        let request = ExecuteRequest::new(definition_id, params.clone()).idempotency_key("naxos-testing");
        match engine.submit(request).await {
            Ok(submitted) => return submitted.execution_id,
            Err(e) if e.is_transient() && tries < 10 => tries += 1,
            Err(e) => panic!("the harness could not submit `{definition_id}`: {e}"),
        }
    }
}
