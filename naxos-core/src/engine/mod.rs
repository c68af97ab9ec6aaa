//! The engine: submits executions, runs a node's worker pool and sweeper, and answers queries.
//!
//! - [`Engine`] (this file's API) — register functions and definitions, execute, cancel,
//!   retry, wait, shut down.
//! - `worker` — consume → claim → ack → run under timeout, heartbeat and cancellation → finish.
//! - `sweeper` — expired leases, lost publishes, due retries, job timeouts, pruning, node heartbeat.
//! - `scheduler` — fires due cron schedule ticks (every node; the Store decides who wins a tick);
//!   `schedules` is the schedules' API.
//! - `events` — the node's one feed of status events, for `wait_for` and event streams.

mod admission;
mod announce;
mod batch;
mod binder;
mod builder;
mod bulk;
mod config;
mod definitions;
mod events;
mod heartbeat;
mod inner;
mod metrics;
mod outbox;
mod runners;
mod scheduler;
mod schedules;
mod sweeper;
mod timers;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use batch::MAX_BATCH;
pub use builder::EngineBuilder;
pub use bulk::ExecutionFilter;
pub use config::{Clock, EngineConfig};
pub use events::EventStream;
pub(crate) use heartbeat::Heartbeat;
use inner::Inner;
pub use scheduler::ScheduleReport;
pub use sweeper::SweepReport;

use crate::backend::{
    Cache, DefinitionPut, ExecutionPage, ExecutionQuery, NewExecution, Queue, StopReason, Store, StoreCounts,
};
use crate::model::{
    validate, DefinitionSummary, Delay, Execution, ExecutionId, ExecutionStatus, JobDefinition, NodeInfo, Priority,
    StoredDefinition, TraceParent,
};
use crate::task::{Registry, TaskContext, TaskError};
use crate::{Error, Result};

/// A naxos node: the handle through which a service registers task functions and job
/// definitions, executes jobs and watches them. Cheap to clone (all clones share one node).
///
/// Call [`Engine::start`] on nodes that should run tasks, and [`Engine::shutdown`] before exit.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A request to run a job.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteRequest {
    /// The definition to run.
    pub definition_id: String,
    /// A specific version; the latest when `None`.
    pub version: Option<u32>,
    /// Params (a JSON object; `null` means `{}`).
    pub params: Value,
    /// Repeating a request with the same key (for the same definition) returns the first
    /// execution instead of starting another.
    pub idempotency_key: Option<String>,
    /// The W3C trace context of the request that submits it (its `traceparent` header), if
    /// any: stored with the execution, so that every attempt of its tasks, on any node and
    /// however much later, is traced as a child of that span (see [`ExecuteRequest::traceparent`]).
    pub traceparent: Option<TraceParent>,
    /// A later start (see [`ExecuteRequest::delay`] and [`ExecuteRequest::run_at`]); `None`:
    /// at once.
    pub delay: Option<Delay>,
    /// Its priority (see [`ExecuteRequest::priority`]); `None`: the definition's default.
    pub priority: Option<Priority>,
}

impl ExecuteRequest {
    /// Checks the params (a JSON object, `null` for `{}`, no U+0000) and the idempotency key,
    /// and makes `null` params `{}`.
    fn checked(mut self) -> Result<Self> {
        self.params = match self.params {
            Value::Null => Value::Object(Default::default()),
            Value::Object(m) => Value::Object(m),
            other => {
                return Err(Error::InvalidInput(format!(
                    "params must be a JSON object, not {}",
                    json_kind(&other)
                )))
            }
        };
        if let Some(path) = crate::model::find_nul(&self.params) {
            return Err(Error::InvalidInput(crate::model::nul_message("the params", &path)));
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > 256 || key.contains('\0') {
                return Err(Error::InvalidInput(
                    "the idempotency key must be 1 to 256 bytes, without U+0000".into(),
                ));
            }
        }
        Ok(self)
    }

    /// The execution to create from version `stored` of the definition, once the params and
    /// the idempotency key are checked as [`Engine::submit`] checks them. For Stores that
    /// create executions outside `submit` (e.g. in the caller's own database transaction).
    pub fn into_new(self, stored: &StoredDefinition) -> Result<NewExecution> {
        let request = self.checked()?;
        let mut new = NewExecution::new(stored, request.params);
        new.idempotency_key = request.idempotency_key;
        new.traceparent = request.traceparent;
        new.delay = request.delay;
        if let Some(priority) = request.priority {
            new.priority = priority;
        }
        Ok(new)
    }

