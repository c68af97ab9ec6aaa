//! The claim and the heartbeat: hot paths written as one statement each, for plain tasks. They
//! hold to naxos-core's state module (the differential test of the conformance suite checks it):
//! the same guard, the same effects, the same events and attempt record. The claim serves plain
//! executions only (`plain`, see `settle.rs`); for any other it changes nothing and says so, and
//! the caller claims through the state module.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use naxos_core::backend::{Changes, ClaimRequest, ClaimedTask, HistoryEntry, LeaseState};
use naxos_core::clock::after;
use naxos_core::model::{Attempt, ExecutionStatus, JobDefinition, TaskRef, TaskStatus};
use naxos_core::state::rules;
use naxos_core::{Error, Result};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::codec::{count, execution_status, get, int, task_status, traceparent};
use crate::error::db;

/// Why a guarded UPDATE matched no row: the task does not exist, or it is not at that
/// attempt in a status the transition accepts.
pub(crate) async fn guard_error(conn: &mut PgConnection, task: &TaskRef) -> Error {
    let row = sqlx::query("SELECT status, attempt FROM naxos_tasks WHERE execution_id = $1 AND task_id = $2")
        .bind(task.execution_id)
        .bind(&task.task_id)
        .fetch_optional(&mut *conn)
        .await;
    match row {
        Err(e) => db(e),
        Ok(None) => rules::no_task(task.execution_id, &task.task_id),
        Ok(Some(row)) => match (
            get::<String>(&row, "status").and_then(|s| task_status(&s)),
            count(&row, "attempt"),
        ) {
            (Ok(status), Ok(attempt)) => rules::stale(task, status, attempt),
            (Err(e), _) | (_, Err(e)) => e,
        },
    }
}

/// The claim as one statement, so one round trip: lock the execution row first (`ex`), move the
/// task to RUNNING under its guard (`claimed`: only this attempt, only while it waits, only
/// while the execution is unfinished), mark the execution RUNNING, record the attempt, and read
/// the params, the execution's trace context and the direct dependencies' outputs. The data-modifying parts all depend on
/// `claimed` (and PostgreSQL runs every data-modifying CTE to completion), so a claim that loses
/// its guard changes nothing and one that wins changes everything, atomically.
/// The task's key is matched on the parameters, not through the join with `ex`: a cached plan
/// made while the table looked empty must still reach the row by its primary key, not a scan.
/// A task whose definition is in a format newer than this build knows (`$7`) is not claimed:
/// this node would misread it, and the message goes back for a node of the newer release. Nor
/// is one whose definition is paused: the general path blocks it.
const CLAIM: &str = "
    WITH ex AS (
        SELECT e.id, e.definition_id, e.definition_version, e.status, e.params, e.traceparent, e.plain,
               (SELECT d.format FROM naxos_definitions d
                WHERE d.id = e.definition_id AND d.version = e.definition_version) AS format,
               EXISTS (SELECT 1 FROM naxos_paused_definitions p WHERE p.id = e.definition_id) AS paused
        FROM naxos_executions e WHERE e.id = $1 FOR NO KEY UPDATE
    ), claimed AS (
        UPDATE naxos_tasks t SET status = 'RUNNING', attempts = t.attempts + 1, lease_owner = $4,
               lease_expires_at = $5, start_time = $6, end_time = NULL, due_at = NULL, blocked_by = NULL
        FROM ex
        WHERE t.execution_id = $1 AND t.task_id = $2 AND t.attempt = $3
          AND t.status IN ('QUEUED', 'RETRYING') AND ex.status IN ('PENDING', 'RUNNING')
          AND ex.format <= $7 AND ex.plain AND NOT ex.paused
        RETURNING t.attempts, t.failures, t.dependencies, t.queued_at
    ), touched AS (
        UPDATE naxos_executions e
        SET status = CASE WHEN e.status = 'PENDING' THEN 'RUNNING' ELSE e.status END,
            start_time = coalesce(e.start_time, $6), updated_at = $6
        FROM claimed WHERE e.id = $1
        RETURNING e.id
    ), history AS (
        INSERT INTO naxos_attempts (execution_id, task_id, attempt, node, started_at)
        SELECT $1, $2, $3, $4, $6 FROM claimed
        RETURNING attempt
    )
    SELECT ex.definition_id, ex.definition_version, ex.status, ex.params, ex.format, ex.traceparent, ex.plain,
           ex.paused,
           c.attempts, c.failures, c.queued_at,
           (SELECT coalesce(jsonb_object_agg(u.task_id, u.output), '{}'::jsonb) FROM naxos_tasks u
            WHERE u.execution_id = $1 AND u.task_id = ANY(c.dependencies) AND u.output IS NOT NULL) AS upstream
    FROM ex LEFT JOIN claimed c ON true";

