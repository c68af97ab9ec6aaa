//! The rules every Store shares, as data and text: how an execution ends, what each error and
//! event says. Hand-written fast paths of a backend build their results from these too.

use chrono::{DateTime, Utc};

use crate::model::{EventKind, ExecutionId, ExecutionStatus, StatusEvent, TaskRef, TaskRun, TaskStatus, Trigger};
use crate::Error;

/// How an execution ends once every task is terminal: FAILED naming the first failed task (in
/// task order) if any failed — never COMPLETED with a failed task —, else CANCELLED if any was
/// cancelled, else COMPLETED. `None` while a task is not terminal.
pub fn verdict(tasks: &[TaskRun]) -> Option<(ExecutionStatus, Option<String>)> {
    if !tasks.iter().all(|t| t.status.is_terminal()) {
        return None;
    }
    Some(match tasks.iter().find(|t| t.status == TaskStatus::Failed) {
        Some(t) => (
            ExecutionStatus::Failed,
            Some(task_failed(&t.task_id, t.error.as_deref())),
        ),
        None if tasks.iter().any(|t| t.status == TaskStatus::Cancelled) => (ExecutionStatus::Cancelled, None),
        None => (ExecutionStatus::Completed, None),
    })
}

/// The error of an execution that FAILED because `task_id` failed with `error`.
pub fn task_failed(task_id: &str, error: Option<&str>) -> String {
    format!("task `{task_id}` failed: {}", error.unwrap_or("unknown error"))
}

/// The error of an execution stopped for running past its deadline.
pub const TIMED_OUT: &str = "the execution ran past its timeoutMs deadline";

/// The start of the error of a task SKIPPED below a failed one.
const SKIPPED_BELOW: &str = "skipped: upstream task `";

/// The error of a task SKIPPED below a failed one.
pub fn skipped_below(failed: &str) -> String {
    format!("{SKIPPED_BELOW}{failed}` failed")
}

/// The error of a task SKIPPED because its `when` condition was false.
pub const CONDITION_FALSE: &str = "condition false";

/// The error of a task SKIPPED because its trigger can no longer hold while no dependency had
/// failed: a dependency was skipped (a branch not taken).
pub fn trigger_unmet(trigger: Trigger) -> String {
    format!("skipped: trigger {trigger} can no longer hold: a dependency was skipped")
}

/// How a finished task counts for the triggers of the tasks below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It COMPLETED.
    Completed,
    /// It was SKIPPED by its own condition, or by a trigger that could no longer hold since a
    /// dependency was skipped, while none counted as failed: a branch not taken.
    Skipped,
    /// It FAILED or was CANCELLED, or was SKIPPED below a failure.
    Failed,
}

/// How `task` counts for its dependents' triggers; `None` while it is unfinished. A SKIPPED task
/// counts as failed when its error says it was skipped below a failure ([`skipped_below`]): the
/// error the state module wrote is the record of why.
pub fn outcome(task: &TaskRun) -> Option<Outcome> {
    match task.status {
        TaskStatus::Completed => Some(Outcome::Completed),
        TaskStatus::Failed | TaskStatus::Cancelled => Some(Outcome::Failed),
        TaskStatus::Skipped if task.error.as_deref().is_some_and(|e| e.starts_with(SKIPPED_BELOW)) => {
            Some(Outcome::Failed)
        }
        TaskStatus::Skipped => Some(Outcome::Skipped),
        _ => None,
    }
}

/// The error of a fan-out instance that is past the end of its task's current list (the list
/// was longer in an earlier run of the task).
pub const NOT_IN_LIST: &str = "skipped: not in the task's forEach list any more";

/// The error of a `forEach` task whose list is longer than its `maxFanOut`.
pub fn too_many_items(count: usize, max: u32) -> String {
    format!("forEach gave {count} items, more than maxFanOut {max}")
}

/// The error of a `forEach` task whose instance `index` FAILED with `error`.
pub fn instance_failed(index: u32, error: Option<&str>) -> String {
    format!("instance {index} failed: {}", error.unwrap_or("unknown error"))
}

/// The error of a `waitFor` task whose signal did not come within its `timeoutMs`.
pub fn signal_timed_out(signal: &str) -> String {
    format!("signal {signal} timed out")
}

/// The error of a sub-job task whose child FAILED (with the child's own error, if it has one).
pub fn sub_job_failed(child: ExecutionId, error: Option<&str>) -> String {
    match error {
        Some(error) => format!("sub-job {child} failed: {error}"),
        None => format!("sub-job {child} failed"),
    }
}

/// The error of a sub-job task whose child was cancelled from elsewhere.
pub fn sub_job_cancelled(child: ExecutionId) -> String {
    format!("sub-job {child} was cancelled")
}

/// The error of a task requeued after its lease ran out.
pub fn lease_expired(owner: &str) -> String {
    format!("the lease held by node `{owner}` expired; requeued")
}

/// The error of a task FAILED because its lease ran out `times` times.
pub fn lease_gave_up(times: u32, owner: &str) -> String {
    format!("the lease expired {times} times (last held by node `{owner}`): giving up")
}

/// The error recorded on an attempt whose lease ran out.
pub const ATTEMPT_EXPIRED: &str = "the lease expired";

/// A transition guarded by `task`'s attempt found the task elsewhere.
pub fn stale(task: &TaskRef, status: TaskStatus, attempt: u32) -> Error {
    Error::conflict(format!(
        "task {task} is stale: the task is {status} at attempt {attempt}"
    ))
}

/// A transition that needs an unfinished execution found it finished.
pub fn finished(id: ExecutionId, status: ExecutionStatus) -> Error {
    Error::conflict(format!("execution {id} is already {status}"))
}

/// A retry of an execution that is neither FAILED nor CANCELLED.
pub fn not_retryable(id: ExecutionId, status: ExecutionStatus) -> Error {
    Error::conflict(format!(
        "execution {id} is {status}; only FAILED or CANCELLED executions can be retried"
    ))
}

/// A restart from a task of an execution that is not finished.
pub fn not_restartable(id: ExecutionId, status: ExecutionStatus) -> Error {
    Error::conflict(format!(
        "execution {id} is {status}; a restart from a task needs a finished execution (COMPLETED, FAILED or CANCELLED)"
    ))
}

/// No task `task_id` in execution `id`.
pub fn no_task(id: ExecutionId, task_id: &str) -> Error {
    Error::not_found("task", format!("{id}/{task_id}"))
}

/// A task's status change.
pub fn task_event(
    execution_id: ExecutionId,
    definition_id: &str,
    task_id: &str,
    attempt: u32,
    status: TaskStatus,
    error: Option<String>,
    at: DateTime<Utc>,
) -> StatusEvent {
    let kind = EventKind::Task {
        task_id: task_id.to_string(),
        attempt,
        status,
    };
    event(execution_id, definition_id, kind, error, at)
}

/// An execution's status change.
pub fn execution_event(
    execution_id: ExecutionId,
    definition_id: &str,
    status: ExecutionStatus,
    error: Option<String>,
    at: DateTime<Utc>,
) -> StatusEvent {
    event(execution_id, definition_id, EventKind::Execution { status }, error, at)
}

fn event(
    execution_id: ExecutionId,
    definition_id: &str,
    kind: EventKind,
    error: Option<String>,
    at: DateTime<Utc>,
) -> StatusEvent {
    StatusEvent {
        execution_id,
        definition_id: definition_id.to_string(),
        kind,
        error,
        at,
    }
}
