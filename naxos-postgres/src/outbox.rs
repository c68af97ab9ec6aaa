//! Creating an execution in the caller's own transaction, and publishing it once committed.
//!
//! [`PgStore::execute_in`] writes the execution with schema-qualified names on the caller's
//! connection, plus a row in `naxos_outbox`, and queues a `NOTIFY` on the store's channel;
//! PostgreSQL delivers the notification only if the transaction commits. Every node's engine
//! listens ([`Store::unpublished_wakeup`](naxos_core::backend::Store::unpublished_wakeup)) and
//! then takes outbox rows with `DELETE … FOR UPDATE SKIP LOCKED`, so each execution is taken by
//! one node, and publishes its ready tasks. A crash between the caller's commit and that
//! publish leaves the row: the next sweep of any node takes it. A crash after the row was
//! taken and before the publish loses the message like any other: the stale-message sweep sends
//! it again. A delayed execution created so has nothing to publish: the node that takes it sets
//! a timer for its time (and any sweeper starts it if that node stops).

use chrono::{DateTime, Utc};
use naxos_core::backend::Changes;
use naxos_core::model::{ExecutionId, TaskRef};
use naxos_core::{ExecuteRequest, Result, Submitted};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};

use crate::codec::{get, priority, traceparent};
use crate::error::db;
use crate::executions::{create_on, starts_sub_jobs, Tables};
use crate::PgStore;

/// Takes up to `$1` outbox rows (each by one caller) and returns their executions' QUEUED tasks,
/// and the time of each that is delayed and not yet started (one row with no task).
const TAKE: &str = "
    WITH taken AS (
        DELETE FROM naxos_outbox WHERE execution_id IN (
            SELECT execution_id FROM naxos_outbox ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        RETURNING execution_id
    )
    SELECT e.id AS execution_id, t.task_id, t.attempt, e.traceparent, e.priority,
           CASE WHEN e.status = 'PENDING' AND e.start_time IS NULL THEN e.scheduled_for END AS scheduled_for
    FROM taken
    JOIN naxos_executions e ON e.id = taken.execution_id
    LEFT JOIN naxos_tasks t ON t.execution_id = taken.execution_id AND t.status = 'QUEUED'
    ORDER BY e.id, t.position";

impl PgStore {
    /// Creates an execution **inside the caller's transaction** (`conn`: e.g. `&mut *tx` of a
    /// `sqlx::Transaction` on the caller's own pool), so that it exists if and only if the
    /// caller's other writes commit. Its tasks start within milliseconds of the commit, on
    /// whichever node takes it first (exactly one does; see the module docs), and still start
    /// if every node was down at the commit. A rollback leaves nothing.
    ///
    /// The request is checked as [`Engine::submit`](naxos_core::Engine::submit) checks it; the
    /// definition is read through the store's own pool. Table names are qualified with the
    /// store's schema, so the caller's connection needs no `search_path`. The caller owns the
    /// transaction, and its retries. No status event announces the creation (the first is the
    /// task starting); the status and listing APIs show it at once after the commit.
    pub async fn execute_in(&self, conn: &mut PgConnection, request: ExecuteRequest) -> Result<Submitted> {
        let stored = naxos_core::backend::Store::get_definition(self, &request.definition_id, request.version).await?;
        let new = request.into_new(&stored)?;
        let schema = self.schema().await?;
        let now = self.now().await?;
        let created = self
            .within("create execution in the caller's transaction", async {
                // The children its first tasks start are created too, and may settle their
                // parents: statements that name the store's tables unqualified, so the
                // transaction's `search_path` is the store's schema meanwhile.
                let path = if starts_sub_jobs(&new) {
                    let old: String = sqlx::query_scalar("SELECT current_setting('search_path')")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db)?;
                    sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
                        .bind(schema)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                    Some(old)
                } else {
                    None
                };
                let created = create_on(conn, &Tables::Caller { schema }, new, now).await;
                if let Some(old) = path {
                    sqlx::query("SELECT set_config('search_path', $1, true)")
                        .bind(old)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                }
                let created = created?;
                if created.created {
                    sqlx::query("SELECT pg_notify($1, '')")
                        .bind(channel(schema))
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                }
                Ok(created)
            })
            .await?;
        Ok(Submitted {
            execution_id: created.execution_id,
            created: created.created,
            status: created.status,
            scheduled_for: created.changes.scheduled.first().map(|&(_, at)| at),
        })
    }
}

/// The channel the store's executions created in callers' transactions are announced on
/// (one per schema, so installations sharing a database do not wake each other).
pub(crate) fn channel(schema: &str) -> String {
    format!("naxos_outbox_{schema}")
}

/// See [`TAKE`].
pub(crate) async fn take(pool: &PgPool, limit: usize) -> Result<Changes> {
    let rows = sqlx::query(TAKE)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut changes = Changes::default();
    for row in &rows {
        let id: ExecutionId = get(row, "execution_id")?;
        if let Some(at) = get::<Option<DateTime<Utc>>>(row, "scheduled_for")? {
            changes.scheduled.push((id, at));
        }
        let Some(task_id) = row.try_get::<Option<String>, _>("task_id").map_err(db)? else {
            continue;
        };
        let attempt: i32 = get(row, "attempt")?;
        changes.ready.push(
            TaskRef::new(id, task_id, attempt as u32)
                .with_traceparent(traceparent(row)?)
                .with_priority(priority(row)?),
        );
    }
    Ok(changes)
}

/// A listener on the store's channel, connected on first use and again after an error.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    listener: tokio::sync::Mutex<Option<PgListener>>,
}

impl Wakeups {
    /// Returns at the next notification on `channel`, or at once after (re)connecting, since
    /// notifications sent while no connection listened are lost.
    pub(crate) async fn next(&self, pool: &PgPool, channel: &str) -> Result<()> {
        let mut listener = self.listener.lock().await;
        let Some(l) = listener.as_mut() else {
            let mut l = PgListener::connect_with(pool).await.map_err(db)?;
            l.listen(channel).await.map_err(db)?;
            *listener = Some(l);
            return Ok(());
        };
        match l.try_recv().await {
            Ok(Some(_)) => Ok(()),
            // The connection was lost: sqlx reconnects at the next call; look at the table now.
            Ok(None) => Ok(()),
            Err(e) => {
                *listener = None;
                Err(db(e))
            }
        }
    }
}
