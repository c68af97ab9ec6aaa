//! What a running task function receives.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::upstream::{self, UpstreamError};
use super::TaskError;
use crate::backend::LeaseState;
use crate::engine::Heartbeat;
use crate::model::{ExecutionId, TaskRef, TraceParent};

/// Everything a task attempt may use: ids, the attempt number, the execution's params, the
/// outputs of its direct dependencies, a cancellation signal, a heartbeat, and the trace
/// context to pass on.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) task: TaskRef,
    pub(crate) attempt: u32,
    pub(crate) params: Arc<Value>,
    pub(crate) upstream: Arc<BTreeMap<String, Arc<Value>>>,
    /// The ids of the task's direct dependencies, as the definition lists them.
    pub(crate) dependencies: Arc<[String]>,
    /// In a fan-out: this instance's index and item.
    pub(crate) instance: Option<(u32, Arc<Value>)>,
    pub(crate) cancel: CancellationToken,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) traceparent: Option<TraceParent>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("task", &self.task)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// A context for calling a task function directly, e.g. in a unit test of the function:
    /// task `test`, attempt 1, whose direct dependencies are the keys of `upstream` (add
    /// dependencies without an output with [`with_dependencies`](Self::with_dependencies)).
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use std::collections::BTreeMap;
    /// use naxos::{serde_json::json, TaskContext};
    /// let ctx = TaskContext::for_test(json!({"n": 2}), BTreeMap::from([("fetch".to_string(), json!(40))]));
    /// assert_eq!(ctx.upstream_as::<i64>("fetch").unwrap() + ctx.param::<i64>("n").unwrap(), 42);
    /// ```
    pub fn for_test(params: Value, upstream: BTreeMap<String, Value>) -> Self {
        let dependencies = upstream.keys().cloned().collect();
        Self {
            task: TaskRef::new(ExecutionId::nil(), "test", 1),
            attempt: 1,
            params: Arc::new(params),
            upstream: Arc::new(upstream.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
            dependencies,
            instance: None,
            cancel: CancellationToken::new(),
            heartbeat: None,
            traceparent: None,
        }
    }

    /// The same context as instance `index` of a fan-out on `item` (task id `test[index]`),
    /// e.g. to test a function that a `forEach` runs.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use std::collections::BTreeMap;
    /// use naxos::{serde_json::json, TaskContext};
    /// let ctx = TaskContext::for_test(json!({}), BTreeMap::new()).with_item(2, json!("c.png"));
    /// assert_eq!((ctx.index(), ctx.item()), (Some(2), Some(&json!("c.png"))));
    /// ```
    #[must_use]
    pub fn with_item(mut self, index: u32, item: Value) -> Self {
        self.task.task_id = crate::model::Instance::task_id(&self.task.task_id, index);
        self.instance = Some((index, Arc::new(item)));
        self
    }

    /// The same context with `dependencies` added to the task's direct dependencies (those
    /// without an entry in `upstream` have no output), e.g. to test a task that runs after a
    /// dependency was skipped.
    #[must_use]
    pub fn with_dependencies<I, S>(mut self, dependencies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all = self.dependencies.to_vec();
        for d in dependencies {
            let d = d.into();
            if !all.contains(&d) {
                all.push(d);
            }
        }
        self.dependencies = all.into();
        self
    }

    /// The same context with `traceparent` as the attempt's trace context, e.g. to test that a
    /// function passes it on.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// The execution this attempt belongs to.
    pub fn execution_id(&self) -> ExecutionId {
        self.task.execution_id
    }

    /// The task's id: its id in the definition, or `task[index]` for an instance of a
    /// fan-out (see [`definition_task_id`](Self::definition_task_id)).
    pub fn task_id(&self) -> &str {
        &self.task.task_id
    }

    /// The task's id in the definition (for an instance of a fan-out, its `forEach` task's).
    pub fn definition_task_id(&self) -> &str {
        crate::model::Instance::definition_task(&self.task.task_id)
    }

    /// In a fan-out (`forEach`): this instance's element of the list; `None` in any other task.
    pub fn item(&self) -> Option<&Value> {
        self.instance.as_ref().map(|(_, item)| &**item)
    }

    /// In a fan-out: this instance's element, deserialized into `T`; a fatal error naming the
    /// task and the problem when it does not fit, or when the task is no fan-out.
    pub fn item_as<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        let Some(item) = self.item() else {
            return Err(TaskError::fatal(format!(
                "task `{}` is not an instance of a forEach: it has no item",
                self.task.task_id
            )));
        };
        serde_path_to_error::deserialize(item).map_err(|e| {
            let path = e.path().to_string();
            TaskError::fatal(format!(
                "task `{}`: its item does not fit at `{path}`: {}",
                self.task.task_id,
                e.into_inner()
            ))
        })
    }

    /// In a fan-out: this instance's position in the list (from 0); `None` in any other task.
    pub fn index(&self) -> Option<u32> {
        self.instance.as_ref().map(|(index, _)| *index)
    }

    /// Which start of the task this is: 1 for the first, 2 after one retry or recovery, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The execution's params (`data`), a JSON object.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// One param, deserialized; `None` when absent or of another shape.
    pub fn param<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.params.get(key).and_then(|v| T::deserialize(v).ok())
    }

    /// The whole params, deserialized into `T`; a fatal error naming the problem otherwise.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_path_to_error::deserialize(&*self.params).map_err(|e| {
            let path = e.path().to_string();
            TaskError::fatal(format!(
                "task `{}`: params do not fit at `{path}`: {}",
                self.task.task_id,
                e.into_inner()
            ))
        })
    }

    /// The output of a direct dependency; `None` when `task_id` is not one, or has no output.
    /// [`upstream_as`](Self::upstream_as) tells these apart and deserializes.
    pub fn upstream(&self, task_id: &str) -> Option<&Value> {
        self.upstream.get(task_id).map(|v| &**v)
    }

    /// The output of the direct dependency `task_id`, deserialized into `T`. Fails with an
    /// [`UpstreamError`] that says which of three things went wrong: `task_id` is not a direct
    /// dependency of this task ("`fetch` is not a direct dependency of `join`"), it has no
    /// output, or its output does not fit `T` (naming the dependency, where in its output, and
    /// serde's message). `?` in a task function makes any of them a fatal [`TaskError`].
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::{serde_json::json, Engine, TaskError};
    /// # #[derive(serde::Deserialize)] struct Weather { celsius: f64 }
    /// # let engine = Engine::in_memory();
    /// // `Weather` is any `Deserialize` type, e.g. the type `fetch` returns.
    /// engine.register("fahrenheit", |ctx| async move {
    ///     let weather: Weather = ctx.upstream_as("fetch")?;
    ///     Ok::<_, TaskError>(json!(weather.celsius * 1.8 + 32.0))
    /// });
    /// ```
    pub fn upstream_as<T: DeserializeOwned>(&self, task_id: &str) -> Result<T, UpstreamError> {
        let task = &self.task.task_id;
        match self.upstream.get(task_id) {
            Some(value) => upstream::read(task, task_id, value),
            None if self.dependencies.iter().any(|d| d == task_id) => Err(UpstreamError::NoOutput {
                task: task.clone(),
                dependency: task_id.to_string(),
            }),
            None => Err(UpstreamError::NotADependency {
                task: task.clone(),
                dependency: task_id.to_string(),
            }),
        }
    }

    /// The outputs of all direct dependencies, by task id.
    pub fn upstream_all(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.upstream.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    /// This attempt's W3C trace context, to send downstream as the `traceparent` header (or
    /// message property) of the calls the task makes, so that they join the trace under it.
    ///
    /// It is a child of the request that submitted the execution
    /// ([`ExecuteRequest::traceparent`](crate::ExecuteRequest::traceparent)): the same trace-id
    /// and flags, and as parent-id this attempt's own span id — the `span_id` field of its
    /// `task` span, whose `parent_span_id` is the submitting request's. Every attempt gets a
    /// fresh one. `None` when the execution was submitted without a trace context.
    pub fn traceparent(&self) -> Option<&TraceParent> {
        self.traceparent.as_ref()
    }

    /// The cancellation token: fires when the execution is cancelled, the attempt times out
    /// ([`TaskBuilder::timeout`](crate::TaskBuilder::timeout)), the lease is lost, or the
    /// worker shuts down past its grace period. Once it fires, the function has
    /// [`EngineConfig::cancel_grace`](crate::EngineConfig::cancel_grace) (default 5 s) to
    /// return; past that its future is dropped, and whatever it returns is discarded either way.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// True once the attempt should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Waits until the attempt should stop (see [`cancellation`](Self::cancellation)). Race
    /// long work against it, so that a timeout or a cancel stops the work instead of leaving it
    /// running until its future is dropped:
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use std::time::Duration;
    /// use naxos::{serde_json::json, Engine, TaskError};
    /// # let engine = Engine::in_memory();
    /// engine.register("slow", |ctx| async move {
    ///     tokio::select! {
    ///         _ = ctx.cancelled() => Err(TaskError::retryable("stopped: cancelled or timed out")),
    ///         _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(json!("done")),
    ///     }
    /// });
    /// ```
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Extends the attempt's lease now. The worker already renews it on an interval while the
    /// function runs; call this between long stretches of work that do not yield.
    ///
    /// Fails with a fatal error when the execution was cancelled, and with a retryable one when
    /// the lease was lost to another attempt — in both cases the cancellation token fires too,
    /// and the attempt's result will be discarded — or when the Store could not be reached (the
    /// lease stands until it expires, and the worker's own renewal tries again).
    pub async fn heartbeat(&self) -> Result<(), TaskError> {
        let Some(hb) = &self.heartbeat else {
            return Ok(());
        };
        match hb.beat().await {
            Ok(LeaseState::Active) => Ok(()),
            Ok(LeaseState::Cancelled) => {
                self.cancel.cancel();
                Err(TaskError::fatal("the execution was cancelled"))
            }
            Err(e) => {
                if e.is_conflict() {
                    self.cancel.cancel();
                }
                Err(TaskError::retryable(format!("heartbeat failed: {e}")))
            }
        }
    }
}
