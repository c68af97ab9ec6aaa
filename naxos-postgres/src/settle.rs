//! The common finish — a completion or a failure that will be retried — as one statement, so
//! one round trip and no explicit transaction, where the general path (`crate::apply`: load,
//! apply the state function, write back) takes four. A hot path for plain tasks, held to
//! naxos-core's state module by the differential test.
//!
//! One statement reads the task table through the snapshot it took when it started. If it had
//! to wait for the execution lock, a transition that committed meanwhile is invisible to those
//! reads (only the rows it locks or updates are re-read at their newest version). So the
//! statement reads the execution's `revision` twice — through its lock (newest) and through its
//! snapshot — and changes nothing unless both agree. Every transition that can end a task or
//! the execution bumps `revision` under the same lock (claims, which only move a task from
//! QUEUED to RUNNING, do not), so equal revisions mean the snapshot is current for everything
//! the statement decides on. When they differ the caller runs the general transaction instead.
//!
//! It serves **plain** executions only (`plain`, fixed at creation: no task has a `when` or a
//! trigger other than `allSuccess`, and it is not a sub-job's child, whose end settles its parent):
//! their dependents start when the fan-in count reaches zero,
//! which SQL can say. For any other execution the statement changes nothing, as for a stale
//! snapshot, and the caller runs the state module, which evaluates triggers and conditions.

use chrono::{DateTime, Utc};
use naxos_core::backend::{Changes, HistoryEntry, TaskOutcome};
use naxos_core::clock::after;
use naxos_core::model::{Attempt, AttemptOutcome, TaskRef, TaskStatus};
use naxos_core::state::rules;
use naxos_core::{Error, Result};
use sqlx::PgConnection;

use crate::claim::guard_error;
use crate::codec::{execution_status, get, int, jsonb, priority, traceparent};
use crate::error::db;

/// The aggregates over an execution's task rows that decide whether and how it ends (as
/// [`rules::verdict`] does): `open` (tasks not finished), `cancelled`, and `failed` — the error
/// naming the first failed task in task order, NULL when none failed.
macro_rules! tally_columns {
    () => {
        "count(*) FILTER (WHERE status NOT IN ('COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')) AS open,
         count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled,
         'task `' || (array_agg(task_id ORDER BY position) FILTER (WHERE status = 'FAILED'))[1] || '` failed: '
             || (array_agg(coalesce(error, 'unknown error') ORDER BY position) FILTER (WHERE status = 'FAILED'))[1]
             AS failed"
    };
}

/// `$1` execution, `$2` task, `$3` attempt, `$4` new status (COMPLETED or RETRYING), `$5` output,
/// `$6` error, `$7` due time of the retry, `$8` now. Each data-modifying part hangs off `done`,
/// which hangs off `fresh`: a stale snapshot or a lost guard changes nothing at all.
const SETTLE: &str = concat!(
    "
    WITH ex AS (
        SELECT id, definition_id, status, revision, traceparent, priority, plain FROM naxos_executions
        WHERE id = $1 FOR NO KEY UPDATE
    ), fresh AS (
        SELECT ex.id FROM ex JOIN naxos_executions seen ON seen.id = ex.id AND seen.revision = ex.revision
        WHERE ex.plain
    ), done AS (
        UPDATE naxos_tasks t SET
            status = $4, output = $5, error = $6, due_at = $7, end_time = $8,
            lease_owner = NULL, lease_expires_at = NULL,
            failures = t.failures + CASE WHEN $4 = 'COMPLETED' THEN 0 ELSE 1 END,
            attempt = t.attempt + CASE WHEN $4 = 'RETRYING' THEN 1 ELSE 0 END
        FROM fresh
        WHERE t.execution_id = $1 AND fresh.id = $1 AND t.task_id = $2 AND t.attempt = $3 AND t.status = 'RUNNING'
        RETURNING t.attempt, t.dependents
    ), history AS (
        UPDATE naxos_attempts a SET ended_at = $8, outcome = $4, error = $6
        FROM done
        WHERE a.execution_id = $1 AND a.task_id = $2 AND a.attempt = $3 AND a.ended_at IS NULL
        RETURNING a.node, a.started_at
    ), unlocked AS (
        UPDATE naxos_tasks d SET remaining = d.remaining - 1,
            status = CASE WHEN d.remaining = 1 THEN 'QUEUED' ELSE d.status END,
            queued_at = CASE WHEN d.remaining = 1 THEN $8 ELSE d.queued_at END
        FROM done
        WHERE $4 = 'COMPLETED' AND d.execution_id = $1 AND d.task_id = ANY(done.dependents)
          AND d.status = 'PENDING'
        RETURNING d.task_id, d.attempt, d.status, d.position
    ), tally AS (
        SELECT ",
    tally_columns!(),
    " FROM naxos_tasks WHERE execution_id = $1
    ), verdict AS (
        -- The snapshot still sees the finishing task as RUNNING: a completion takes it off.
        SELECT CASE WHEN tally.open - CASE WHEN $4 = 'COMPLETED' THEN 1 ELSE 0 END > 0
                         OR ex.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN NULL
                    WHEN tally.failed IS NOT NULL THEN 'FAILED'
                    WHEN tally.cancelled > 0 THEN 'CANCELLED'
                    ELSE 'COMPLETED' END AS status,
               tally.failed AS error
        FROM tally, ex
    ), ended AS (
        UPDATE naxos_executions e SET
            status = coalesce(v.status, e.status),
            error = CASE WHEN v.status IS NULL THEN e.error ELSE v.error END,
            end_time = CASE WHEN v.status IS NULL THEN e.end_time ELSE $8 END,
            updated_at = $8, revision = e.revision + 1
        FROM done, verdict v
        WHERE e.id = $1
        RETURNING v.status, v.error
    )
    SELECT ex.definition_id, ex.status, ex.traceparent, ex.priority,
           EXISTS (SELECT 1 FROM fresh) AS fresh,
           (SELECT attempt FROM done) AS attempt,
           (SELECT status FROM ended) AS ended,
           (SELECT error FROM ended) AS ended_error,
           (SELECT node FROM history) AS node,
           (SELECT started_at FROM history) AS started_at,
           -- Both arrays in task order, so their elements pair up.
           (SELECT coalesce(array_agg(task_id ORDER BY position), '{}') FROM unlocked WHERE status = 'QUEUED') AS ready,
           (SELECT coalesce(array_agg(attempt ORDER BY position), '{}') FROM unlocked WHERE status = 'QUEUED')
               AS ready_attempts
    FROM ex"
);

