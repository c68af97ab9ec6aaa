//! What a running task function receives.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

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
    /// A context for calling a task function directly, e.g. in a unit test of the function.
    pub fn for_test(params: Value, upstream: BTreeMap<String, Value>) -> Self {
        Self {
            task: TaskRef::new(ExecutionId::nil(), "test", 1),
            attempt: 1,
            params: Arc::new(params),
            upstream: Arc::new(upstream.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
            cancel: CancellationToken::new(),
            heartbeat: None,
            traceparent: None,
        }
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

    /// The task's id in the definition.
    pub fn task_id(&self) -> &str {
        &self.task.task_id
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

    /// The output of a direct dependency.
    pub fn upstream(&self, task_id: &str) -> Option<&Value> {
        self.upstream.get(task_id).map(|v| &**v)
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

    /// The cancellation token: fires when the execution is cancelled, the attempt times out,
    /// the lease is lost, or the worker shuts down past its grace period.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// True once the attempt should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Waits until the attempt should stop.
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
