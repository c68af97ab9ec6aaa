//! Executions, task runs, queue messages and status events.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{ExecutionStatus, Priority, TaskPlan, TaskStatus, TraceParent};

/// An execution's id: a UUIDv7, so ids sort by creation time.
pub type ExecutionId = Uuid;

/// Names one attempt of one task: the queue message, and the fencing token of its lease.
///
/// `attempt` grows every time the task is put back in line (retry, expired lease, hand-back), so
/// a message or a worker holding an older attempt can never change the task's state again.
///
/// Two references are equal (and hash alike) when they name the same dispatch: the
/// [`traceparent`](Self::traceparent) riding along is not part of its identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRef {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The task within it.
    pub task_id: String,
    /// The dispatch number this message or lease is for (from 1).
    pub attempt: u32,
    /// The execution's trace context, when it was submitted with one and the Store said so: a
    /// Queue carries it beside the message (RabbitMQ: the `traceparent` header), never in the
    /// JSON body, whose format is fixed. Informational: a worker takes it from its claim
    /// ([`ClaimedTask::traceparent`](crate::backend::ClaimedTask::traceparent)).
    #[serde(skip)]
    pub traceparent: Option<TraceParent>,
    /// Its execution's priority, when the Store said so: a Queue delivers the messages of
    /// higher priorities first (RabbitMQ: a queue per level) and carries it beside the
    /// message, never in the JSON body. Informational like the trace context: not part of the
    /// reference's identity.
    #[serde(skip)]
    pub priority: Priority,
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &Self) -> bool {
        self.execution_id == other.execution_id && self.task_id == other.task_id && self.attempt == other.attempt
    }
}

impl Eq for TaskRef {}

impl std::hash::Hash for TaskRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.execution_id.hash(state);
        self.task_id.hash(state);
        self.attempt.hash(state);
    }
}

impl TaskRef {
    /// The version of the task-message format this build writes and reads: 1, the original's
    /// `{"executionId","taskId","attempt"}`.
    ///
    /// A release that changes what a task message means (a field an older reader would ignore
    /// and so misread, say) raises it; a queue carries it beside the JSON (RabbitMQ: the
    /// `x-naxos-version` header, absent = 1), and a consumer that meets a newer version hands
    /// the message back for a newer node instead of delivering it.
    pub const VERSION: u32 = 1;

    /// A reference to `task_id`'s dispatch `attempt` in `execution_id`.
    pub fn new(execution_id: ExecutionId, task_id: impl Into<String>, attempt: u32) -> Self {
        Self {
            execution_id,
            task_id: task_id.into(),
            attempt,
            traceparent: None,
            priority: Priority::LOWEST,
        }
    }

    /// The same reference, carrying `traceparent`.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: Option<TraceParent>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// The same reference, at `priority`.
    #[must_use]
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.execution_id, self.task_id, self.attempt)
    }
}

/// Who holds a running task, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The node id of the worker running the task.
    pub owner: String,
    /// When the lease runs out unless renewed by a heartbeat.
    pub expires_at: DateTime<Utc>,
}

