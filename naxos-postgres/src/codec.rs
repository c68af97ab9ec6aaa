//! Rows to model types, and the status strings stored in the tables.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use naxos_core::model::{
    Attempt, AttemptOutcome, BlockedBy, ExecutionStatus, ExecutionSummary, Lease, ParentLink, Priority, TaskPlan,
    TaskRun, TaskStatus, TraceParent,
};
use naxos_core::Result;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::{corrupt, db};

/// The task columns [`task_run`] reads, in a SELECT list.
pub(crate) const TASK_COLUMNS: &str = "task_id, name, function_name, status, dependencies, remaining, attempt, \
     attempts, failures, lease_expiries, republished, error, output, lease_owner, lease_expires_at, queued_at, due_at, \
     start_time, end_time, plan, blocked_by, slot, holds_slot, rate";

/// The execution columns [`execution_summary`] reads, in a SELECT list.
pub(crate) const EXECUTION_COLUMNS: &str = "id, definition_id, definition_version, status, error, idempotency_key, \
     traceparent, schedule_id, deadline, created_at, updated_at, start_time, end_time, scheduled_for, \
     parent_execution_id, parent_task_id, parent_attempt, parent_depth, priority";

pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(db)
}

/// A non-negative INTEGER column as `u32`.
pub(crate) fn count(row: &PgRow, column: &str) -> Result<u32> {
    let v: i32 = get(row, column)?;
    u32::try_from(v).map_err(|_| corrupt(format!("{column} = {v}")))
}

pub(crate) fn task_status(s: &str) -> Result<TaskStatus> {
    TaskStatus::parse(s).ok_or_else(|| corrupt(format!("task status `{s}`")))
}

pub(crate) fn execution_status(s: &str) -> Result<ExecutionStatus> {
    ExecutionStatus::parse(s).ok_or_else(|| corrupt(format!("execution status `{s}`")))
}

pub(crate) fn task_run(row: &PgRow) -> Result<TaskRun> {
    let owner: Option<String> = get(row, "lease_owner")?;
    let expires: Option<DateTime<Utc>> = get(row, "lease_expires_at")?;
    Ok(TaskRun {
        task_id: get(row, "task_id")?,
        name: get(row, "name")?,
        function_name: get(row, "function_name")?,
        status: task_status(&get::<String>(row, "status")?)?,
        dependencies: get(row, "dependencies")?,
        plan: get::<Option<sqlx::types::Json<TaskPlan>>>(row, "plan")?
            .map(|p| Arc::new(p.0))
            .unwrap_or_default(),
        remaining_dependencies: count(row, "remaining")?,
        attempt: count(row, "attempt")?,
        attempts: count(row, "attempts")?,
        failures: count(row, "failures")?,
        lease_expiries: count(row, "lease_expiries")?,
        republished: count(row, "republished")?,
        error: get(row, "error")?,
        output: get(row, "output")?,
        lease: owner
            .zip(expires)
            .map(|(owner, expires_at)| Lease { owner, expires_at }),
        queued_at: get(row, "queued_at")?,
        due_at: get(row, "due_at")?,
        start_time: get(row, "start_time")?,
        end_time: get(row, "end_time")?,
        history: Vec::new(),
        blocked_by: get::<Option<String>>(row, "blocked_by")?
            .map(|b| BlockedBy::parse(&b).ok_or_else(|| corrupt(format!("blocked_by `{b}`"))))
            .transpose()?,
        slot: get(row, "slot")?,
        holds_slot: get(row, "holds_slot")?,
        rate: get(row, "rate")?,
    })
}

/// The attempt columns [`attempt`] reads, in a SELECT list, with the task id first.
pub(crate) const ATTEMPT_COLUMNS: &str = "task_id, attempt, node, started_at, ended_at, outcome, error";

/// One attempt record.
pub(crate) fn attempt(row: &PgRow) -> Result<Attempt> {
    let outcome: Option<String> = get(row, "outcome")?;
    Ok(Attempt {
        attempt: count(row, "attempt")?,
        node: get(row, "node")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        outcome: outcome
            .map(|o| AttemptOutcome::parse(&o).ok_or_else(|| corrupt(format!("attempt outcome `{o}`"))))
            .transpose()?,
        error: get(row, "error")?,
    })
}

pub(crate) fn execution_summary(row: &PgRow) -> Result<ExecutionSummary> {
    Ok(ExecutionSummary {
        id: get(row, "id")?,
        definition_id: get(row, "definition_id")?,
        definition_version: count(row, "definition_version")?,
        status: execution_status(&get::<String>(row, "status")?)?,
        error: get(row, "error")?,
        idempotency_key: get(row, "idempotency_key")?,
        traceparent: traceparent(row)?,
        schedule_id: get(row, "schedule_id")?,
        deadline: get(row, "deadline")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        start_time: get(row, "start_time")?,
        end_time: get(row, "end_time")?,
        scheduled_for: get(row, "scheduled_for")?,
        parent: parent(row)?,
        priority: priority(row)?,
    })
}

/// The parent columns of an execution row: the sub-job task that started it, if one did.
fn parent(row: &PgRow) -> Result<Option<ParentLink>> {
    let Some(execution_id) = get::<Option<uuid::Uuid>>(row, "parent_execution_id")? else {
        return Ok(None);
    };
    let number = |column: &str| -> Result<u32> {
        let v: Option<i32> = get(row, column)?;
        v.and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| corrupt(format!("{column} of a child execution")))
    };
    Ok(Some(ParentLink {
        execution_id,
        task_id: get::<Option<String>>(row, "parent_task_id")?
            .ok_or_else(|| corrupt("parent_task_id of a child execution"))?,
        attempt: number("parent_attempt")?,
        depth: number("parent_depth")?,
    }))
}

/// The `traceparent` column (of an execution row, or of a statement that returns it).
pub(crate) fn traceparent(row: &PgRow) -> Result<Option<TraceParent>> {
    let text: Option<String> = get(row, "traceparent")?;
    text.map(|t| TraceParent::parse(&t).map_err(|e| corrupt(format!("traceparent `{t}`: {e}"))))
        .transpose()
}

/// The `priority` column (of an execution row, or of a statement that returns it).
pub(crate) fn priority(row: &PgRow) -> Result<Priority> {
    let level: i16 = get(row, "priority")?;
    u64::try_from(level)
        .ok()
        .and_then(|l| Priority::new(l).ok())
        .ok_or_else(|| corrupt(format!("priority {level}")))
}

/// The `priority` parameter of `p`.
pub(crate) fn level(p: Priority) -> i16 {
    i16::from(p.get())
}

/// `u32` for an INTEGER parameter.
pub(crate) fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// A JSON value for a JSONB parameter.
pub(crate) fn jsonb(v: &Value) -> sqlx::types::Json<&Value> {
    sqlx::types::Json(v)
}
