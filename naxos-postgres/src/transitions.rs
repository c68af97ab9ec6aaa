//! The task state machine as transactions. Each starts by locking the execution row (see the
//! crate docs for why that is enough), then applies guarded conditional UPDATEs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use naxos_core::backend::{Changes, ClaimRequest, ClaimedTask, LeaseState, StopReason, TaskOutcome};
use naxos_core::model::{ExecutionId, ExecutionStatus, TaskRef, TaskStatus};
use naxos_core::{Error, Result};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::codec::{count, execution_event, execution_status, get, int, jsonb, task_event, task_status};
use crate::error::db;

/// The locked execution row.
pub(crate) struct Locked {
    pub(crate) id: ExecutionId,
    pub(crate) definition_id: String,
    pub(crate) status: ExecutionStatus,
}

/// Locks an execution's row for the rest of the transaction: every transition of one
/// execution runs after the previous one committed.
pub(crate) async fn lock(conn: &mut PgConnection, id: ExecutionId) -> Result<Locked> {
    let row = sqlx::query("SELECT definition_id, status FROM naxos_executions WHERE id = $1 FOR NO KEY UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::not_found("execution", id))?;
    Ok(Locked {
        id,
        definition_id: get(&row, "definition_id")?,
        status: execution_status(&get::<String>(&row, "status")?)?,
    })
}

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
        Ok(None) => Error::not_found("task", format!("{}/{}", task.execution_id, task.task_id)),
        Ok(Some(row)) => {
            let status: String = get(&row, "status").unwrap_or_default();
            let attempt = count(&row, "attempt").unwrap_or_default();
            Error::conflict(format!(
                "task {task} is stale: the task is {status} at attempt {attempt}"
            ))
        }
    }
}