    /// Runs the latest version of `definition_id` with `params`.
    pub fn new(definition_id: impl Into<String>, params: Value) -> Self {
        Self {
            definition_id: definition_id.into(),
            version: None,
            params,
            idempotency_key: None,
            traceparent: None,
            delay: None,
            priority: None,
        }
    }

    /// Pins a version.
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Joins the execution to the caller's trace: `traceparent` is the W3C trace context of the
    /// submitting request (parse its header with [`TraceParent::parse`]). The execution keeps
    /// it; each task attempt's `task` span records its `trace_id`, this `parent_span_id` and a
    /// `span_id` of its own, and the task function gets the attempt's context to pass on
    /// ([`TaskContext::traceparent`]). A repeated idempotency key returns the first execution,
    /// which keeps the first request's trace context; a retry of the execution runs under it too.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::{ExecuteRequest, model::TraceParent, serde_json::json};
    /// let traceparent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// let request = ExecuteRequest::new("orders", json!({})).traceparent(traceparent);
    /// assert_eq!(request.traceparent, Some(traceparent));
    /// ```
    #[must_use]
    pub fn traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Runs it at `priority` (`?priority=` over HTTP) instead of its definition's default
    /// (the job-level `priority`, else the lowest): under a backlog, its tasks start before
    /// those of lower-priority executions already waiting (see [`Priority`]). A repeated
    /// idempotency key returns the first execution at its own priority.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::{model::Priority, serde_json::json, ExecuteRequest};
    /// let request = ExecuteRequest::new("alerts", json!({})).priority(Priority::new(9)?);
    /// assert_eq!(request.priority, Some(Priority::HIGHEST));
    /// # Ok::<(), naxos::Error>(())
    /// ```
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Starts the execution `delay` after the Store creates it (`?delayMs=` over HTTP). It is
    /// created at once — its id returned, an idempotency key deduplicating it as usual — and
    /// waits PENDING, with no task queued and
    /// [`scheduled_for`](crate::model::ExecutionSummary::scheduled_for) set, until its time;
    /// then it starts as an execution submitted then would, and its `timeoutMs` counts from
    /// that start. It survives restarts on a durable Store, and a cancel before its time ends it
    /// CANCELLED with no task run. At most [`Delay::MAX`] (ten years), else
    /// [`Error::InvalidInput`] at submit; a zero delay starts it at once.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use std::time::Duration;
    /// use naxos::{model::Delay, serde_json::json, ExecuteRequest};
    /// let request = ExecuteRequest::new("report", json!({})).delay(Duration::from_secs(3600));
    /// assert_eq!(request.delay, Some(Delay::For(Duration::from_secs(3600))));
    /// ```
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(Delay::For(delay));
        self
    }

    /// Starts the execution at `at` by the Store's clock (`?runAt=` over HTTP), as
    /// [`delay`](Self::delay) says; a time already past starts it at once. At most
    /// [`Delay::MAX`] ahead, else [`Error::InvalidInput`] at submit.
    #[must_use]
    pub fn run_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.delay = Some(Delay::Until(at));
        self
    }
}

/// What [`Engine::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The execution's id.
    pub execution_id: ExecutionId,
    /// False when an idempotency key matched an earlier execution.
    pub created: bool,
    /// The execution's status: PENDING for a new one, as it stands for an earlier one.
    pub status: ExecutionStatus,
    /// For a new delayed execution, when it starts (see [`ExecuteRequest::delay`]); `None` for
    /// one that starts at once, and for an earlier one (read its status for that).
    pub scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
}

/// The Store's and Queue's health.
#[derive(Debug)]
pub struct Health {
    /// The Store's ping.
    pub store: Result<()>,
    /// The Queue's ping.
    pub queue: Result<()>,
    /// Messages in the Queue's dead-letter queue ([`Queue::dead_letters`]); `None` where the
    /// Queue keeps none, or when it could not say.
    pub dead_letters: Option<u64>,
}

impl Health {
    /// True when both answered.
    pub fn is_healthy(&self) -> bool {
        self.store.is_ok() && self.queue.is_ok()
    }
}

impl Engine {
    /// A builder; without backends set it uses the in-memory ones.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine on in-memory backends with default settings.
    pub fn in_memory() -> Self {
        Self::builder().build().expect("the default settings are valid")
    }

