//! Concurrency slots (naxos-core's `state/concurrency.rs`) on PostgreSQL. The holders and the
//! waiters of a scope are task rows (migration 0015): `holds_slot`, and `blocked_by =
//! 'concurrency'`, both by `slot`. A transaction that counts a scope's holders — a claim that
//! needs a slot, an admission — first takes the scope's advisory lock, after its execution's
//! row lock: the one order, so that no two wait on each other in a cycle, and two claims of one
//! scope never both count the last free slot.

use chrono::{DateTime, Utc};
use naxos_core::backend::{Changes, ClaimRequest};
use naxos_core::model::ExecutionId;
use naxos_core::state::{Admitted, RateVerdict, Transitioned};
use naxos_core::{Error, Result};
use sqlx::{PgConnection, PgPool};

use crate::apply::{apply_loaded, load};
use crate::error::db;
use crate::time::StoreClock;
use crate::{rates, transaction};

/// The most runs one admission of a scope admits or skips before it leaves the rest to the
/// next (a guard: each is one transaction).
const MAX_ADMISSIONS: usize = 1_000;

/// Takes the advisory lock of `scope` until the end of the transaction.
async fn lock_scope(conn: &mut PgConnection, scope: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(scope)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Takes the advisory locks of the scopes whose slots `ch` frees (sorted: the one order among
/// them), as the last step of the transaction that frees them, after every row lock it takes.
///
/// A claim that found such a scope full and is blocking its run holds that lock until it
/// commits: this commit then waits for the claim's, so that the admission after it
/// ([`admit_freed`]) finds the run the claim blocked. Without it, the admission could read
/// before that commit, find no one waiting, and leave the run to the sweeper's
/// [`admit_blocked`](naxos_core::backend::Store::admit_blocked) while a slot stood free. A claim
/// that takes the lock after this commit counts the freed slot instead.
pub(crate) async fn lock_freed(conn: &mut PgConnection, ch: &Changes) -> Result<()> {
    let mut scopes: Vec<&str> = ch.freed_slots.iter().map(String::as_str).collect();
    scopes.sort_unstable();
    scopes.dedup();
    for scope in scopes {
        lock_scope(conn, scope).await?;
    }
    Ok(())
}

/// How many runs hold a slot of `scope` (under its lock).
async fn held(conn: &mut PgConnection, scope: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM naxos_tasks WHERE slot = $1 AND holds_slot")
        .bind(scope)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)
}

/// Whether a claim finds a slot of `scope` (of `limit`) free: fewer than `limit` held and none
/// waiting. Takes the scope's lock, so the answer holds until the commit.
async fn free(conn: &mut PgConnection, scope: &str, limit: u32) -> Result<bool> {
    lock_scope(conn, scope).await?;
    let waiting: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM naxos_tasks WHERE slot = $1 AND blocked_by = 'concurrency' AND status = 'QUEUED')")
            .bind(scope)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
    Ok(!waiting && held(conn, scope).await? < i64::from(limit))
}

