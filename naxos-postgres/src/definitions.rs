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

fn stored(row: &PgRow) -> Result<Arc<StoredDefinition>> {
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
    let latest = sqlx::query(
        "SELECT version, body, created_at FROM naxos_definitions WHERE id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(&definition.id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let latest = latest.as_ref().map(stored).transpose()?;
    if let Some(latest) = latest.as_ref().filter(|l| l.definition == definition) {
        return Ok(DefinitionPut {
            definition: latest.clone(),
            created: false,
        });
    }
    let version = latest.map_or(1, |l| l.version + 1);
    let body = serde_json::to_value(&definition).map_err(Error::permanent)?;
    sqlx::query("INSERT INTO naxos_definitions (id, version, name, body, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&definition.id)
        .bind(int(version))
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

pub(crate) async fn get_one(pool: &PgPool, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
    let row =
        match version {
            Some(v) => {
                sqlx::query("SELECT version, body, created_at FROM naxos_definitions WHERE id = $1 AND version = $2")
                    .bind(id)
                    .bind(int(v))
                    .fetch_optional(pool)
                    .await
            }
            None => sqlx::query(
                "SELECT version, body, created_at FROM naxos_definitions WHERE id = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await,
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

pub(crate) async fn versions(pool: &PgPool, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
    sqlx::query("SELECT version, body, created_at FROM naxos_definitions WHERE id = $1 ORDER BY version")
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
                (SELECT count(*) FROM jsonb_object_keys(body -> 'tasks'))::INTEGER AS task_count
         FROM naxos_definitions ORDER BY id, version DESC",
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
            })
        })
        .collect()
}