    /// The settings in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The task function registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The Store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The Queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// The Cache.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.inner.cache
    }

    /// Registers (or replaces) a task function under `name`.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// # let engine = naxos::Engine::in_memory();
    /// use naxos::{TaskError, serde_json::json};
    /// engine.register("greet", |ctx| async move {
    ///     let who: String = ctx.param("name").ok_or_else(|| TaskError::fatal("no name"))?;
    ///     Ok(json!({ "greeting": format!("hello, {who}") }))
    /// });
    /// ```
    pub fn register<F, Fut, O>(&self, name: impl Into<String>, f: F)
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<O, TaskError>> + Send + 'static,
        O: Serialize + 'static,
    {
        self.inner.registry.register(name, f);
    }

    /// Registers a typed task function: the execution's params deserialize into `I`, and the
    /// output serializes from `O`.
    ///
    /// When the params do not fit `I`, the function is not called: the task FAILS at once,
    /// without retries (the same params would not fit the next time either), with an error
    /// naming the task, where in the params, and serde's message — e.g. ``task `total`: params
    /// do not fit at `items[1]`: invalid type: string "x", expected u32``.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::{Engine, ResultExt, TaskError};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct Order { items: Vec<u32> }
    /// #[derive(Serialize)]
    /// struct Total { sum: u32 }
    ///
    /// let engine = Engine::in_memory();
    /// engine.register_typed("total", |_ctx, order: Order| async move {
    ///     let sum = order.items.iter().try_fold(0u32, |a, &b| a.checked_add(b)).ok_or("overflow").fatal()?;
    ///     Ok::<_, TaskError>(Total { sum })
    /// });
    /// ```
    pub fn register_typed<I, O, F, Fut>(&self, name: impl Into<String>, f: F)
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(TaskContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<O, TaskError>> + Send + 'static,
    {
        self.inner.registry.register_typed(name, f);
    }

    /// Validates and registers a job definition. Identical content is a no-op returning the
    /// current version (`created: false`); changed content becomes the next version.
    pub async fn register_definition(&self, definition: JobDefinition) -> Result<DefinitionPut> {
        let registry = &self.inner.registry;
        validate(&definition, &self.inner.config.limits, &|f| registry.contains(f))?;
        self.check_sub_jobs(&definition).await?;
        self.inner.store.put_definition(definition).await
    }

    /// Pauses the definition `id` (every version): its executions, new and running, start no new
    /// task until [`resume_definition`](Self::resume_definition) — a task asked for while it is
    /// paused waits QUEUED, `blockedBy: paused`, without its message; running tasks finish.
    /// `NotFound` for an unknown definition.
    pub async fn pause_definition(&self, id: &str) -> Result<()> {
        self.inner.store.set_definition_paused(id, true).await
    }

    /// Resumes the definition `id`: the tasks its pause blocked are QUEUED and published again
    /// (a node that stops meanwhile leaves the rest to the sweepers). `NotFound` for an unknown
    /// definition.
    pub async fn resume_definition(&self, id: &str) -> Result<()> {
        self.inner.store.set_definition_paused(id, false).await?;
        loop {
            let changes = self.inner.store.admit_blocked(sweeper::BATCH).await?;
            if changes.is_empty() {
                return Ok(());
            }
            self.inner.dispatch(changes).await;
        }
    }

    /// Refuses a definition whose `subJob`s name a definition (or version) the Store does not
    /// have: `InvalidDefinition` naming the task and field. A sub-job of the definition itself
    /// (recursion, bounded by the nesting depth) is allowed.
    async fn check_sub_jobs(&self, definition: &JobDefinition) -> Result<()> {
        let mut problems = Vec::new();
        for (key, task) in &definition.tasks {
            let Some(job) = &task.sub_job else { continue };
            if job.definition_id == definition.id && job.version.is_none() {
                continue;
            }
            match self.inner.store.get_definition(&job.definition_id, job.version).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => problems.push(crate::model::Problem::InvalidSubJob {
                    task: key.clone(),
                    field: if job.version.is_some() {
                        "subJob.version"
                    } else {
                        "subJob.definitionId"
                    }
                    .into(),
                    reason: match job.version {
                        Some(v) => format!("job definition `{}` has no version {v}", job.definition_id),
                        None => format!("job definition `{}` is not registered", job.definition_id),
                    },
                }),
                Err(e) => return Err(e),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidDefinition {
                id: definition.id.clone(),
                problems,
            })
        }
    }

    /// A definition's latest version, or the given one.
    pub async fn definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        self.inner.store.get_definition(id, version).await
    }

    /// The latest version of every definition.
    pub async fn definitions(&self) -> Result<Vec<DefinitionSummary>> {
        self.inner.store.list_definitions().await
    }

    /// Every version of one definition, oldest first (empty when unknown).
    pub async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        self.inner.store.definition_versions(id).await
    }

    /// Executions by status and tasks queued and running, across all nodes.
    pub async fn counts(&self) -> Result<StoreCounts> {
        self.inner.store.counts().await
    }

    /// Every node that has reported, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.inner.store.list_nodes().await
    }

    /// Runs the latest version of a definition with `params`: anything that serializes to a
    /// JSON object — a `json!({…})` value, a map, or a struct of your own deriving
    /// `Serialize` (the task functions read it back with [`TaskContext::input`],
    /// [`TaskContext::param`] or [`register_typed`](Self::register_typed)).
    /// [`Error::InvalidInput`] when it does not serialize or is not an object.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> naxos::Result<()> {
    /// use naxos::model::{JobDefinition, TaskBuilder};
    /// use naxos::{serde_json::json, Engine};
    /// #[derive(serde::Serialize)]
    /// struct Order { id: u64 }
    ///
    /// let engine = Engine::in_memory();
    /// engine.register("ship", |ctx| async move { Ok(json!(ctx.param::<u64>("id"))) });
    /// engine.register_definition(JobDefinition::builder("orders").task(TaskBuilder::new("ship", "ship")).build()).await?;
    /// engine.execute("orders", Order { id: 7 }).await?;
    /// engine.execute("orders", json!({ "id": 8 })).await?;
    /// assert!(engine.execute("orders", [1, 2]).await.unwrap_err().to_string().contains("must be a JSON object"));
    /// # Ok(()) }
    /// ```
    pub async fn execute<P: Serialize>(&self, definition_id: &str, params: P) -> Result<Submitted> {
        let params = serde_json::to_value(params)
            .map_err(|e| Error::InvalidInput(format!("the params do not serialize to JSON: {e}")))?;
        self.submit(ExecuteRequest::new(definition_id, params)).await
    }

    /// Runs a job as `request` says. The execution and its first tasks are in the Store when
    /// this returns; their messages are published, or will be by a sweeper if that fails. A
    /// delayed execution ([`ExecuteRequest::delay`]) is in the Store with its tasks PENDING; this
    /// node starts it at its time, or any node's sweeper if this one has stopped.
    ///
    /// Traced as an `execution` span (`definition_id`, `execution_id`, and with a trace context
    /// `trace_id` and `parent_span_id`); every attempt of its tasks, on any node, is a `task`
    /// span with the same ids.
    #[tracing::instrument(
        name = "execution",
        skip_all,
        fields(
            definition_id = %request.definition_id,
            execution_id = tracing::field::Empty,
            trace_id = request.traceparent.map(|t| tracing::field::display(t.trace_id_hex())),
            parent_span_id = request.traceparent.map(|t| tracing::field::display(t.parent_id_hex())),
        )
    )]
    pub async fn submit(&self, request: ExecuteRequest) -> Result<Submitted> {
        let request = request.checked()?;
        let inner = &self.inner;
        let stored = inner
            .store
            .get_definition(&request.definition_id, request.version)
            .await?;
        let new = request.into_new(&stored)?;
        inner.admission.admit(inner, 1).await?;
        let created = inner.store.create_execution(new).await;
        if !created.as_ref().is_ok_and(|c| c.created) {
            inner.admission.cancel(1);
        }
        let created = created?;
        tracing::Span::current().record("execution_id", tracing::field::display(created.execution_id));
        if created.created {
            metrics::submitted(&stored.definition.id);
            tracing::info!("execution submitted");
        }
        let scheduled_for = created.changes.scheduled.first().map(|&(_, at)| at);
        worker::dispatch_here(inner, created.changes).await;
        Ok(Submitted {
            execution_id: created.execution_id,
            created: created.created,
            status: created.status,
            scheduled_for,
        })
    }

    /// An execution with every task's state.
    pub async fn execution(&self, id: ExecutionId) -> Result<Execution> {
        self.inner.store.get_execution(id).await
    }

    /// A page of executions, newest first.
    pub async fn executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        self.inner.store.list_executions(query).await
    }

    /// Cancels an unfinished execution: queued tasks never start, running ones see their
    /// cancellation token fire (at once on this node, by the next heartbeat elsewhere) and
    /// their results are discarded; a delayed execution not yet started never starts.
    /// `Conflict` when it already finished.
    pub async fn cancel(&self, id: ExecutionId) -> Result<ExecutionStatus> {
        self.inner.stop(id, StopReason::Cancelled).await
    }

    /// Re-runs the failed, skipped and cancelled tasks of a FAILED or CANCELLED execution;
    /// returns its new status (RUNNING).
    pub async fn retry(&self, id: ExecutionId) -> Result<ExecutionStatus> {
        let changes = self.inner.store.retry_execution(id).await?;
        self.inner.dispatch(changes).await;
        Ok(ExecutionStatus::Running)
    }

    /// Sends the signal `name` with `payload` to execution `id` (`POST
    /// /api/v1/jobs/{executionId}/signals/{name}`): the first task WAITING for it (a `waitFor`
    /// task, see [`TaskBuilder::wait_for`](crate::model::TaskBuilder::wait_for)) COMPLETES with
    /// the payload as its output, and returns its id; when none waits yet, the signal is kept,
    /// durably, for the first task of that name that will, and this returns `None`. Each signal
    /// is taken by one task.
    ///
    /// `NotFound` for an unknown execution, `Conflict` when it is finished, `InvalidInput` when
    /// none of its tasks waits for `name`.
    pub async fn signal<P: Serialize>(&self, id: ExecutionId, name: &str, payload: P) -> Result<Option<String>> {
        let payload = serde_json::to_value(payload)
            .map_err(|e| Error::InvalidInput(format!("the payload of signal `{name}`: {e}")))?;
        let outcome = self.inner.store.signal(id, name, payload).await?;
        self.inner.dispatch(outcome.changes).await;
        Ok(outcome.delivered_to)
    }

    /// Re-runs the task `task_id` of a finished execution (COMPLETED, FAILED or CANCELLED) and
    /// every task below it, keeping the outputs of the tasks above (`POST
    /// /api/v1/jobs/{executionId}/retry?from=<taskId>`); returns its new status (RUNNING). A
    /// task beside the re-run part keeps its end state: one that failed or was cancelled still
    /// decides how the execution ends.
    ///
    /// `Conflict` on a PENDING or RUNNING execution; `NotFound` for an unknown execution or task.
    pub async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<ExecutionStatus> {
        let changes = self.inner.store.retry_from(id, task_id).await?;
        self.inner.dispatch(changes).await;
        Ok(ExecutionStatus::Running)
    }

    /// Waits until the execution is finished and returns it.
    ///
    /// On an engine that was never [started](Self::start), an unfinished execution can only
    /// finish on another node sharing the Store: unless a node that runs tasks reports to the
    /// Store within a moment (two sweep intervals, at least 1 s), this fails with
    /// [`Error::Conflict`] saying that the engine was never started, instead of waiting for ever.
    pub async fn wait_for(&self, id: ExecutionId) -> Result<Execution> {
        runners::ensure_runner(&self.inner, id).await?;
        events::wait_for(&self.inner, id).await
    }

    /// The status events of one execution from now on, wherever its tasks run. Open the stream
    /// before reading the execution, so that no change between the two is missed. Fails when
    /// the Queue cannot carry events.
    pub async fn watch(&self, id: ExecutionId) -> Result<EventStream> {
        self.inner.events.stream(id).await
    }

    /// Like [`wait_for`](Self::wait_for), failing with [`Error::Timeout`] after `timeout`.
    pub async fn wait_for_timeout(&self, id: ExecutionId, timeout: Duration) -> Result<Execution> {
        tokio::time::timeout(timeout, self.wait_for(id))
            .await
            .map_err(|_| Error::Timeout(format!("execution {id} did not finish within {timeout:?}")))?
    }

    /// Writes a consistent copy of the Store into `directory` while the node keeps serving,
    /// and returns the file written ([`Store::backup`]; `NotSupported` where the Store has its
    /// own tools for it).
    pub async fn backup(&self, directory: &std::path::Path) -> Result<std::path::PathBuf> {
        self.inner.store.backup(directory).await
    }

    /// Pings the Store and the Queue, and counts the Queue's dead letters.
    pub async fn health(&self) -> Health {
        let (store, queue, dead_letters) = tokio::join!(
            self.inner.store.ping(),
            self.inner.queue.ping(),
            self.inner.queue.dead_letters()
        );
        Health {
            store,
            queue,
            dead_letters: dead_letters.ok().flatten(),
        }
    }

    /// Starts this node's sweeper, its scheduler and (unless [`EngineConfig::workers`] is false) its worker
    /// pool, on the current tokio runtime. `Conflict` when already started.
    pub fn start(&self) -> Result<()> {
        self.inner.start()
    }

    /// Runs one sweep now: recovers expired leases, republishes lost messages and due retries,
    /// wakes due waits and starts due delayed executions, fails overdue executions, prunes, and
    /// reports the node.
    pub async fn sweep_once(&self) -> Result<SweepReport> {
        sweeper::sweep_once(&self.inner).await
    }

    /// Stops taking work, gives running tasks [`EngineConfig::shutdown_grace`] to finish, then
    /// cancels the rest and hands them back to the queue for another node. Returns once all
    /// in-flight work is settled.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await
    }

    /// Task attempts running on this node now.
    pub fn running_tasks(&self) -> usize {
        self.inner.running_count()
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