/// The claim of the general path, in the caller's transaction: the task is claimed, or blocked
/// because its definition is paused (`paused`, as the claim statement read it), its rate limit
/// books it a later turn, or no slot of its concurrency limit is free. Each limit is read (and
/// locked) only when the ones before it let the claim go on, as the state module asks them.
///
/// `now` is the time the claim is made at; a claim that waits for a rate limit's row, or counts
/// a concurrency scope, reads the time again through `clock` once it holds the row or the
/// scope's lock, so that the starts a window records, and a run's start against the end of the
/// run whose slot it takes, are in the order they happened (on the transaction's own connection: one that waits on a lock never
/// takes a second from the pool).
pub(crate) async fn claim(
    conn: &mut PgConnection,
    request: &ClaimRequest,
    paused: bool,
    mut now: DateTime<Utc>,
    clock: &StoreClock,
) -> Result<Admitted> {
    let id = request.task.execution_id;
    let state = load(conn, id, false)
        .await?
        .ok_or_else(|| Error::not_found("execution", id))?;
    let mut rate = None;
    if let Some((scope, limit, booked)) = state.rate_wanted(&request.task).filter(|_| !paused) {
        let window = rates::lock(conn, scope).await?;
        now = now.max(clock.now_on(conn).await?);
        let (verdict, window) = window.decide(limit, booked, now);
        rate = Some((scope.to_string(), verdict, window));
    }
    let starts = rate.as_ref().is_none_or(|(_, v, _)| *v == RateVerdict::Start);
    let slot_free = match state.slot_wanted(&request.task) {
        Some((scope, limit)) if !paused && starts => {
            let free = free(conn, scope, limit).await?;
            // The run starts once the scope's lock is had, which may be after a finish that
            // held it has committed: its start time must not come before that finish's end
            // (the attempts' times are how anyone checks a limit), so the time is read again.
            now = now.max(clock.now_on(conn).await?);
            free
        }
        _ => false,
    };
    let verdict = rate.as_ref().map_or(RateVerdict::Start, |(_, v, _)| *v);
    let admitted = apply_loaded(conn, state, now, |s| {
        s.claim_admitted(request, |_| paused, |_, _, _| verdict, |_, _| slot_free, now)
    })
    .await?;
    if let Some((scope, _, window)) = rate.filter(|_| admitted.keeps_rate_window()) {
        rates::save(conn, &scope, &window).await?;
    }
    let mut admitted = admitted;
    if let Some(ch) = admitted.changes_mut() {
        lock_freed(conn, ch).await?;
    }
    Ok(admitted)
}

/// After the commit of a transition: gives back the rate-limit turns it released
/// (`ch.released_turns`, emptied), and admits the runs waiting for each scope of the slots it
/// freed (`ch.freed_slots`, emptied), the highest priority then the oldest first, while a slot is free, one transaction each;
/// what that changed is added to `ch`.
pub(crate) async fn admit_freed(pool: &PgPool, ch: &mut Changes, now: DateTime<Utc>) -> Result<()> {
    if !ch.released_turns.is_empty() {
        rates::release(pool, std::mem::take(&mut ch.released_turns)).await?;
    }
    let mut freed = std::mem::take(&mut ch.freed_slots);
    freed.sort_unstable();
    freed.dedup();
    for scope in freed {
        admit_scope(pool, &scope, now, ch).await?;
    }
    Ok(())
}

/// Admits the runs waiting for `scope`, the highest priority then the oldest first, while a slot
/// of it is free.
pub(crate) async fn admit_scope(pool: &PgPool, scope: &str, now: DateTime<Utc>, ch: &mut Changes) -> Result<()> {
    for _ in 0..MAX_ADMISSIONS {
        let head: Option<(ExecutionId, String)> = sqlx::query_as(
            "SELECT execution_id, task_id FROM naxos_tasks
             WHERE slot = $1 AND blocked_by = 'concurrency' AND status = 'QUEUED'
             ORDER BY priority DESC, queued_at, execution_id, task_id LIMIT 1",
        )
        .bind(scope)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
        let Some((id, task_id)) = head else {
            return Ok(());
        };
        let admitted: Option<Changes> = transaction!(pool, |tx| {
            let Some(state) = load(&mut tx, id, false).await? else {
                return Ok(Some(Changes::default()));
            };
            // It may have stopped waiting since it was read: then the next one.
            let Some(limit) = state.waiting_for_slot(&task_id).map(|(_, limit)| limit) else {
                return Ok(Some(Changes::default()));
            };
            lock_scope(&mut tx, scope).await?;
            if held(&mut tx, scope).await? >= i64::from(limit) {
                return Ok(None);
            }
            apply_loaded(&mut tx, state, now, |s| {
                Ok(s.admit_slot(&task_id, now).unwrap_or_default())
            })
            .await
            .map(Some)
        })?;
        match admitted {
            Some(changes) => ch.extend(changes),
            // Every slot is held: the transition that frees one admits the next.
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Scopes with runs waiting for a slot, up to `limit` of them (the sweeper admits what it can).
pub(crate) async fn waiting_scopes(pool: &PgPool, limit: usize) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT slot FROM naxos_tasks WHERE blocked_by = 'concurrency' AND status = 'QUEUED' LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db)
}
