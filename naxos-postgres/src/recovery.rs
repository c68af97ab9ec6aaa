//! The recovery scans, safe to run from every node at once. Each finds candidate executions
//! without locks, then applies naxos-core's state function to each under its row lock (which
//! re-checks every condition: still RUNNING and expired, still QUEUED and old), so a task is
//! recovered by exactly one sweeper, and a heartbeat that landed in between wins.

use std::time::Duration;

use chrono::{DateTime, Utc};
use naxos_core::backend::Changes;
use naxos_core::model::{BlockedBy, ExecutionId};
use naxos_core::Result;
use sqlx::PgPool;

use naxos_core::clock::before;
use naxos_core::state::{ExecutionState, MAX_DOUBLINGS};

use crate::apply::{family, load, write_back};
use crate::error::db;
use crate::transaction;

/// Recovers RUNNING tasks whose lease ran out, the executions with the oldest expiry first.
pub(crate) async fn recover_expired(
    pool: &PgPool,
    now: DateTime<Utc>,
    max_expiries: u32,
    limit: usize,
) -> Result<Changes> {
    let candidates: Vec<ExecutionId> = sqlx::query_scalar(
        "SELECT execution_id FROM (
             SELECT execution_id, min(lease_expires_at) AS oldest FROM (
                 SELECT execution_id, lease_expires_at FROM naxos_tasks
                 WHERE status = 'RUNNING' AND lease_expires_at < $1
                 ORDER BY lease_expires_at LIMIT $2
             ) expired GROUP BY execution_id
         ) e ORDER BY oldest",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    sweep(pool, candidates, limit, now, |s, budget| {
        s.recover_expired(now, max_expiries, budget)
    })
    .await
}

/// Takes over QUEUED tasks waiting longer than `older_than` (doubled per republish: see
/// [`naxos_core::state::republish_wait`]) and RETRYING tasks due that long ago. Stamping `queued_at` keeps the next
/// sweep from taking a task twice.
pub(crate) async fn take_stale(
    pool: &PgPool,
    older_than: Duration,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Changes> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let candidates: Vec<ExecutionId> = sqlx::query_scalar(
        "SELECT DISTINCT execution_id FROM (
             SELECT execution_id FROM naxos_tasks
             WHERE status = 'QUEUED' AND queued_at < $1 AND blocked_by IS NULL
               AND queued_at < $2 - make_interval(secs => $3 * power(2, least(republished, $4)) / 1000.0)
             UNION ALL
             SELECT execution_id FROM naxos_tasks WHERE status = 'RETRYING' AND due_at < $1
             UNION ALL
             SELECT execution_id FROM naxos_tasks
             WHERE status = 'QUEUED' AND blocked_by = 'rateLimit' AND due_at < $1
             LIMIT $5
         ) stale ORDER BY execution_id",
    )
    .bind(before(now, older_than))
    .bind(now)
    .bind(ms(older_than) as f64)
    .bind(MAX_DOUBLINGS as i32)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    sweep(pool, candidates, limit, now, |s, budget| {
        s.take_stale(older_than, now, budget)
    })
    .await
}

/// Wakes WAITING tasks whose due time has passed (sleeps ended, waits timed out) and starts the
/// delayed executions whose time has come, the executions with the earliest due time first.
/// Each kind is found through its partial index (migrations 0010 and 0012).
pub(crate) async fn wake_due(pool: &PgPool, now: DateTime<Utc>, limit: usize) -> Result<Changes> {
    let candidates: Vec<ExecutionId> = sqlx::query_scalar(
        "SELECT execution_id FROM (
             SELECT execution_id, min(due_at) AS first FROM (
                 SELECT execution_id, due_at FROM naxos_tasks
                 WHERE status = 'WAITING' AND due_at <= $1
                 ORDER BY due_at LIMIT $2
             ) due GROUP BY execution_id
             UNION ALL
             (SELECT id, scheduled_for FROM naxos_executions
              WHERE status = 'PENDING' AND start_time IS NULL AND scheduled_for IS NOT NULL AND scheduled_for <= $1
              ORDER BY scheduled_for LIMIT $2)
         ) e ORDER BY first LIMIT $2",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    sweep(pool, candidates, limit, now, |s, budget| s.wake_due(now, budget)).await
}

/// Admits the tasks a pause blocked, in executions whose definition is no longer paused, the
/// execution whose task waited longest first (through the partial index of migration 0014:
/// blocked tasks only).
pub(crate) async fn admit_blocked(pool: &PgPool, now: DateTime<Utc>, limit: usize) -> Result<Changes> {
    let candidates: Vec<ExecutionId> = sqlx::query_scalar(
        "SELECT t.execution_id FROM naxos_tasks t JOIN naxos_executions e ON e.id = t.execution_id
         WHERE t.blocked_by = 'paused'
           AND NOT EXISTS (SELECT 1 FROM naxos_paused_definitions p WHERE p.id = e.definition_id)
         GROUP BY t.execution_id ORDER BY min(t.queued_at) LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    sweep(pool, candidates, limit, now, |s, budget| {
        if !s.blocked(BlockedBy::Paused) {
            return Changes::default();
        }
        *budget -= 1;
        s.unblock(BlockedBy::Paused, now)
    })
    .await
}

/// Applies `scan` to each candidate execution in its own transaction, under its row lock, until
/// `limit` tasks were taken. An execution another transaction holds is skipped (`SKIP LOCKED`):
/// its transition is under way, and the next sweep looks again; so is one pruned meanwhile.
/// The family of each execution changed is walked in its transaction (`apply::family`).
async fn sweep(
    pool: &PgPool,
    candidates: Vec<ExecutionId>,
    limit: usize,
    now: DateTime<Utc>,
    scan: impl Fn(&mut ExecutionState, &mut usize) -> Changes,
) -> Result<Changes> {
    let mut changes = Changes::default();
    let mut budget = limit;
    for id in candidates {
        if budget == 0 {
            break;
        }
        let (taken, left) = transaction!(pool, |tx| {
            let Some(mut state) = load(&mut tx, id, true).await? else {
                return Ok((Changes::default(), budget));
            };
            let before = state.clone();
            let mut left = budget;
            let mut taken = scan(&mut state, &mut left);
            write_back(&mut tx, &before, &state).await?;
            family(
                &mut tx,
                &crate::executions::Tables::Own,
                &state,
                before.is_finished(),
                &mut taken,
                now,
            )
            .await?;
            crate::slots::lock_freed(&mut tx, &taken).await?;
            Ok((taken, left))
        })?;
        budget = left;
        changes.extend(taken);
    }
    Ok(changes)
}