/// One task of one execution, with its whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    /// The task's id in the definition.
    pub task_id: String,
    /// The task's name in the definition.
    pub name: String,
    /// The function that runs it.
    pub function_name: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// The ids it depends on.
    pub dependencies: Vec<String>,
    /// Its condition and trigger, fixed when the execution was created (left out when plain).
    /// Shared with the definition's template and the other executions of it until a run
    /// changes its own (a sub-job's child: [`Arc::make_mut`]).
    #[serde(default, skip_serializing_if = "plain_plan")]
    pub plan: Arc<TaskPlan>,
    /// Dependencies not yet COMPLETED.
    pub remaining_dependencies: u32,
    /// The current dispatch number (see [`TaskRef::attempt`]).
    pub attempt: u32,
    /// How many times a worker started it.
    pub attempts: u32,
    /// How many of those attempts failed (errors and timeouts); the retry budget counts these.
    pub failures: u32,
    /// How many times its lease ran out (the worker vanished) and it was requeued.
    pub lease_expiries: u32,
    /// How many times its message was published again, presumed lost, since it last became
    /// QUEUED; each republish waits twice as long as the one before.
    #[serde(default)]
    pub republished: u32,
    /// The last error, if any.
    pub error: Option<String>,
    /// The output, once COMPLETED.
    pub output: Option<Value>,
    /// The lease while RUNNING.
    pub lease: Option<Lease>,
    /// When it last became QUEUED.
    pub queued_at: Option<DateTime<Utc>>,
    /// When a RETRYING task is due, or when one waiting for its rate limit has its turn.
    pub due_at: Option<DateTime<Utc>>,
    /// When the latest attempt started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it last finished (or failed).
    pub end_time: Option<DateTime<Utc>>,
    /// Every attempt a worker started, oldest first.
    #[serde(default)]
    pub history: Vec<Attempt>,
    /// Why a QUEUED task waits unpublished, if it does: it is published again when admitted
    /// (see [`BlockedBy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<BlockedBy>,
    /// The concurrency slot this run counts against, for a task with a `concurrency` limit:
    /// the limit's scope (definition, task and key value, as a JSON array), fixed when the task
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// True while the run holds a slot of [`slot`](Self::slot): from its claim (or its
    /// admission, while its message travels) until it stops running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holds_slot: bool,
    /// The rate limit this run counts against, for a task with a `rateLimit`: its scope, as
    /// [`slot`](Self::slot)'s, fixed when the task starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

/// Why a QUEUED task waits without its message: admission (DESIGN §8). A blocked task is
/// published only when admitted again, never by the stale sweep.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BlockedBy {
    /// Its definition is paused: it was claimed while it was, and waits for the resume.
    Paused,
    /// Its task's concurrency limit was reached: it waits for a slot.
    Concurrency,
    /// Its task's rate limit was spent: it waits for its turn (its `due_at`).
    RateLimit,
}

impl BlockedBy {
    /// The JSON name, e.g. `"paused"` (also what a Store keeps).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "paused",
            Self::Concurrency => "concurrency",
            Self::RateLimit => "rateLimit",
        }
    }

    /// Parses a JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "paused" => Some(Self::Paused),
            "concurrency" => Some(Self::Concurrency),
            "rateLimit" => Some(Self::RateLimit),
            _ => None,
        }
    }
}

/// True for a run whose plan is the default (serde leaves it out).
fn plain_plan(plan: &Arc<TaskPlan>) -> bool {
    plan.is_plain()
}

impl TaskRun {
    /// The task as it starts: PENDING, first attempt to come, nothing recorded; its
    /// `remaining_dependencies` left at 0 for the state module to count.
    pub fn pending(
        task_id: String,
        name: String,
        function_name: String,
        dependencies: Vec<String>,
        plan: Arc<TaskPlan>,
    ) -> Self {
        Self {
            task_id,
            name,
            function_name,
            status: TaskStatus::Pending,
            dependencies,
            plan,
            remaining_dependencies: 0,
            attempt: 1,
            attempts: 0,
            failures: 0,
            lease_expiries: 0,
            republished: 0,
            error: None,
            output: None,
            lease: None,
            queued_at: None,
            due_at: None,
            start_time: None,
            end_time: None,
            history: Vec::new(),
            blocked_by: None,
            slot: None,
            holds_slot: false,
            rate: None,
        }
    }

    /// The reference to its current dispatch.
    pub fn task_ref(&self, execution_id: ExecutionId) -> TaskRef {
        TaskRef::new(execution_id, self.task_id.clone(), self.attempt)
    }
}

/// One started attempt of a task: who ran it, when, and how it ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The dispatch number it ran under (see [`TaskRef::attempt`]).
    pub attempt: u32,
    /// The node whose worker claimed it (shared: records are copied to every reader).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub node: Arc<str>,
    /// When it was claimed.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while it runs.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended; `None` while it runs.
    pub outcome: Option<AttemptOutcome>,
    /// The error it ended with, if any.
    pub error: Option<String>,
}

