//! Cron schedules: one row each in `naxos_schedules`; a tick's execution is created by the
//! statement that moves the schedule's cursor (`executions::insert` with a tick).

use chrono::{DateTime, Utc};
use naxos_core::backend::{Fired, NewExecution, ScheduleTick};
use naxos_core::model::{CatchUp, Schedule, SchedulePut, StoredSchedule};
use naxos_core::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};

use crate::codec::{get, jsonb};
use crate::error::{corrupt, db};
use crate::executions::{self, Tick};

/// The columns [`stored`] reads, in a SELECT list.
const COLUMNS: &str = "id, definition_id, cron, timezone, params, catch_up, paused, created_at, updated_at, last_tick";

fn stored(row: &PgRow) -> Result<StoredSchedule> {
    let catch_up: String = get(row, "catch_up")?;
    Ok(StoredSchedule {
        schedule: Schedule {
            id: get(row, "id")?,
            definition_id: get(row, "definition_id")?,
            cron: get(row, "cron")?,
            timezone: get(row, "timezone")?,
            params: get(row, "params")?,
            catch_up: CatchUp::parse(&catch_up).ok_or_else(|| corrupt(format!("schedule catch_up `{catch_up}`")))?,
            paused: get(row, "paused")?,
        },
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        last_tick: get(row, "last_tick")?,
    })
}

fn not_found(id: &str) -> Error {
    Error::not_found("schedule", id)
}

/// Writes a schedule's row, inserting or replacing it.
async fn write(conn: &mut PgConnection, s: &StoredSchedule) -> Result<()> {
    let spec = &s.schedule;
    sqlx::query(
        "INSERT INTO naxos_schedules
             (id, definition_id, cron, timezone, params, catch_up, paused, created_at, updated_at, last_tick)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET definition_id = $2, cron = $3, timezone = $4, params = $5, catch_up = $6,
             paused = $7, created_at = $8, updated_at = $9, last_tick = $10",
    )
    .bind(&spec.id)
    .bind(&spec.definition_id)
    .bind(&spec.cron)
    .bind(&spec.timezone)
    .bind(jsonb(&spec.params))
    .bind(spec.catch_up.as_str())
    .bind(spec.paused)
    .bind(s.created_at)
    .bind(s.updated_at)
    .bind(s.last_tick)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// The schedule's row, locked for the transaction.
async fn locked(conn: &mut PgConnection, id: &str) -> Result<Option<StoredSchedule>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM naxos_schedules WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .map(|row| stored(&row))
    .transpose()
}

/// Creates, confirms or replaces a schedule. An advisory lock on the id serializes concurrent
/// puts of one schedule (a row lock cannot, before the row exists).
pub(crate) async fn put(conn: &mut PgConnection, schedule: Schedule, now: DateTime<Utc>) -> Result<SchedulePut> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('naxos_schedules:' || $1))")
        .bind(&schedule.id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let put = SchedulePut::of(locked(conn, &schedule.id).await?, schedule, now);
    if put.changed() {
        write(conn, &put.schedule).await?;
    }
    Ok(put)
}

pub(crate) async fn get_one(pool: &PgPool, id: &str) -> Result<StoredSchedule> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM naxos_schedules WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or_else(|| not_found(id))?;
    stored(&row)
}

pub(crate) async fn list(pool: &PgPool) -> Result<Vec<StoredSchedule>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM naxos_schedules ORDER BY id"
    )))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(stored).collect()
}

pub(crate) async fn delete(pool: &PgPool, id: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM naxos_schedules WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(db)?;
    match done.rows_affected() {
        0 => Err(not_found(id)),
        _ => Ok(()),
    }
}

pub(crate) async fn set_paused(
    conn: &mut PgConnection,
    id: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<StoredSchedule> {
    let schedule = locked(conn, id).await?.ok_or_else(|| not_found(id))?;
    match schedule.set_paused(paused, now) {
        None => Ok(schedule),
        Some(changed) => {
            write(conn, &changed).await?;
            Ok(changed)
        }
    }
}

pub(crate) async fn skip(pool: &PgPool, id: &str, through: DateTime<Utc>) -> Result<()> {
    let done = sqlx::query("UPDATE naxos_schedules SET last_tick = GREATEST(last_tick, $2) WHERE id = $1")
        .bind(id)
        .bind(through)
        .execute(pool)
        .await
        .map_err(db)?;
    match done.rows_affected() {
        0 => Err(not_found(id)),
        _ => Ok(()),
    }
}

/// Fires a tick in one statement (see `executions::insert`); when it created nothing, says
/// why from the schedule as it now stands.
pub(crate) async fn fire(pool: &PgPool, tick: &ScheduleTick, new: NewExecution, now: DateTime<Utc>) -> Result<Fired> {
    let gate = Tick {
        schedule_id: &tick.schedule_id,
        at: tick.at,
    };
    let created = if executions::starts_sub_jobs(&new) {
        // Several statements: the execution and the children its first tasks start.
        crate::transaction!(pool, |tx| {
            let gate = Tick {
                schedule_id: &tick.schedule_id,
                at: tick.at,
            };
            match executions::insert(&mut tx, &executions::Tables::Own, new.clone(), now, Some(gate)).await? {
                Some((mut created, state)) => {
                    crate::apply::family(
                        &mut tx,
                        &executions::Tables::Own,
                        &state,
                        false,
                        &mut created.changes,
                        now,
                    )
                    .await?;
                    Ok(Some(created))
                }
                None => Ok(None),
            }
        })?
    } else {
        let mut conn = pool.acquire().await.map_err(db)?;
        let created = executions::insert(&mut conn, &executions::Tables::Own, new, now, Some(gate)).await?;
        created.map(|(created, _)| created)
    };
    if let Some(created) = created {
        return Ok(Fired::Created(Box::new(created)));
    }
    let schedule = get_one(pool, &tick.schedule_id).await?;
    Ok(Fired::refused(&schedule, tick).unwrap_or(Fired::Taken))
}