/// The claim as one statement, so one round trip: lock the execution row first (`ex`), move the
/// task to RUNNING under its guard (`claimed`: only this attempt, only while it waits, only
/// while the execution is unfinished), mark the execution RUNNING, record the attempt, and read
/// the params and the direct dependencies' outputs. The data-modifying parts all depend on
/// `claimed` (and PostgreSQL runs every data-modifying CTE to completion), so a claim that loses
/// its guard changes nothing and one that wins changes everything, atomically.
/// The task's key is matched on the parameters, not through the join with `ex`: a cached plan
/// made while the table looked empty must still reach the row by its primary key, not a scan.
const CLAIM: &str = "
    WITH ex AS (
        SELECT id, definition_id, definition_version, status, params
        FROM naxos_executions WHERE id = $1 FOR NO KEY UPDATE
    ), claimed AS (
        UPDATE naxos_tasks t SET status = 'RUNNING', attempts = t.attempts + 1, lease_owner = $4,
               lease_expires_at = $5, start_time = $6, end_time = NULL, due_at = NULL
        FROM ex
        WHERE t.execution_id = $1 AND t.task_id = $2 AND t.attempt = $3
          AND t.status IN ('QUEUED', 'RETRYING') AND ex.status IN ('PENDING', 'RUNNING')
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
    SELECT ex.definition_id, ex.definition_version, ex.status, ex.params,
           c.attempts, c.failures, c.queued_at,
           (SELECT coalesce(jsonb_object_agg(u.task_id, u.output), '{}'::jsonb) FROM naxos_tasks u
            WHERE u.execution_id = $1 AND u.task_id = ANY(c.dependencies) AND u.output IS NOT NULL) AS upstream
    FROM ex LEFT JOIN claimed c ON true";

pub(crate) async fn claim(conn: &mut PgConnection, req: &ClaimRequest) -> Result<ClaimedTask> {
    let task = &req.task;
    let row = sqlx::query(CLAIM)
        .bind(task.execution_id)
        .bind(&task.task_id)
        .bind(int(task.attempt))
        .bind(&req.owner)
        .bind(req.lease_until)
        .bind(req.now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::not_found("execution", task.execution_id))?;
    let definition_id: String = get(&row, "definition_id")?;
    let status = execution_status(&get::<String>(&row, "status")?)?;
    let Some(attempts) = get::<Option<i32>>(&row, "attempts")? else {
        if status.is_terminal() {
            return Err(Error::conflict(format!("execution {} is {status}", task.execution_id)));
        }
        return Err(guard_error(conn, task).await);
    };
    let mut changes = Changes::default();
    if status == ExecutionStatus::Pending {
        changes.events.push(execution_event(
            task.execution_id,
            &definition_id,
            ExecutionStatus::Running,
            None,
            req.now,
        ));
    }
    changes.events.push(task_event(
        task.execution_id,
        &definition_id,
        &task.task_id,
        task.attempt,
        TaskStatus::Running,
        None,
        req.now,
    ));
    let upstream: serde_json::Map<String, Value> = match get::<Value>(&row, "upstream")? {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Ok(ClaimedTask {
        task: task.clone(),
        definition_id,
        definition_version: count(&row, "definition_version")?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        failures: count(&row, "failures")?,
        queued_at: get(&row, "queued_at")?,
        params: Arc::new(get(&row, "params")?),
        upstream: upstream.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        changes,
    })
}

/// A single conditional UPDATE: no transaction or execution lock is needed to move a lease
/// forward, and the attempt guard keeps a stale worker from extending a newer attempt's lease.
pub(crate) async fn heartbeat(pool: &PgPool, task: &TaskRef, until: DateTime<Utc>) -> Result<LeaseState> {
    let row = sqlx::query(
        "UPDATE naxos_tasks SET lease_expires_at = $4
         WHERE execution_id = $1 AND task_id = $2 AND attempt = $3 AND status = 'RUNNING'
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
        return Err(Error::not_found(
            "task",
            format!("{}/{}", task.execution_id, task.task_id),
        ));
    };
    let status = task_status(&get::<String>(&row, "status")?)?;
    let attempt = count(&row, "attempt")?;
    if status == TaskStatus::Cancelled && attempt == task.attempt && get::<bool>(&row, "leased")? {
        return Ok(LeaseState::Cancelled);
    }
    Err(Error::conflict(format!(
        "task {task} holds no lease: it is {status} at attempt {attempt}"
    )))
}

/// Applies one attempt's outcome under the execution lock `ex`.
pub(crate) async fn finish_one(
    conn: &mut PgConnection,
    ex: &Locked,
    task: &TaskRef,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Result<()> {
    let (status, error) = match &outcome {
        TaskOutcome::Completed(_) => (TaskStatus::Completed, None),
        TaskOutcome::Failed {
            error,
            retry_at: Some(_),
        } => (TaskStatus::Retrying, Some(error.clone())),
        TaskOutcome::Failed { error, retry_at: None } => (TaskStatus::Failed, Some(error.clone())),
    };
    let (output, due) = match outcome {
        TaskOutcome::Completed(output) => (Some(output), None),
        TaskOutcome::Failed { retry_at, .. } => (None, retry_at),
    };
    // One guarded UPDATE for all three outcomes; a retry moves to the next attempt number.
    let row = sqlx::query(
        "UPDATE naxos_tasks SET
             status = $4, output = $5, error = $6, due_at = $7, end_time = $8,
             lease_owner = NULL, lease_expires_at = NULL,
             failures = failures + CASE WHEN $4 = 'COMPLETED' THEN 0 ELSE 1 END,
             attempt = attempt + CASE WHEN $4 = 'RETRYING' THEN 1 ELSE 0 END
         WHERE execution_id = $1 AND task_id = $2 AND attempt = $3 AND status = 'RUNNING'
         RETURNING attempt, dependents",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .bind(int(task.attempt))
    .bind(status.as_str())
    .bind(output.as_ref().map(jsonb))
    .bind(&error)
    .bind(due)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Err(guard_error(conn, task).await);
    };
    end_attempt(conn, task, status.as_str(), error.as_deref(), now).await?;
    let attempt = count(&row, "attempt")?;
    changes.events.push(task_event(
        ex.id,
        &ex.definition_id,
        &task.task_id,
        attempt,
        status,
        error.clone(),
        now,
    ));
    match status {
        TaskStatus::Completed => {
            let dependents: Vec<String> = get(&row, "dependents")?;
            unlock_dependents(conn, ex, &dependents, now, changes).await?;
        }
        TaskStatus::Retrying => {
            let next = TaskRef::new(ex.id, task.task_id.clone(), attempt);
            changes.delayed.push((next, due.unwrap_or(now)));
        }
        _ => skip_dependents(conn, ex, &task.task_id, now, changes).await?,
    }
    finish_if_done(conn, ex, now, changes).await
}

/// Fan-in: decrements each waiting dependent's counter and queues those that reach zero. The
/// decrement is one UPDATE on rows this transaction locks, after the execution lock: two
/// completions racing for the same dependent run one after the other, and only the one that
/// brings the counter to zero sees it QUEUED.
async fn unlock_dependents(
    conn: &mut PgConnection,
    ex: &Locked,
    dependents: &[String],
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Result<()> {
    if dependents.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "UPDATE naxos_tasks SET remaining = remaining - 1,
             status = CASE WHEN remaining = 1 THEN 'QUEUED' ELSE status END,
             queued_at = CASE WHEN remaining = 1 THEN $3 ELSE queued_at END
         WHERE execution_id = $1 AND task_id = ANY($2) AND status = 'PENDING'
         RETURNING task_id, attempt, status",
    )
    .bind(ex.id)
    .bind(dependents)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for row in &rows {
        if get::<String>(row, "status")? == "QUEUED" {
            queued(ex, get(row, "task_id")?, count(row, "attempt")?, now, changes);
        }
    }
    sort_ready(changes);
    Ok(())
}

/// A task became QUEUED: its event, and its message to publish.
pub(crate) fn queued(ex: &Locked, task_id: String, attempt: u32, now: DateTime<Utc>, changes: &mut Changes) {
    changes.events.push(task_event(
        ex.id,
        &ex.definition_id,
        &task_id,
        attempt,
        TaskStatus::Queued,
        None,
        now,
    ));
    changes.ready.push(TaskRef::new(ex.id, task_id, attempt));
}

/// Keeps `ready` in the definition's (sorted) order, as the in-memory store does.
pub(crate) fn sort_ready(changes: &mut Changes) {
    changes
        .ready
        .sort_by(|a, b| (a.execution_id, &a.task_id).cmp(&(b.execution_id, &b.task_id)));
}

/// SKIPS every transitive dependent of a failed task that has not finished.
pub(crate) async fn skip_dependents(
    conn: &mut PgConnection,
    ex: &Locked,
    failed: &str,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Result<()> {
    let error = format!("skipped: upstream task `{failed}` failed");
    let rows = sqlx::query(
        "WITH RECURSIVE downstream(task_id) AS (
             SELECT unnest(dependents) FROM naxos_tasks WHERE execution_id = $1 AND task_id = $2
             UNION
             SELECT unnest(t.dependents) FROM naxos_tasks t
             JOIN downstream d ON t.execution_id = $1 AND t.task_id = d.task_id
         )
         , skipped AS (
             UPDATE naxos_tasks SET status = 'SKIPPED', error = $3, end_time = $4
             WHERE execution_id = $1 AND task_id IN (SELECT task_id FROM downstream)
               AND status NOT IN ('COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')
             RETURNING task_id, attempt, position
         )
         SELECT task_id, attempt FROM skipped ORDER BY position",
    )
    .bind(ex.id)
    .bind(failed)
    .bind(&error)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for row in &rows {
        let task_id: String = get(row, "task_id")?;
        let event = task_event(
            ex.id,
            &ex.definition_id,
            &task_id,
            count(row, "attempt")?,
            TaskStatus::Skipped,
            Some(error.clone()),
            now,
        );
        changes.events.push(event);
    }
    Ok(())
}

/// The aggregates over an execution's task rows that decide whether and how it ends: `open`
/// (tasks not finished), `cancelled`, and `failed` — the error naming the first failed task in
/// the definition's order, NULL when none failed. One definition for the general finish and the
/// one-statement finish, so both end an execution the same way.
macro_rules! tally_columns {
    () => {
        "count(*) FILTER (WHERE status NOT IN ('COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')) AS open,
         count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled,
         'task `' || (array_agg(task_id ORDER BY position) FILTER (WHERE status = 'FAILED'))[1] || '` failed: '
             || (array_agg(coalesce(error, 'unknown error') ORDER BY position) FILTER (WHERE status = 'FAILED'))[1]
             AS failed"
    };
}
pub(crate) use tally_columns;

/// Finishes the execution when every task is terminal: FAILED if any task failed (never
/// COMPLETED with a failed task), CANCELLED if any was cancelled, else COMPLETED.
pub(crate) async fn finish_if_done(
    conn: &mut PgConnection,
    ex: &Locked,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Result<()> {
    let row = sqlx::query(concat!(
        "SELECT ",
        tally_columns!(),
        " FROM naxos_tasks WHERE execution_id = $1"
    ))
    .bind(ex.id)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    if get::<i64>(&row, "open")? > 0 || ex.status.is_terminal() {
        sqlx::query("UPDATE naxos_executions SET updated_at = $2, revision = revision + 1 WHERE id = $1")
            .bind(ex.id)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        return Ok(());
    }
    let (status, error) = match get::<Option<String>>(&row, "failed")? {
        Some(why) => (ExecutionStatus::Failed, Some(why)),
        None if get::<i64>(&row, "cancelled")? > 0 => (ExecutionStatus::Cancelled, None),
        None => (ExecutionStatus::Completed, None),
    };
    set_execution(conn, ex, status, error, Some(now), now, changes).await
}

async fn set_execution(
    conn: &mut PgConnection,
    ex: &Locked,
    status: ExecutionStatus,
    error: Option<String>,
    end_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Result<()> {
    sqlx::query(
        "UPDATE naxos_executions SET status = $2, error = $3, end_time = $4, updated_at = $5, revision = revision + 1
         WHERE id = $1",
    )
    .bind(ex.id)
    .bind(status.as_str())
    .bind(&error)
    .bind(end_time)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    changes
        .events
        .push(execution_event(ex.id, &ex.definition_id, status, error, now));
    Ok(())
}

/// Closes an attempt's history row.
pub(crate) async fn end_attempt(
    conn: &mut PgConnection,
    task: &TaskRef,
    outcome: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE naxos_attempts SET ended_at = $4, outcome = $5, error = $6
         WHERE execution_id = $1 AND task_id = $2 AND attempt = $3 AND ended_at IS NULL",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .bind(int(task.attempt))
    .bind(now)
    .bind(outcome)
    .bind(error)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// RUNNING → QUEUED with the next attempt (graceful hand-back).
pub(crate) async fn release(conn: &mut PgConnection, task: &TaskRef, now: DateTime<Utc>) -> Result<Changes> {
    let ex = lock(conn, task.execution_id).await?;
    let row = sqlx::query(
        "UPDATE naxos_tasks SET status = 'QUEUED', attempt = attempt + 1, lease_owner = NULL,
                lease_expires_at = NULL, queued_at = $4
         WHERE execution_id = $1 AND task_id = $2 AND attempt = $3 AND status = 'RUNNING'
         RETURNING attempt",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .bind(int(task.attempt))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Err(guard_error(conn, task).await);
    };
    end_attempt(conn, task, "RELEASED", None, now).await?;
    let mut changes = Changes::default();
    queued(&ex, task.task_id.clone(), count(&row, "attempt")?, now, &mut changes);
    Ok(changes)
}

/// Cancels every unfinished task (running ones keep their lease owner, so their heartbeat
/// reports the cancellation) and ends the execution.
pub(crate) async fn stop(
    conn: &mut PgConnection,
    id: ExecutionId,
    reason: StopReason,
    now: DateTime<Utc>,
) -> Result<(ExecutionStatus, Vec<TaskRef>, Changes)> {
    let ex = lock(conn, id).await?;
    if ex.status.is_terminal() {
        return Err(Error::conflict(format!("execution {id} is already {}", ex.status)));
    }
    let rows = sqlx::query(
        "WITH cancelled AS (
             UPDATE naxos_tasks SET
                 status = 'CANCELLED', end_time = $2, due_at = NULL,
                 lease_owner = CASE WHEN status = 'RUNNING' THEN lease_owner END,
                 lease_expires_at = CASE WHEN status = 'RUNNING' THEN lease_expires_at END
             WHERE execution_id = $1 AND status NOT IN ('COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')
             RETURNING task_id, attempt, position, lease_owner IS NOT NULL AS was_running
         )
         SELECT task_id, attempt, was_running FROM cancelled ORDER BY position",
    )
    .bind(id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut changes = Changes::default();
    let mut running = Vec::new();
    for row in &rows {
        let task_id: String = get(row, "task_id")?;
        let attempt = count(row, "attempt")?;
        changes.events.push(task_event(
            id,
            &ex.definition_id,
            &task_id,
            attempt,
            TaskStatus::Cancelled,
            None,
            now,
        ));
        if get::<bool>(row, "was_running")? {
            running.push(TaskRef::new(id, task_id, attempt));
        }
    }
    let (status, error) = match reason {
        StopReason::Cancelled => (ExecutionStatus::Cancelled, None),
        StopReason::TimedOut => (
            ExecutionStatus::Failed,
            Some("the execution ran past its timeoutMs deadline".to_string()),
        ),
    };
    set_execution(conn, &ex, status, error, Some(now), now, &mut changes).await?;
    Ok((status, running, changes))
}

/// Resets the FAILED, SKIPPED and CANCELLED tasks of a finished execution and queues those
/// whose dependencies are all COMPLETED.
pub(crate) async fn retry(conn: &mut PgConnection, id: ExecutionId, now: DateTime<Utc>) -> Result<Changes> {
    let ex = lock(conn, id).await?;
    if !matches!(ex.status, ExecutionStatus::Failed | ExecutionStatus::Cancelled) {
        return Err(Error::conflict(format!(
            "execution {id} is {}; only FAILED or CANCELLED executions can be retried",
            ex.status
        )));
    }
    let mut changes = Changes::default();
    set_execution(conn, &ex, ExecutionStatus::Running, None, None, now, &mut changes).await?;
    sqlx::query(
        "UPDATE naxos_tasks SET status = 'PENDING', attempt = attempt + 1, failures = 0, lease_expiries = 0,
                error = NULL, lease_owner = NULL, lease_expires_at = NULL, due_at = NULL,
                start_time = NULL, end_time = NULL
         WHERE execution_id = $1 AND status IN ('FAILED', 'SKIPPED', 'CANCELLED')",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let rows = sqlx::query(
        "WITH reset AS (
         UPDATE naxos_tasks t SET
             remaining = r.remaining,
             status = CASE WHEN r.remaining = 0 THEN 'QUEUED' ELSE 'PENDING' END,
             queued_at = CASE WHEN r.remaining = 0 THEN $2 ELSE t.queued_at END
         FROM (SELECT p.task_id,
                      (SELECT count(*) FROM naxos_tasks d
                       WHERE d.execution_id = p.execution_id AND d.task_id = ANY(p.dependencies)
                         AND d.status <> 'COMPLETED')::INTEGER AS remaining
               FROM naxos_tasks p WHERE p.execution_id = $1 AND p.status = 'PENDING') r
         WHERE t.execution_id = $1 AND t.task_id = r.task_id
         RETURNING t.task_id, t.attempt, t.status, t.position
         )
         SELECT task_id, attempt, status FROM reset ORDER BY position",
    )
    .bind(id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for row in &rows {
        let task_id: String = get(row, "task_id")?;
        let attempt = count(row, "attempt")?;
        let status = task_status(&get::<String>(row, "status")?)?;
        changes
            .events
            .push(task_event(id, &ex.definition_id, &task_id, attempt, status, None, now));
        if status == TaskStatus::Queued {
            changes.ready.push(TaskRef::new(id, task_id, attempt));
        }
    }
    Ok(changes)
}