/// How an [`Attempt`] ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptOutcome {
    /// It returned an output.
    Completed,
    /// It failed and the task will be tried again.
    Retrying,
    /// It failed and the task FAILED.
    Failed,
    /// Its worker handed it back (shutdown).
    Released,
    /// Its lease ran out: the worker vanished.
    Expired,
    /// The execution was stopped while it ran.
    Cancelled,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::Completed,
        Self::Retrying,
        Self::Failed,
        Self::Released,
        Self::Expired,
        Self::Cancelled,
    ];

    /// The wire name, e.g. `"EXPIRED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "COMPLETED",
            Self::Retrying => "RETRYING",
            Self::Failed => "FAILED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// An execution with the state of each of its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Id, status and timestamps.
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    /// The params it was started with (`data` in the original's API).
    pub data: Value,
    /// Every task, in the definition's (sorted) order.
    pub tasks: Vec<TaskRun>,
}

impl Execution {
    /// The task run with this id.
    pub fn task(&self, task_id: &str) -> Option<&TaskRun> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }
}

impl std::ops::Deref for Execution {
    type Target = ExecutionSummary;

    fn deref(&self) -> &ExecutionSummary {
        &self.summary
    }
}

/// An execution without its tasks and params: what listings return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    /// The execution's id.
    pub id: ExecutionId,
    /// The definition it runs.
    pub definition_id: String,
    /// The definition version it pinned.
    pub definition_version: u32,
    /// Where it stands.
    pub status: ExecutionStatus,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The caller's idempotency key, if one was given.
    pub idempotency_key: Option<String>,
    /// The W3C trace context of the request that submitted it, if it came with one: every
    /// attempt of its tasks is traced as a child of that span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<TraceParent>,
    /// The schedule whose tick started it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// When it must be finished by (from the job's `timeoutMs`, counted from its creation, or
    /// for a delayed execution from when it started).
    pub deadline: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
    /// When it started: its first task started, or for a delayed execution, its time came and
    /// its first tasks were queued.
    pub start_time: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub end_time: Option<DateTime<Utc>>,
    /// The time a delayed execution (`delayMs`, `runAt`) was to start at: until it starts it is
    /// PENDING with no task queued ([`is_delayed`](Self::is_delayed)). Kept once it started, or
    /// was cancelled before; `None` for an execution that started at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// For an execution a sub-job started: the parent execution and task (at the attempt that
    /// started it), and how deep it is nested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// Its priority (see [`Priority`]): its tasks start before those of lower-priority
    /// executions waiting with them.
    #[serde(default)]
    pub priority: Priority,
}

/// The task of another execution that started this one as its sub-job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentLink {
    /// The parent execution.
    pub execution_id: ExecutionId,
    /// Its sub-job task.
    pub task_id: String,
    /// The task's attempt that started this child: the child's end settles that attempt only.
    pub attempt: u32,
    /// How deep this child is: 1 for a child of an execution that has no parent.
    pub depth: u32,
}

impl ParentLink {
    /// The parent's task, at the attempt that started the child.
    pub fn task(&self) -> TaskRef {
        TaskRef::new(self.execution_id, self.task_id.clone(), self.attempt)
    }
}

impl ExecutionSummary {
    /// True while a delayed execution waits for its time: PENDING, not started, its tasks not
    /// yet queued.
    pub fn is_delayed(&self) -> bool {
        self.status == ExecutionStatus::Pending && self.scheduled_for.is_some() && self.start_time.is_none()
    }

    /// True when it is unfinished, not waiting for its time, and its deadline is before `now`.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        !self.status.is_terminal() && !self.is_delayed() && self.deadline.is_some_and(|d| d < now)
    }

    /// The reference to `run`'s current dispatch, with this execution's trace context and
    /// priority: what a Store hands the Queue.
    pub fn task_ref(&self, run: &TaskRun) -> TaskRef {
        run.task_ref(self.id)
            .with_traceparent(self.traceparent)
            .with_priority(self.priority)
    }
}

