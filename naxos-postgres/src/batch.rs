//! Creating many executions at once: one INSERT statement for all of them and all their tasks.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use naxos_core::backend::{Created, NewExecution};
use naxos_core::model::ExecutionId;
use naxos_core::Result;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::codec::{int, level};
use crate::error::db;
use crate::executions::{
    create_on, existing, prepare, starts_sub_jobs, Prepared, Tables, TASK_COLUMNS_IN, TASK_ROW_TYPES, TASK_VALUES,
};

/// Inserts the executions of `$1` and the task rows of `$2` (each naming its execution), in
/// one statement: one round trip and one commit for the whole batch, all or none. An
/// idempotency key already used for the definition — or used by an earlier item of the same
/// batch — makes its execution's INSERT do nothing, and the JOIN then inserts none of its
/// tasks; the statement returns the ids it inserted.
static CREATE_MANY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
    WITH execution AS (
        INSERT INTO naxos_executions
            (id, definition_id, definition_version, status, params, idempotency_key, deadline, created_at, updated_at,
             traceparent, plain, error, end_time, start_time, retention_completed_ms, retention_failed_ms,
             scheduled_for, priority)
        SELECT e.id, e.definition_id, e.definition_version, e.status, e.params, e.idempotency_key, e.deadline,
               e.created_at, e.created_at, e.traceparent, e.plain, e.error, e.end_time, e.start_time,
               e.retention_completed_ms, e.retention_failed_ms, e.scheduled_for, e.priority
        FROM jsonb_to_recordset($1) AS e(id UUID, definition_id TEXT, definition_version INTEGER,
             status TEXT, params JSONB, idempotency_key TEXT, deadline TIMESTAMPTZ, created_at TIMESTAMPTZ,
             traceparent TEXT, plain BOOLEAN, error TEXT, end_time TIMESTAMPTZ, start_time TIMESTAMPTZ,
             retention_completed_ms BIGINT, retention_failed_ms BIGINT, scheduled_for TIMESTAMPTZ, priority SMALLINT,
             ord INTEGER)
        ORDER BY e.ord
        ON CONFLICT (definition_id, idempotency_key) DO NOTHING
        RETURNING id, priority
    ), tasks AS (
        INSERT INTO naxos_tasks (execution_id, {TASK_COLUMNS_IN}, priority)
        SELECT e.id, {TASK_VALUES}, e.priority
        FROM execution e JOIN jsonb_to_recordset($2) AS r(execution_id UUID, {TASK_ROW_TYPES})
          ON r.execution_id = e.id
    )
    SELECT id FROM execution"
    )
});

/// Creates `executions` in one transaction: by one statement when each is a plain top-level
/// creation, else one by one in a transaction — when one starts a sub-job at its creation (the
/// children are created in the same transaction, by the general path), is itself a child (its
/// parent columns), or carries a schedule (its tick's gate), which the one statement does not
/// write.
pub(crate) async fn create_many(
    pool: &PgPool,
    executions: Vec<NewExecution>,
    now: DateTime<Utc>,
) -> Result<Vec<Created>> {
    let general = |e: &NewExecution| starts_sub_jobs(e) || e.parent.is_some() || e.schedule_id.is_some();
    if executions.iter().any(general) {
        return crate::transaction!(pool, |tx| {
            let mut created = Vec::with_capacity(executions.len());
            for execution in &executions {
                created.push(create_on(&mut tx, &Tables::Own, execution.clone(), now).await?);
            }
            Ok(created)
        });
    }
    crate::statement!(pool, |conn| insert_many(&mut conn, executions.clone(), now).await)
}

/// The one statement of [`create_many`], then the executions that idempotency keys found.
async fn insert_many(
    conn: &mut PgConnection,
    executions: Vec<NewExecution>,
    now: DateTime<Utc>,
) -> Result<Vec<Created>> {
    let mut prepared = Vec::with_capacity(executions.len());
    for execution in executions {
        prepared.push(prepare(conn, execution, now).await?);
    }
    let (summaries, tasks) = rows(&mut prepared);
    let inserted: Vec<ExecutionId> = sqlx::query_scalar(sqlx::AssertSqlSafe(CREATE_MANY.as_str()))
        .bind(summaries)
        .bind(tasks)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let inserted: HashSet<ExecutionId> = inserted.into_iter().collect();
    let mut created = Vec::with_capacity(prepared.len());
    for p in prepared {
        let s = p.state.summary();
        created.push(if inserted.contains(&s.id) {
            Created {
                execution_id: s.id,
                created: true,
                status: s.status,
                changes: p.changes,
            }
        } else {
            existing(conn, &Tables::Own, &s.definition_id, s.idempotency_key.as_deref()).await?
        });
    }
    Ok(created)
}

/// The JSON arrays `CREATE_MANY` binds: the executions in order, and every task row (taken
/// from `prepared`) with its execution.
fn rows(prepared: &mut [Prepared]) -> (Value, Value) {
    let mut summaries = Vec::with_capacity(prepared.len());
    let mut tasks = Vec::new();
    for (ord, p) in prepared.iter_mut().enumerate() {
        let s = p.state.summary();
        summaries.push(json!({
            "ord": ord,
            "id": s.id,
            "definition_id": s.definition_id,
            "definition_version": int(s.definition_version),
            "status": s.status.as_str(),
            "params": p.state.params(),
            "idempotency_key": s.idempotency_key,
            "deadline": s.deadline,
            "created_at": s.created_at,
            "traceparent": s.traceparent.map(|t| t.to_string()),
            "plain": p.plain,
            "error": s.error,
            "end_time": s.end_time,
            "start_time": s.start_time,
            "retention_completed_ms": p.retention.0,
            "retention_failed_ms": p.retention.1,
            "scheduled_for": s.scheduled_for,
            "priority": level(s.priority),
        }));
        if let Value::Array(rows) = std::mem::take(&mut p.rows) {
            tasks.extend(rows.into_iter().map(|mut row| {
                row["execution_id"] = json!(s.id);
                row
            }));
        }
    }
    (Value::Array(summaries), Value::Array(tasks))
}
