//! The recovery scans, safe to run from every node at once.

use chrono::{DateTime, Utc};
use naxos_core::backend::Changes;
use naxos_core::model::{TaskRef, TaskStatus};
use naxos_core::Result;
use sqlx::{PgConnection, PgPool};

use crate::codec::{count, get, int, task_event, task_ref};
use crate::error::db;
use crate::transaction;
use crate::transitions::{end_attempt, finish_if_done, lock, queued, skip_dependents};

/// Finds RUNNING tasks whose lease ran out and recovers each in its own transaction. The
/// candidate list is read without locks; the recovery itself re-checks the guard (same
/// attempt, still RUNNING, still expired) under the execution lock, so when two sweepers pick
/// the same task only the first changes it, and a heartbeat that landed in between wins.
pub(crate) async fn recover_expired(
    pool: &PgPool,
    now: DateTime<Utc>,
    max_expiries: u32,
    limit: usize,
) -> Result<Changes> {
    let candidates = sqlx::query(
        "SELECT execution_id, task_id, attempt FROM naxos_tasks
         WHERE status = 'RUNNING' AND lease_expires_at < $1
         ORDER BY lease_expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut changes = Changes::default();
    for row in &candidates {
        let task = task_ref(row)?;
        let recovered = transaction!(pool, |tx| recover_one(&mut tx, &task, now, max_expiries).await)?;
        changes.extend(recovered);
    }
    Ok(changes)
}

async fn recover_one(
    conn: &mut PgConnection,
    task: &TaskRef,
    now: DateTime<Utc>,
    max_expiries: u32,
) -> Result<Changes> {
    let ex = lock(conn, task.execution_id).await?;
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT lease_owner FROM naxos_tasks WHERE execution_id = $1 AND task_id = $2 AND attempt = $3",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .bind(int(task.attempt))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .flatten();
    let owner = owner.unwrap_or_default();
    let row = sqlx::query(
        "UPDATE naxos_tasks SET
             lease_expiries = lease_expiries + 1, attempt = attempt + 1, end_time = $4,
             lease_owner = NULL, lease_expires_at = NULL,
             status = CASE WHEN lease_expiries + 1 > $5 THEN 'FAILED' ELSE 'QUEUED' END,
             queued_at = CASE WHEN lease_expiries + 1 > $5 THEN queued_at ELSE $4 END,
             error = CASE WHEN lease_expiries + 1 > $5
                 THEN 'the lease expired ' || (lease_expiries + 1) || ' times (last held by node `' || $6 || '`): giving up'
                 ELSE 'the lease held by node `' || $6 || '` expired; requeued' END
         WHERE execution_id = $1 AND task_id = $2 AND attempt = $3 AND status = 'RUNNING' AND lease_expires_at < $4
         RETURNING attempt, status, error",
    )
    .bind(task.execution_id)
    .bind(&task.task_id)
    .bind(int(task.attempt))
    .bind(now)
    .bind(int(max_expiries))
    .bind(&owner)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let mut changes = Changes::default();
    let Some(row) = row else {
        return Ok(changes); // Another sweeper got there first, or the worker renewed in time.
    };
    end_attempt(conn, task, "EXPIRED", Some("the lease expired"), now).await?;
    let attempt = count(&row, "attempt")?;
    let error: Option<String> = get(&row, "error")?;
    if get::<String>(&row, "status")? == "FAILED" {
        changes.events.push(task_event(
            ex.id,
            &ex.definition_id,
            &task.task_id,
            attempt,
            TaskStatus::Failed,
            error,
            now,
        ));
        skip_dependents(conn, &ex, &task.task_id, now, &mut changes).await?;
    } else {
        queued(&ex, task.task_id.clone(), attempt, now, &mut changes);
    }
    finish_if_done(conn, &ex, now, &mut changes).await?;
    Ok(changes)
}

/// Re-announces QUEUED tasks older than `before` and RETRYING tasks due before it, in one
/// statement. `FOR UPDATE SKIP LOCKED` hands each row to one caller; stamping `queued_at`
/// keeps the next sweep from taking it again. The statement never waits on a lock, so it
/// cannot deadlock with the transitions.
pub(crate) async fn take_stale(
    pool: &PgPool,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Changes> {
    let rows = sqlx::query(
        "WITH stale AS (
             SELECT execution_id, task_id, status FROM naxos_tasks
             WHERE (status = 'QUEUED' AND queued_at < $1) OR (status = 'RETRYING' AND due_at < $1)
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), moved AS (
             UPDATE naxos_tasks t SET status = 'QUEUED', queued_at = $2, due_at = NULL
             FROM stale s WHERE t.execution_id = s.execution_id AND t.task_id = s.task_id
             RETURNING t.execution_id, t.task_id, t.attempt, s.status AS was
         )
         SELECT m.execution_id, m.task_id, m.attempt, m.was, e.definition_id
         FROM moved m JOIN naxos_executions e ON e.id = m.execution_id
         ORDER BY m.execution_id, m.task_id",
    )
    .bind(before)
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut changes = Changes::default();
    for row in &rows {
        let task = task_ref(row)?;
        if get::<String>(row, "was")? == "RETRYING" {
            let definition_id: String = get(row, "definition_id")?;
            changes.events.push(task_event(
                task.execution_id,
                &definition_id,
                &task.task_id,
                task.attempt,
                TaskStatus::Queued,
                None,
                now,
            ));
        }
        changes.ready.push(task);
    }
    Ok(changes)
}