/// Applies a completion or a retryable failure in one statement. `Ok(None)` for what this path
/// does not take — a final failure (it skips dependents), an execution that is not plain, or a
/// stale snapshot — and nothing changed: the caller runs the general transaction.
pub(crate) async fn settle(
    conn: &mut PgConnection,
    task: &TaskRef,
    outcome: &TaskOutcome,
    now: DateTime<Utc>,
) -> Result<Option<Changes>> {
    let (status, output, error, due) = match outcome {
        TaskOutcome::Completed(output) => (TaskStatus::Completed, Some(output), None, None),
        TaskOutcome::Failed {
            error,
            retry_in: Some(delay),
        } => (
            TaskStatus::Retrying,
            None,
            Some(error.as_str()),
            Some(after(now, *delay)),
        ),
        TaskOutcome::Failed { retry_in: None, .. } => return Ok(None),
    };
    let row = sqlx::query(SETTLE)
        .bind(task.execution_id)
        .bind(&task.task_id)
        .bind(int(task.attempt))
        .bind(status.as_str())
        .bind(output.map(jsonb))
        .bind(error)
        .bind(due)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::not_found("execution", task.execution_id))?;
    if !get::<bool>(&row, "fresh")? {
        return Ok(None);
    }
    let Some(attempt) = get::<Option<i32>>(&row, "attempt")? else {
        return Err(guard_error(conn, task).await);
    };
    let definition_id: String = get(&row, "definition_id")?;
    let trace = traceparent(&row)?;
    let priority = priority(&row)?;
    let id = task.execution_id;
    let attempt = u32::try_from(attempt).unwrap_or_default();
    let mut changes = Changes::default();
    let (outcome, event_error) = match status {
        TaskStatus::Retrying => (AttemptOutcome::Retrying, error.map(str::to_string)),
        _ => (AttemptOutcome::Completed, None),
    };
    changes.history.push(HistoryEntry {
        execution_id: id,
        task_id: task.task_id.clone(),
        record: Attempt {
            attempt: task.attempt,
            node: get::<Option<String>>(&row, "node")?.unwrap_or_default().into(),
            started_at: get::<Option<DateTime<Utc>>>(&row, "started_at")?.unwrap_or(now),
            ended_at: Some(now),
            outcome: Some(outcome),
            error: event_error.clone(),
        },
    });
    changes.events.push(rules::task_event(
        id,
        &definition_id,
        &task.task_id,
        attempt,
        status,
        event_error,
        now,
    ));
    if status == TaskStatus::Retrying {
        let next = TaskRef::new(id, task.task_id.clone(), attempt)
            .with_traceparent(trace)
            .with_priority(priority);
        changes.delayed.push((next, due.unwrap_or(now)));
    }
    let ready: Vec<String> = get(&row, "ready")?;
    let attempts: Vec<i32> = get(&row, "ready_attempts")?;
    for (task_id, attempt) in ready.into_iter().zip(attempts) {
        let attempt = u32::try_from(attempt).unwrap_or_default();
        let event = rules::task_event(id, &definition_id, &task_id, attempt, TaskStatus::Queued, None, now);
        changes.events.push(event);
        changes.ready.push(
            TaskRef::new(id, task_id, attempt)
                .with_traceparent(trace)
                .with_priority(priority),
        );
    }
    if let Some(ended) = get::<Option<String>>(&row, "ended")? {
        let error: Option<String> = get(&row, "ended_error")?;
        let status = execution_status(&ended)?;
        changes
            .events
            .push(rules::execution_event(id, &definition_id, status, error, now));
    }
    Ok(Some(changes))
}
