//! The JSON shapes of the API, field names as in the original naxos.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use naxos_core::model::{
    BlockedBy, Concurrency, DefinitionSummary, Execution, ExecutionStatus, ExecutionSummary, JobDefinition, NodeInfo,
    RateLimit, Retention, Sleep, StoredDefinition, SubJob, TaskDefinition, TaskRun, TaskStatus, TraceParent, Trigger,
    WaitFor,
};
use naxos_core::ExecutionId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ErrorDetail;
use serde_json::Value;

/// `GET /api/v1/jobs/{id}/status`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    /// Id, status and timestamps.
    #[serde(flatten)]
    pub summary: SummaryView,
    /// The params.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Every task.
    pub tasks: Vec<TaskView>,
}

/// An execution without its tasks (listings).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryView {
    /// The execution id.
    #[schema(value_type = String, format = Uuid)]
    pub id: ExecutionId,
    /// The definition.
    pub definition_id: String,
    /// The pinned version.
    pub definition_version: u32,
    /// The status.
    pub status: ExecutionStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started: its first task started, or for a delayed execution, its time came and
    /// its first tasks were queued.
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_time: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The idempotency key it was created with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The W3C trace context it was submitted with (the `traceparent` header of the execute
    /// request); absent when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    pub traceparent: Option<TraceParent>,
    /// The schedule whose tick started it; absent for other executions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// The time a delayed execution (`delayMs`, `runAt`) was to start at: until then it is
    /// PENDING with no task queued and no `startTime`. Kept once it started (or was cancelled
    /// before it did); absent for an execution that started at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// For an execution a sub-job started: the parent execution; absent for others.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_execution_id: Option<ExecutionId>,
    /// For an execution a sub-job started: the parent's sub-job task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<String>,
    /// Its priority, 0 (the lowest) to 9 (the highest): `?priority=` of the execute request,
    /// else its definition's job-level `priority`, else 0; a sub-job's child has its parent's.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: u8,
}

/// The answer to a signal.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalAck {
    /// The execution.
    #[schema(value_type = String, format = Uuid)]
    pub execution_id: ExecutionId,
    /// The signal's name.
    pub signal: String,
    /// The task that took the signal now; absent when none waited yet and the signal is kept
    /// for the first task of its name that will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
}

/// One task in [`ExecutionView`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// The task id.
    pub task_id: String,
    /// Its name.
    pub name: String,
    /// Its function.
    pub function_name: String,
    /// Its status.
    pub status: TaskStatus,
    /// Why a QUEUED task waits without running, if it does: `paused` while its definition is
    /// paused (it is queued again when the definition is resumed); `concurrency` while every
    /// slot of its concurrency limit is held (it starts when one frees, the highest priority
    /// then the oldest first);
    /// `rateLimit` while it waits for its turn under its rate limit (`dueAt`). Absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<BlockedBy>,
    /// How many times it started (`attempts` of the Rust `TaskRun`).
    pub attempts: u32,
    /// The original naxos's field: every start after the first, whatever its cause
    /// (`attempts - 1`, at least 0). The Rust `TaskRun` tells the causes apart: `failures`
    /// counts the failed attempts (what the retry budget spends), `lease_expiries` the restarts
    /// after a lost lease; a task handed back at a node's shutdown starts again without either.
    pub retry_count: u32,
    /// The ids it depends on.
    pub dependencies: Vec<String>,
    /// Its `when` condition, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Its trigger, when not the default `allSuccess`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Its durable sleep, when it sleeps instead of running a function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Sleep>,
    /// The signal it waits for, when it waits instead of running a function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// Its fan-out list (CEL), when it runs its function once per item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// The most instances its fan-out may start, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fan_out: Option<u32>,
    /// The child execution it runs, when it runs another definition instead of a function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_job: Option<SubJob>,
    /// Its concurrency limit, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Its rate limit, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A sub-job's child execution of its latest attempt, once it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub child_execution_id: Option<ExecutionId>,
    /// A fan-out's instances, in item order, once it started (those of an earlier, longer
    /// list left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceView>>,
    /// When a WAITING task wakes (a sleep ends, a wait times out), a RETRYING one retries, or
    /// one QUEUED with `blockedBy: rateLimit` has its turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// The last error. A task SKIPPED by its own condition has `condition false`; one SKIPPED
    /// below a failure, `skipped: upstream task `…` failed`.
    pub error: Option<String>,
    /// The output (any JSON).
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// When the latest attempt started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_time: Option<DateTime<Utc>>,
}