/// A status change, published after it was committed to the Store.
///
/// Events are notifications for watchers (live status, `wait_for`, other services); the Store
/// stays the truth. JSON: `{"executionId","definitionId","scope":"execution"|"task",
/// "taskId"?,"attempt"?,"status","error"?,"at"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    /// The execution.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub execution_id: ExecutionId,
    /// Its definition.
    pub definition_id: String,
    /// What changed.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The error that came with the change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the change was made.
    pub at: DateTime<Utc>,
}

/// What a [`StatusEvent`] is about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "camelCase")]
pub enum EventKind {
    /// The execution's status changed.
    #[serde(rename_all = "camelCase")]
    Execution {
        /// The new status.
        status: ExecutionStatus,
    },
    /// A task's status changed.
    #[serde(rename_all = "camelCase")]
    Task {
        /// The task.
        task_id: String,
        /// Its dispatch number at the change.
        attempt: u32,
        /// The new status.
        status: TaskStatus,
    },
}

impl StatusEvent {
    /// The version of the status-event format this build writes and reads (1: the JSON above).
    /// A release that changes the event's meaning raises it; a subscriber skips events of a
    /// newer version (they are notifications: the Store stays the truth).
    pub const VERSION: u32 = 1;

    /// The new status's wire name.
    pub fn status_str(&self) -> &'static str {
        match &self.kind {
            EventKind::Execution { status } => status.as_str(),
            EventKind::Task { status, .. } => status.as_str(),
        }
    }

    /// The execution's new status, when this is an execution event.
    pub fn execution_status(&self) -> Option<ExecutionStatus> {
        match self.kind {
            EventKind::Execution { status } => Some(status),
            EventKind::Task { .. } => None,
        }
    }

    /// The routing key for topic-based brokers: `<definitionId>.<executionId>.<status>`, with a
    /// dot in the definition id written `%2E`.
    pub fn routing_key(&self) -> String {
        // Ids are letters, digits, `_`, `-` and `.`: a dot is written `%2E`, so that a binding
        // by position (`sample.v2.*.COMPLETED` → `sample%2Ev2.*.COMPLETED`) stays right.
        format!(
            "{}.{}.{}",
            self.definition_id.replace('.', "%2E"),
            self.execution_id,
            self.status_str()
        )
    }
}

/// A runner node as the Store last heard of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    /// Its worker concurrency.
    pub concurrency: u32,
    /// Tasks it was running when it last reported.
    pub running: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last reported.
    pub last_seen: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_message_body_leaves_the_trace_context_out() {
        let id = Uuid::nil();
        let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        let traced = TaskRef::new(id, "t", 2).with_traceparent(Some(tp));
        let body = serde_json::to_value(&traced).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"executionId": id, "taskId": "t", "attempt": 2}),
            "the body format is fixed"
        );
        let read: TaskRef = serde_json::from_value(body).unwrap();
        assert_eq!(read.traceparent, None);
        // Identity is the dispatch: equal and hashed alike with or without the trace context.
        assert_eq!(read, traced);
        let set: std::collections::HashSet<TaskRef> = [traced].into_iter().collect();
        assert!(set.contains(&read));
    }

    #[test]
    fn events_serialize_flat_with_a_scope() {
        let id = Uuid::nil();
        let e = StatusEvent {
            execution_id: id,
            definition_id: "d".into(),
            kind: EventKind::Task {
                task_id: "t".into(),
                attempt: 2,
                status: TaskStatus::Completed,
            },
            error: None,
            at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["scope"], "task");
        assert_eq!(v["taskId"], "t");
        assert_eq!(v["status"], "COMPLETED");
        assert_eq!(serde_json::from_value::<StatusEvent>(v).unwrap(), e);
        assert_eq!(e.routing_key(), format!("d.{id}.COMPLETED"));
        let dotted = StatusEvent {
            definition_id: "orders.v2".into(),
            ..e.clone()
        };
        assert_eq!(dotted.routing_key(), format!("orders%2Ev2.{id}.COMPLETED"));
    }
}
