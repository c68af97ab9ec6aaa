//! The JSON shapes of the API, field names as in the original naxos.

use chrono::{DateTime, Utc};
use naxos_core::model::{
    DefinitionSummary, Execution, ExecutionStatus, ExecutionSummary, JobDefinition, NodeInfo, StoredDefinition,
    TaskRun, TaskStatus,
};
use naxos_core::ExecutionId;
use serde::Serialize;
use serde_json::Value;

/// `GET /api/v1/jobs/{id}/status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    /// Id, status and timestamps.
    #[serde(flatten)]
    pub summary: SummaryView,
    /// The params.
    pub data: Value,
    /// Every task.
    pub tasks: Vec<TaskView>,
}

/// An execution without its tasks (listings).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryView {
    /// The execution id.
    pub id: ExecutionId,
    /// The definition.
    pub definition_id: String,
    /// The pinned version.
    pub definition_version: u32,
    /// The status.
    pub status: ExecutionStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// When the first task started.
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
}

/// One task in [`ExecutionView`].
#[derive(Debug, Serialize)]
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
    /// How many times it started.
    pub attempts: u32,
    /// How many of its attempts failed and were retried or recovered (`attempts - 1`, at least 0).
    pub retry_count: u32,
    /// The ids it depends on.
    pub dependencies: Vec<String>,
    /// The last error.
    pub error: Option<String>,
    /// The output.
    pub output: Option<Value>,
    /// When the latest attempt started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_time: Option<DateTime<Utc>>,
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
        }
    }
}

impl From<TaskRun> for TaskView {
    fn from(t: TaskRun) -> Self {
        Self {
            retry_count: t.attempts.saturating_sub(1),
            task_id: t.task_id,
            name: t.name,
            function_name: t.function_name,
            status: t.status,
            attempts: t.attempts,
            dependencies: t.dependencies,
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
            tasks: e.tasks.into_iter().map(TaskView::from).collect(),
        }
    }
}

/// A definition version: the definition's own fields plus `version` and `createdAt`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView<'a> {
    /// The definition, in its JSON format.
    #[serde(flatten)]
    pub definition: &'a JobDefinition,
    /// The version.
    pub version: u32,
    /// When the version was registered.
    pub created_at: DateTime<Utc>,
}

impl<'a> From<&'a StoredDefinition> for DefinitionView<'a> {
    fn from(d: &'a StoredDefinition) -> Self {
        Self {
            definition: &d.definition,
            version: d.version,
            created_at: d.created_at,
        }
    }
}

/// `GET /api/v1/job-definitions`: one line a definition.
pub type DefinitionListView = Vec<DefinitionSummary>;

/// `GET /api/v1/system/status`.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node.
    #[serde(flatten)]
    pub node: NodeInfo,
    /// False when it has not reported for a while (three times its expected interval).
    pub alive: bool,
}