/// One instance of a fan-out, in [`TaskView::instances`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// Its position in the list (from 0); its task id is `task[index]`.
    pub index: u32,
    /// Its status.
    pub status: TaskStatus,
    /// Why a QUEUED instance waits without running, if it does (as [`TaskView::blocked_by`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<BlockedBy>,
    /// How many times it started.
    pub attempts: u32,
    /// Its output, once COMPLETED.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
}

impl From<&ExecutionSummary> for SummaryView {
    fn from(s: &ExecutionSummary) -> Self {
        Self {
            id: s.id,
            definition_id: s.definition_id.clone(),
            definition_version: s.definition_version,
            status: s.status,
            error: s.error.clone(),
            start_time: s.start_time,
            end_time: s.end_time,
            created_at: s.created_at,
            updated_at: s.updated_at,
            idempotency_key: s.idempotency_key.clone(),
            traceparent: s.traceparent,
            schedule_id: s.schedule_id.clone(),
            scheduled_for: s.scheduled_for,
            parent_execution_id: s.parent.as_ref().map(|p| p.execution_id),
            parent_task_id: s.parent.as_ref().map(|p| p.task_id.clone()),
            priority: s.priority.get(),
        }
    }
}

impl From<TaskRun> for TaskView {
    fn from(t: TaskRun) -> Self {
        let plan = std::sync::Arc::unwrap_or_clone(t.plan);
        Self {
            retry_count: t.attempts.saturating_sub(1),
            task_id: t.task_id,
            name: t.name,
            function_name: t.function_name,
            status: t.status,
            blocked_by: t.blocked_by,
            attempts: t.attempts,
            dependencies: t.dependencies,
            when: plan.when,
            trigger: Some(plan.trigger).filter(|t| !t.is_default()),
            sleep: plan.sleep,
            wait_for: plan.wait_for,
            for_each: plan.for_each,
            max_fan_out: plan.max_fan_out,
            sub_job: plan.sub_job,
            concurrency: plan.concurrency,
            rate_limit: plan.rate_limit,
            child_execution_id: plan.child,
            instances: None,
            due_at: t.due_at,
            error: t.error,
            output: t.output,
            start_time: t.start_time,
            end_time: t.end_time,
        }
    }
}

impl From<Execution> for ExecutionView {
    fn from(e: Execution) -> Self {
        Self {
            summary: SummaryView::from(&e.summary),
            data: e.data,
            tasks: tasks_folded(e.tasks),
        }
    }
}

/// The task views of an execution's runs, each fan-out instance folded under its task.
fn tasks_folded(runs: Vec<TaskRun>) -> Vec<TaskView> {
    let (runs, instances): (Vec<TaskRun>, Vec<TaskRun>) = runs.into_iter().partition(|t| t.plan.instance.is_none());
    let mut views: Vec<TaskView> = runs.into_iter().map(TaskView::from).collect();
    let mut folded: BTreeMap<String, Vec<InstanceView>> = BTreeMap::new();
    for run in instances {
        let Some(instance) = std::sync::Arc::unwrap_or_clone(run.plan).instance else {
            continue;
        };
        if run.status == TaskStatus::Skipped {
            continue; // past the end of the current list
        }
        folded.entry(instance.of).or_default().push(InstanceView {
            index: instance.index,
            status: run.status,
            blocked_by: run.blocked_by,
            attempts: run.attempts,
            output: run.output,
            error: run.error,
        });
    }
    for view in &mut views {
        if let Some(mut instances) = folded.remove(&view.task_id) {
            instances.sort_by_key(|i| i.index);
            view.instances = Some(instances);
        } else if view.for_each.is_some() && view.start_time.is_some() {
            view.instances = Some(Vec::new()); // an empty list
        }
    }
    views
}

/// A definition version: the definition's own fields plus `version` and `createdAt`. (Spelled
/// out rather than flattened, so that the request schema can reject unknown fields while this
/// one carries two more.)
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView {
    /// The definition's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The job's time limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// How long its finished executions are kept, by end state (the server's default for what
    /// it leaves out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// The priority of its executions where the execute request gives none (0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u64>,
    /// The tasks, keyed by id.
    pub tasks: BTreeMap<String, TaskDefinition>,
    /// Dependencies: task id → the ids it waits for.
    pub graph: BTreeMap<String, Vec<String>>,
    /// The version.
    pub version: u32,
    /// When the version was registered.
    pub created_at: DateTime<Utc>,
}