/// What the one-statement claim did.
pub(crate) enum Fast {
    /// It claimed the task.
    Claimed(Box<ClaimedTask>),
    /// It changed nothing: the execution is not plain, or its definition is paused (as said):
    /// the caller claims or blocks the task through the state module.
    General {
        /// Whether the definition was paused when the statement read it.
        paused: bool,
    },
}

/// Claims a task of a plain execution in one statement; [`Fast::General`], changing nothing,
/// for a task of an execution that is not plain or whose definition is paused.
pub(crate) async fn claim(conn: &mut PgConnection, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Fast> {
    let task = &req.task;
    let row = sqlx::query(CLAIM)
        .bind(task.execution_id)
        .bind(&task.task_id)
        .bind(int(task.attempt))
        .bind(&req.owner)
        .bind(after(now, req.lease))
        .bind(now)
        .bind(int(JobDefinition::FORMAT))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::not_found("execution", task.execution_id))?;
    let definition_id: String = get(&row, "definition_id")?;
    let status = execution_status(&get::<String>(&row, "status")?)?;
    let Some(attempts) = get::<Option<i32>>(&row, "attempts")? else {
        if status.is_terminal() {
            return Err(rules::finished(task.execution_id, status));
        }
        let format = count(&row, "format")?;
        if format > JobDefinition::FORMAT {
            return Err(Error::newer_version(
                format!(
                    "task {task} of job definition `{definition_id}` version {}",
                    count(&row, "definition_version")?
                ),
                format!("definition format {format}"),
                format!("format {}", JobDefinition::FORMAT),
            ));
        }
        // Not plain, or paused (the task is then blocked): the state module decides.
        let paused = get::<bool>(&row, "paused")?;
        if !get::<bool>(&row, "plain")? || paused {
            return Ok(Fast::General { paused });
        }
        return Err(guard_error(conn, task).await);
    };
    let mut changes = Changes::default();
    if status == ExecutionStatus::Pending {
        changes.events.push(rules::execution_event(
            task.execution_id,
            &definition_id,
            ExecutionStatus::Running,
            None,
            now,
        ));
    }
    changes.events.push(rules::task_event(
        task.execution_id,
        &definition_id,
        &task.task_id,
        task.attempt,
        TaskStatus::Running,
        None,
        now,
    ));
    changes.history.push(HistoryEntry {
        execution_id: task.execution_id,
        task_id: task.task_id.clone(),
        record: Attempt {
            attempt: task.attempt,
            node: req.owner.as_str().into(),
            started_at: now,
            ended_at: None,
            outcome: None,
            error: None,
        },
    });
    let upstream: serde_json::Map<String, Value> = match get::<Value>(&row, "upstream")? {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Ok(Fast::Claimed(Box::new(ClaimedTask {
        task: task.clone(),
        definition_id,
        definition_version: count(&row, "definition_version")?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        failures: count(&row, "failures")?,
        queued_at: get(&row, "queued_at")?,
        params: Arc::new(get(&row, "params")?),
        upstream: upstream.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        instance: None,
        traceparent: traceparent(&row)?,
        changes,
    })))
}

/// A single conditional UPDATE: no transaction or execution lock is needed to move a lease
/// forward, and the attempt guard keeps a stale worker from extending a newer attempt's lease.
pub(crate) async fn heartbeat(pool: &PgPool, task: &TaskRef, until: DateTime<Utc>) -> Result<LeaseState> {
    let row = sqlx::query(
        "UPDATE naxos_tasks SET lease_expires_at = $4
         WHERE execution_id = $1 AND task_id = $2 AND attempt = $3 AND status = 'RUNNING'
           AND lease_owner IS NOT NULL
         RETURNING 1 AS ok",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .bind(int(task.attempt))
    .bind(until)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    if row.is_some() {
        return Ok(LeaseState::Active);
    }
    let row = sqlx::query(
        "SELECT status, attempt, lease_owner IS NOT NULL AS leased FROM naxos_tasks
         WHERE execution_id = $1 AND task_id = $2",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Err(rules::no_task(task.execution_id, &task.task_id));
    };
    let status = task_status(&get::<String>(&row, "status")?)?;
    let attempt = count(&row, "attempt")?;
    if status == TaskStatus::Cancelled && attempt == task.attempt && get::<bool>(&row, "leased")? {
        return Ok(LeaseState::Cancelled);
    }
    Err(rules::stale(task, status, attempt))
}
