//! Definition versions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use naxos_core::backend::DefinitionPut;
use naxos_core::model::{DefinitionSummary, JobDefinition, StoredDefinition};
use naxos_core::{Error, Result};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};

use crate::codec::{count, get, int};
use crate::error::{corrupt, db};

/// The definition columns [`stored`] reads, in a SELECT list.
const COLUMNS: &str = "id, version, format, body, created_at";

/// Refuses a row written in a definition format newer than this build knows.
fn readable(row: &PgRow) -> Result<()> {
    let format = count(row, "format")?;
    if format <= JobDefinition::FORMAT {
        return Ok(());
    }
    let (id, version): (String, u32) = (get(row, "id")?, count(row, "version")?);
    Err(Error::newer_version(
        format!("job definition `{id}` version {version}"),
        format!("format {format}"),
        format!("format {}", JobDefinition::FORMAT),
    ))
}

fn stored(row: &PgRow) -> Result<Arc<StoredDefinition>> {
    readable(row)?;
    let body: Value = get(row, "body")?;
    let definition: JobDefinition =
        serde_json::from_value(body).map_err(|e| corrupt(format!("definition body: {e}")))?;
    Ok(Arc::new(StoredDefinition::new(
        count(row, "version")?,
        get(row, "created_at")?,
        definition,
    )))
}

/// Inserts the next version unless the latest has the same content. An advisory lock on the
/// id serializes concurrent registrations of one definition.
pub(crate) async fn put(
    conn: &mut PgConnection,
    definition: JobDefinition,
    now: DateTime<Utc>,
) -> Result<DefinitionPut> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('naxos_definitions:' || $1))")
        .bind(&definition.id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let latest = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM naxos_definitions WHERE id = $1 ORDER BY version DESC LIMIT 1"
    )))
    .bind(&definition.id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let version = match &latest {
        None => 1,
        // Written by a newer naxos in a format this one cannot read: it cannot be the same
        // content (a definition is written in the lowest format that carries it, and this
        // build's definitions all fit its own), so this registration is the next version.
        Some(row) if count(row, "format")? > JobDefinition::FORMAT => count(row, "version")? + 1,
        Some(row) => {
            let latest = stored(row)?;
            if latest.definition == definition {
                return Ok(DefinitionPut {
                    definition: latest,
                    created: false,
                });
            }
            latest.version + 1
        }
    };
    let body = serde_json::to_value(&definition).map_err(Error::permanent)?;
    sqlx::query(
        "INSERT INTO naxos_definitions (id, version, format, name, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&definition.id)
    .bind(int(version))
    .bind(int(definition.required_format()))
    .bind(&definition.name)
    .bind(&body)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(DefinitionPut {
        definition: Arc::new(StoredDefinition::new(version, now, definition)),
        created: true,
    })
}

pub(crate) async fn get_one(
    pool: impl sqlx::PgExecutor<'_>,
    id: &str,
    version: Option<u32>,
) -> Result<Arc<StoredDefinition>> {
    let row = match version {
        Some(v) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM naxos_definitions WHERE id = $1 AND version = $2"
            )))
            .bind(id)
            .bind(int(v))
            .fetch_optional(pool)
            .await
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM naxos_definitions WHERE id = $1 ORDER BY version DESC LIMIT 1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await
        }
    }
    .map_err(db)?;
    match row {
        Some(row) => stored(&row),
        None => Err(match version {
            None => Error::not_found("job definition", id),
            Some(v) => Error::not_found("job definition", format!("{id} version {v}")),
        }),
    }
}

/// The job timeout of execution `id`'s definition version (none for an unknown execution:
/// the transition then says `NotFound`).
pub(crate) async fn timeout_of(
    conn: &mut sqlx::PgConnection,
    id: naxos_core::model::ExecutionId,
) -> Result<Option<std::time::Duration>> {
    let ms: Option<i64> = sqlx::query_scalar(
        "SELECT (d.body ->> 'timeoutMs')::BIGINT FROM naxos_executions e
         JOIN naxos_definitions d ON d.id = e.definition_id AND d.version = e.definition_version
         WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .flatten();
    Ok(ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(std::time::Duration::from_millis))
}

/// Pauses or resumes definition `id` (`NotFound` when it has no version).
pub(crate) async fn set_paused(pool: &PgPool, id: &str, paused: bool, now: DateTime<Utc>) -> Result<()> {
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM naxos_definitions WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    if !known {
        return Err(Error::not_found("job definition", id));
    }
    let query = if paused {
        sqlx::query("INSERT INTO naxos_paused_definitions (id, paused_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now)
    } else {
        sqlx::query("DELETE FROM naxos_paused_definitions WHERE id = $1").bind(id)
    };
    query.execute(pool).await.map_err(db)?;
    Ok(())
}

/// The latest version of each of `ids` that has one (read on `conn`, in its transaction).
pub(crate) async fn latest(conn: &mut sqlx::PgConnection, ids: &[String]) -> Result<Vec<(String, u32)>> {
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT id, max(version) FROM naxos_definitions WHERE id = ANY($1) GROUP BY id")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|(id, v)| (id, u32::try_from(v).unwrap_or(0)))
        .collect())
}

pub(crate) async fn versions(pool: &PgPool, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM naxos_definitions WHERE id = $1 ORDER BY version"
    )))
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(db)?
    .iter()
    .map(stored)
    .collect()
}

pub(crate) async fn list(pool: &PgPool) -> Result<Vec<DefinitionSummary>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (id) id, name, version, created_at,
                (SELECT count(*) FROM jsonb_object_keys(body -> 'tasks'))::INTEGER AS task_count,
                EXISTS (SELECT 1 FROM naxos_paused_definitions p WHERE p.id = d.id) AS paused
         FROM naxos_definitions d ORDER BY id, version DESC",
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(DefinitionSummary {
                id: get(row, "id")?,
                name: get(row, "name")?,
                latest_version: count(row, "version")?,
                task_count: count(row, "task_count")? as usize,
                updated_at: get(row, "created_at")?,
                paused: get(row, "paused")?,
            })
        })
        .collect()
}