impl From<&StoredDefinition> for DefinitionView {
    fn from(d: &StoredDefinition) -> Self {
        let def: &JobDefinition = &d.definition;
        Self {
            id: def.id.clone(),
            name: def.name.clone(),
            description: def.description.clone(),
            timeout_ms: def.timeout_ms,
            retention: def.retention,
            priority: def.priority,
            tasks: def.tasks.clone(),
            graph: def.graph.clone(),
            version: d.version,
            created_at: d.created_at,
        }
    }
}

/// `GET /api/v1/job-definitions`: one line a definition.
pub type DefinitionListView = Vec<DefinitionSummary>;

/// `GET /api/v1/system/status`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemStatusView {
    /// Up to 100 unfinished executions, newest first.
    pub active_jobs: Vec<SummaryView>,
    /// How many executions are unfinished (PENDING or RUNNING).
    pub active_count: u64,
    /// Tasks waiting in the queue.
    pub queued_count: u64,
    /// Tasks running now.
    pub running_count: u64,
    /// Executions that COMPLETED.
    pub executed_jobs: u64,
    /// Executions that FAILED.
    pub failed_jobs: u64,
    /// Executions that were CANCELLED.
    pub cancelled_jobs: u64,
    /// Runner nodes as last heard of.
    pub nodes: Vec<NodeView>,
    /// When this answer was made.
    pub updated_at: DateTime<Utc>,
}

/// A node in [`SystemStatusView`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node.
    #[serde(flatten)]
    pub node: NodeInfo,
    /// False when it has not reported for a while (three times its expected interval).
    pub alive: bool,
}

/// `POST /api/v1/job-definitions`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionCreated {
    /// The definition's id.
    pub id: String,
    /// The version now in force for this content.
    pub version: u32,
    /// False when identical content was already the latest version.
    pub created: bool,
    /// What happened, in words.
    pub message: String,
}

/// `POST /api/v1/job-definitions/{id}/pause` and `/resume`: the definition's state now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionPaused {
    /// The definition's id.
    pub id: String,
    /// True once paused: its executions start no new task until it is resumed. False once
    /// resumed: the tasks the pause blocked are queued again.
    pub paused: bool,
}

/// The answer to execute, cancel and retry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionAck {
    /// The execution.
    #[schema(value_type = String, format = Uuid)]
    pub execution_id: ExecutionId,
    /// Its status after the action.
    pub status: ExecutionStatus,
    /// What happened, in words.
    pub message: String,
    /// When a new delayed execution (`delayMs`, `runAt`) starts; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
}

/// The answer to `execute-batch`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchAck {
    /// The executions, in the order of the params: new ones, and earlier ones where an item's
    /// idempotency key (`<Idempotency-Key>/<index>`) matched.
    #[schema(value_type = Vec<String>, format = Uuid)]
    pub execution_ids: Vec<ExecutionId>,
    /// How many of them this request created.
    pub created: usize,
    /// What happened, in words.
    pub message: String,
}

/// `GET /api/v1/jobs`: a page, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPageView {
    /// The executions.
    pub executions: Vec<SummaryView>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<ExecutionId>,
}

/// `POST /api/v1/system/backup`: where the copy is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupView {
    /// The file written, on the server's file system.
    pub path: String,
    /// When the copy was taken (it is the Store's state of that instant).
    pub taken_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each backend: `ok` or `down` (why is in the node's log).
    pub checks: HealthChecks,
    /// Messages in the Queue's dead-letter queue, where it keeps one (RabbitMQ): what needs an
    /// operator's look. Absent on the in-memory queue or when the count could not be read.
    #[serde(rename = "deadLetters", skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
    /// Present when unavailable, naming what is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The backends [`HealthView`] checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthChecks {
    /// The Store.
    pub store: String,
    /// The Queue.
    pub queue: String,
}

/// A cron schedule: what it asks for, its cursor, and when it next ticks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    /// The schedule with its cursor (`lastTick`: every tick up to it is done with).
    #[serde(flatten)]
    pub schedule: naxos_core::model::StoredSchedule,
    /// Its next tick; absent while paused.
    pub next_tick: Option<DateTime<Utc>>,
}

impl ScheduleView {
    /// `schedule` as it stands at `now`.
    pub fn at(schedule: naxos_core::model::StoredSchedule, now: DateTime<Utc>) -> Self {
        Self {
            next_tick: schedule.next_tick(now),
            schedule,
        }
    }
}
