//! Creating, reading and listing executions; counts, nodes, pruning.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use naxos_core::backend::{Changes, Created, ExecutionPage, ExecutionQuery, NewExecution, StoreCounts};
use naxos_core::model::{Execution, ExecutionId, ExpiryClass, NodeInfo, RetentionDefaults, TaskRun};
use naxos_core::state::ExecutionState;
use naxos_core::{Error, Result};
use serde_json::{json, Value};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection, PgPool};

use crate::codec::{
    attempt, count, execution_status, execution_summary, get, int, jsonb, level, task_run, ATTEMPT_COLUMNS,
    EXECUTION_COLUMNS, TASK_COLUMNS,
};
use crate::error::db;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1_000;

/// Inserts the execution and all its task rows in one statement (so one round trip and one
/// commit; the tasks' foreign key is checked at the statement's end, after both inserts), if
/// the CTE `gate` gives a row. An idempotency key already used for the definition makes the
/// INSERT do nothing (the UNIQUE constraint decides, so two racing requests cannot both
/// create), and the existing execution is returned. `$10` and `$11` are the schedule and tick
/// that start it, if any; `$17` and `$18` its definition's own retention periods (ms), if any;
/// `$19` the time a delayed execution starts at; `$20`–`$23` the parent task of a child a
/// sub-job started; `$24` the attempt records a creation starts (a root sub-job's); `$25` its
/// priority (on the execution, and on each task row for the admission order of limits). `t` prefixes the table names (a schema, see [`Tables`]); `outbox`
/// is an extra CTE (see [`outbox`]). The execution is created as the state module left it:
/// PENDING, or already finished when the `when` conditions of its roots left nothing to run
/// (its tasks then carry their errors and end times).
fn create_sql(gate: &str, t: &str, outbox: &str) -> String {
    let (columns, values, types) = (TASK_COLUMNS_IN, TASK_VALUES, TASK_ROW_TYPES);
    format!(
        "
    WITH gate AS ({gate}), execution AS (
        INSERT INTO {t}naxos_executions
            (id, definition_id, definition_version, status, params, idempotency_key, deadline, created_at, updated_at,
             traceparent, schedule_id, schedule_tick, plain, error, end_time, start_time, retention_completed_ms,
             retention_failed_ms, scheduled_for, parent_execution_id, parent_task_id, parent_attempt, parent_depth,
             priority)
        SELECT $1, $2, $3, $12, $4, $5, $6, $7, $7, $9, $10, $11, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
               $23, $25 FROM gate
        ON CONFLICT (definition_id, idempotency_key) DO NOTHING
        RETURNING id
    ), tasks AS (
        INSERT INTO {t}naxos_tasks (execution_id, {columns}, priority)
        SELECT e.id, {values}, $25
        FROM execution e, jsonb_to_recordset($8) AS r({types})
    ), attempts AS (
        -- A root sub-job starts its first attempt at the creation.
        INSERT INTO {t}naxos_attempts (execution_id, task_id, attempt, node, started_at)
        SELECT e.id, r.task_id, r.attempt, r.node, r.started_at
        FROM execution e, jsonb_to_recordset($24) AS r(task_id TEXT, attempt INTEGER, node TEXT,
             started_at TIMESTAMPTZ)
    ){outbox}
    SELECT id FROM execution"
    )
}

/// The task-row columns a creation inserts from the rows [`prepare`] builds (besides the
/// execution's id and priority), the values it reads for them from the recordset `r`, and the
/// recordset's column types: one list for the single creation and the batch (`batch.rs`).
pub(crate) const TASK_COLUMNS_IN: &str = "task_id, position, name, function_name, status, dependencies, \
    dependents, remaining, attempt, attempts, queued_at, plan, error, end_time, due_at, start_time, output, slot, rate";
/// See [`TASK_COLUMNS_IN`]. An output comes in a one-element array (`-> 0`), so that an output
/// `null` is not read as SQL NULL.
pub(crate) const TASK_VALUES: &str = "r.task_id, r.position, r.name, r.function_name, r.status, r.dependencies, \
    r.dependents, r.remaining, r.attempt, r.attempts, r.queued_at, r.plan, r.error, r.end_time, r.due_at, \
    r.start_time, r.output -> 0, r.slot, r.rate";
/// See [`TASK_COLUMNS_IN`].
pub(crate) const TASK_ROW_TYPES: &str = "task_id TEXT, position INTEGER, name TEXT, function_name TEXT, \
    status TEXT, dependencies TEXT[], dependents TEXT[], remaining INTEGER, attempt INTEGER, attempts INTEGER, \
    queued_at TIMESTAMPTZ, plan JSONB, error TEXT, end_time TIMESTAMPTZ, due_at TIMESTAMPTZ, \
    start_time TIMESTAMPTZ, output JSONB, slot TEXT, rate TEXT";

/// A plain creation: the gate always opens.
static CREATE: LazyLock<String> = LazyLock::new(|| create_sql("SELECT 1", "", ""));

/// A schedule's tick: the gate is the move of the schedule's cursor to the tick, which only a
/// schedule that is not paused and has not passed the tick allows. The UPDATE locks the
/// schedule's row, so a racing fire of the same tick waits, then sees the cursor at the tick
/// and creates nothing.
static FIRE: LazyLock<String> = LazyLock::new(|| {
    create_sql(
        "UPDATE naxos_schedules SET last_tick = $11 WHERE id = $10 AND NOT paused AND last_tick < $11 RETURNING 1",
        "",
        "",
    )
});

/// The execution a schedule's tick starts, for [`insert`].
pub(crate) struct Tick<'a> {
    pub(crate) schedule_id: &'a str,
    pub(crate) at: DateTime<Utc>,
}

/// The outbox row of an execution created in a caller's transaction (see `outbox.rs`), in the
/// tables prefixed by `t`.
fn outbox(t: &str) -> String {
    format!(
        ", outbox AS (
        INSERT INTO {t}naxos_outbox (execution_id, created_at) SELECT id, $7 FROM execution
    )"
    )
}

/// Which tables a creation writes: the store's own (its connections' `search_path` names the
/// schema), or schema-qualified ones on a caller's connection, with an outbox row.
pub(crate) enum Tables<'a> {
    /// Unqualified names, on the store's pool.
    Own,
    /// Names in `schema`, and the execution's outbox row.
    Caller {
        /// The store's schema.
        schema: &'a str,
    },
}

impl Tables<'_> {
    /// The prefix of the table names.
    fn prefix(&self) -> String {
        match self {
            Tables::Own => String::new(),
            Tables::Caller { schema } => format!("\"{schema}\"."),
        }
    }

    fn create(&self) -> Cow<'static, str> {
        match self {
            Tables::Own => Cow::Borrowed(CREATE.as_str()),
            Tables::Caller { .. } => Cow::Owned(create_sql("SELECT 1", &self.prefix(), &outbox(&self.prefix()))),
        }
    }

    fn existing(&self) -> String {
        format!(
            "SELECT id, status FROM {}naxos_executions WHERE definition_id = $1 AND idempotency_key = $2",
            self.prefix()
        )
    }
}

pub(crate) async fn create(pool: &PgPool, new: NewExecution, now: DateTime<Utc>) -> Result<Created> {
    if starts_sub_jobs(&new) {
        // Several statements: the execution and the children its first tasks start.
        return crate::transaction!(pool, |tx| create_on(&mut tx, &Tables::Own, new.clone(), now).await);
    }
    let mut conn = pool.acquire().await.map_err(db)?;
    create_on(&mut conn, &Tables::Own, new, now).await
}

/// Creates the execution on `conn` (which may be in a transaction) in `tables`.
pub(crate) async fn create_on(
    conn: &mut PgConnection,
    tables: &Tables<'_>,
    new: NewExecution,
    now: DateTime<Utc>,
) -> Result<Created> {
    let (definition_id, key) = (new.definition_id.clone(), new.idempotency_key.clone());
    if let Some((mut created, state)) = insert(conn, tables, new, now, None).await? {
        crate::apply::family(conn, tables, &state, false, &mut created.changes, now).await?;
        return Ok(created);
    }
    existing(conn, tables, &definition_id, key.as_deref()).await
}

/// The execution of `definition_id` that idempotency key `key` created, as a creation that
/// found it returns it.
pub(crate) async fn existing(
    conn: &mut PgConnection,
    tables: &Tables<'_>,
    definition_id: &str,
    key: Option<&str>,
) -> Result<Created> {
    let existing = sqlx::query(sqlx::AssertSqlSafe(tables.existing()))
        .bind(definition_id)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(Created {
        execution_id: get(&existing, "id")?,
        created: false,
        status: execution_status(&get::<String>(&existing, "status")?)?,
        changes: Changes::default(),
    })
}

/// True when creating `new` may start a sub-job at once (a root task is one), so that the
/// creation must be a transaction of several statements (the children are created in it).
pub(crate) fn starts_sub_jobs(new: &NewExecution) -> bool {
    new.tasks
        .iter()
        .any(|t| t.plan.sub_job.is_some() && t.dependencies.is_empty())
}

/// An execution as the state module creates it, with what its INSERT binds.
pub(crate) struct Prepared {
    /// The execution after its creation.
    pub(crate) state: ExecutionState,
    /// What the creation changed.
    pub(crate) changes: Changes,
    /// Its task rows, a JSON array for `jsonb_to_recordset`.
    pub(crate) rows: Value,
    /// The attempt records the creation starts (a root sub-job's), a JSON array.
    pub(crate) attempts: Value,
    /// True when only the hot paths need touch it (no task with a plan, no parent).
    pub(crate) plain: bool,
    /// Its definition's own retention periods (ms), if any: completed, failed.
    pub(crate) retention: (Option<i64>, Option<i64>),
}

/// Creates `new` in the state module, its sub-jobs pinned to the latest versions (read on
/// `conn`), and its rows for the INSERT.
pub(crate) async fn prepare(conn: &mut PgConnection, mut new: NewExecution, now: DateTime<Utc>) -> Result<Prepared> {
    let unpinned = new.unpinned_sub_jobs();
    if !unpinned.is_empty() {
        let latest = crate::definitions::latest(conn, &unpinned).await?;
        new.pin_sub_jobs(|id| latest.iter().find(|(d, _)| d == id).map(|&(_, v)| v));
    }
    let retention = new.retention.unwrap_or_default();
    let ms = |ms: Option<u64>| ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    let mut dependents: Vec<Vec<String>> = new.tasks.iter().map(|t| t.dependents.clone()).collect();
    let (state, changes) = ExecutionState::create(new, now)?;
    // A root fan-out's instances, after the definition's tasks, have no dependents.
    dependents.resize(state.tasks().len(), Vec::new());
    let rows: Vec<Value> = state
        .tasks()
        .iter()
        .zip(dependents)
        .enumerate()
        .map(|(position, (t, dependents))| {
            json!({
                "task_id": t.task_id,
                "position": position,
                "name": t.name,
                "function_name": t.function_name,
                "status": t.status.as_str(),
                "dependencies": t.dependencies,
                "dependents": dependents,
                "remaining": t.remaining_dependencies,
                "attempt": t.attempt,
                "attempts": t.attempts,
                "queued_at": t.queued_at,
                "plan": (!t.plan.is_plain()).then_some(&t.plan),
                "error": t.error,
                "end_time": t.end_time,
                "due_at": t.due_at,
                "start_time": t.start_time,
                // In a one-element array, so that an output `null` is not read as SQL NULL.
                "output": state.output(position).map(|o| [&**o]),
                "slot": t.slot,
                "rate": t.rate,
            })
        })
        .collect();
    let attempts: Vec<Value> = changes
        .history
        .iter()
        .map(|h| json!({"task_id": h.task_id, "attempt": h.record.attempt, "node": &*h.record.node, "started_at": h.record.started_at}))
        .collect();
    // A child's end settles its parent, which only the general path does.
    let plain = state.tasks().iter().all(|t| t.plan.is_plain()) && state.summary().parent.is_none();
    Ok(Prepared {
        state,
        changes,
        rows: Value::Array(rows),
        attempts: Value::Array(attempts),
        plain,
        retention: (ms(retention.completed_ms), ms(retention.failed_ms)),
    })
}

/// Inserts the execution in `tables` (for a schedule's `tick`, through its gate, in the
/// store's own tables), its sub-jobs pinned to the latest versions; `None` when nothing was
/// inserted (a used idempotency key, or a tick the gate refused). The family of what it
/// started is the caller's to walk (`apply::family`), with the state returned.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    tables: &Tables<'_>,
    mut new: NewExecution,
    now: DateTime<Utc>,
    tick: Option<Tick<'_>>,
) -> Result<Option<(Created, ExecutionState)>> {
    new.schedule_id = tick.as_ref().map(|t| t.schedule_id.to_string());
    let Prepared {
        state,
        changes,
        rows,
        attempts,
        plain,
        retention,
    } = prepare(conn, new, now).await?;
    let s = state.summary();
    let sql = if tick.is_some() {
        Cow::Borrowed(FIRE.as_str())
    } else {
        tables.create()
    };
    let inserted: Option<ExecutionId> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(s.id)
        .bind(&s.definition_id)
        .bind(int(s.definition_version))
        .bind(jsonb(state.params()))
        .bind(&s.idempotency_key)
        .bind(s.deadline)
        .bind(s.created_at)
        .bind(rows)
        .bind(s.traceparent.map(|t| t.to_string()))
        .bind(&s.schedule_id)
        .bind(tick.map(|t| t.at))
        .bind(s.status.as_str())
        .bind(plain)
        .bind(&s.error)
        .bind(s.end_time)
        .bind(s.start_time)
        .bind(retention.0)
        .bind(retention.1)
        .bind(s.scheduled_for)
        .bind(s.parent.as_ref().map(|p| p.execution_id))
        .bind(s.parent.as_ref().map(|p| p.task_id.as_str()))
        .bind(s.parent.as_ref().map(|p| int(p.attempt)))
        .bind(s.parent.as_ref().map(|p| int(p.depth)))
        .bind(attempts)
        .bind(level(s.priority))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let created = Created {
        execution_id: s.id,
        created: true,
        status: s.status,
        changes,
    };
    Ok(inserted.map(|_| (created, state)))
}

pub(crate) async fn get_one(pool: &PgPool, id: ExecutionId) -> Result<Execution> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EXECUTION_COLUMNS}, params FROM naxos_executions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::not_found("execution", id))?;
    let tasks = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM naxos_tasks WHERE execution_id = $1 ORDER BY position"
    )))
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut tasks: Vec<TaskRun> = tasks.iter().map(task_run).collect::<Result<_>>()?;
    let history = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM naxos_attempts WHERE execution_id = $1 ORDER BY task_id, attempt"
    )))
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    // By id: the runs come in position order, which is not id order once a fan-out added its
    // instances after the definition's tasks.
    let index: std::collections::HashMap<String, usize> =
        tasks.iter().enumerate().map(|(i, t)| (t.task_id.clone(), i)).collect();
    for row in &history {
        let task_id: String = get(row, "task_id")?;
        if let Some(&i) = index.get(&task_id) {
            tasks[i].history.push(attempt(row)?);
        }
    }
    Ok(Execution {
        summary: execution_summary(&row)?,
        data: get(&row, "params")?,
        tasks,
    })
}

pub(crate) async fn list(pool: &PgPool, query: &ExecutionQuery) -> Result<ExecutionPage> {
    let limit = match query.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    // One statement per combination of filters, not `$1 IS NULL OR …`: a prepared statement's
    // generic plan for the latter cannot use the indexes and scans the whole table for a rare match.
    let mut conditions = Vec::new();
    let mut args = PgArguments::default();
    if let Some(status) = query.status {
        args.add(status.as_str()).map_err(Error::permanent)?;
        conditions.push(format!("status = ${}", conditions.len() + 1));
    }
    if let Some(definition) = &query.definition_id {
        args.add(definition.as_str()).map_err(Error::permanent)?;
        conditions.push(format!("definition_id = ${}", conditions.len() + 1));
    }
    if let Some(schedule) = &query.schedule_id {
        args.add(schedule.as_str()).map_err(Error::permanent)?;
        conditions.push(format!("schedule_id = ${}", conditions.len() + 1));
    }
    if let Some(cursor) = query.cursor {
        args.add(cursor).map_err(Error::permanent)?;
        conditions.push(format!("id < ${}", conditions.len() + 1));
    }
    args.add((limit + 1) as i64).map_err(Error::permanent)?;
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.join(" AND ")),
    };
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM naxos_executions {filter} ORDER BY id DESC LIMIT ${}",
        conditions.len() + 1
    );
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut executions: Vec<_> = rows.iter().map(execution_summary).collect::<Result<_>>()?;
    let next_cursor = if executions.len() > limit {
        executions.truncate(limit);
        executions.last().map(|e| e.id)
    } else {
        None
    };
    Ok(ExecutionPage {
        executions,
        next_cursor,
    })
}

/// Unfinished executions past their deadline, oldest deadline first; not a delayed one still
/// waiting for its time (naxos-core's `ExecutionSummary::is_overdue`).
/// Unfinished children of sub-jobs whose parent finished (through the partial index of
/// migration 0013: unfinished children only).
pub(crate) async fn orphaned_children(pool: &PgPool, limit: usize) -> Result<Vec<ExecutionId>> {
    sqlx::query_scalar(
        "SELECT c.id FROM naxos_executions c JOIN naxos_executions p ON p.id = c.parent_execution_id
         WHERE c.parent_execution_id IS NOT NULL AND c.status IN ('PENDING', 'RUNNING')
           AND p.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
         LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db)
}

pub(crate) async fn overdue(pool: &PgPool, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExecutionId>> {
    sqlx::query_scalar(
        "SELECT id FROM naxos_executions
         WHERE deadline IS NOT NULL AND status IN ('PENDING', 'RUNNING') AND deadline < $1
           AND NOT (status = 'PENDING' AND start_time IS NULL AND scheduled_for IS NOT NULL)
         ORDER BY deadline LIMIT $2",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)
}

/// The finished executions of one class that are due, by the class's partial index (see
/// migration 0011): what follows `WHERE`, with the class's cutoff as `$1`, oldest first.
const DUE: [(ExpiryClass, &str); 4] = [
    (
        ExpiryClass::Completed,
        "status = 'COMPLETED' AND retention_completed_ms IS NULL AND end_time < $1 ORDER BY end_time",
    ),
    (
        ExpiryClass::Failed,
        "status IN ('FAILED', 'CANCELLED') AND retention_failed_ms IS NULL AND end_time < $1 ORDER BY end_time",
    ),
    (
        ExpiryClass::Own,
        "status = 'COMPLETED' AND retention_completed_ms IS NOT NULL
         AND naxos_plus_ms(end_time, retention_completed_ms) < $1
         ORDER BY naxos_plus_ms(end_time, retention_completed_ms)",
    ),
    (
        ExpiryClass::Own,
        "status IN ('FAILED', 'CANCELLED') AND retention_failed_ms IS NOT NULL
         AND naxos_plus_ms(end_time, retention_failed_ms) < $1
         ORDER BY naxos_plus_ms(end_time, retention_failed_ms)",
    ),
];

/// Deletes up to `limit` finished executions due at `now` (their tasks, attempts and outbox
/// rows cascade), one statement per class of [`DUE`] until the limit is reached: each a range
/// scan of its index and a short transaction over the rows it deletes. The ids go through an
/// array so that the rows are deleted by primary key (an `IN (subquery)` was planned as a hash
/// join over a sequential scan of the whole table).
///
/// The candidates are locked `FOR UPDATE SKIP LOCKED`: a row another transaction holds (a
/// retry making it RUNNING, another node's prune) is passed over, and a row changed after the
/// statement began is checked against the class's conditions again as it is locked, so one
/// made RUNNING meanwhile is spared.
pub(crate) async fn prune(pool: &PgPool, defaults: RetentionDefaults, now: DateTime<Utc>, limit: usize) -> Result<u64> {
    let mut pruned = 0;
    for (class, due) in DUE {
        let left = limit as u64 - pruned;
        if left == 0 {
            break;
        }
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM naxos_executions WHERE id = ANY(ARRAY(
                 SELECT id FROM naxos_executions WHERE {due} LIMIT $2 FOR UPDATE SKIP LOCKED))"
        )))
        .bind(defaults.cutoff(class, now))
        .bind(left as i64)
        .execute(pool)
        .await
        .map_err(db)?;
        pruned += done.rows_affected();
    }
    Ok(pruned)
}

pub(crate) async fn counts(pool: &PgPool) -> Result<StoreCounts> {
    let rows = sqlx::query("SELECT status, count(*) AS n FROM naxos_executions GROUP BY status")
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut executions = BTreeMap::new();
    for row in &rows {
        let status = execution_status(&get::<String>(row, "status")?)?;
        executions.insert(status, get::<i64>(row, "n")? as u64);
    }
    let tasks = sqlx::query(
        "SELECT count(*) FILTER (WHERE status = 'QUEUED') AS queued,
                count(*) FILTER (WHERE status = 'RUNNING') AS running
         FROM naxos_tasks WHERE status IN ('QUEUED', 'RUNNING')",
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(StoreCounts {
        executions,
        queued_tasks: get::<i64>(&tasks, "queued")? as u64,
        running_tasks: get::<i64>(&tasks, "running")? as u64,
    })
}

/// Records a node's report, seen at `now`.
pub(crate) async fn put_node(pool: &PgPool, node: NodeInfo, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "INSERT INTO naxos_nodes (id, role, concurrency, running, started_at, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET role = $2, concurrency = $3, running = $4, started_at = $5, last_seen = $6",
    )
    .bind(&node.id)
    .bind(&node.role)
    .bind(int(node.concurrency))
    .bind(int(node.running))
    .bind(node.started_at)
    .bind(now)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(())
}

/// Deletes the nodes last seen before `seen_before`.
pub(crate) async fn prune_nodes(pool: &PgPool, seen_before: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query("DELETE FROM naxos_nodes WHERE last_seen < $1")
        .bind(seen_before)
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(done.rows_affected())
}

pub(crate) async fn list_nodes(pool: &PgPool) -> Result<Vec<NodeInfo>> {
    let rows = sqlx::query("SELECT id, role, concurrency, running, started_at, last_seen FROM naxos_nodes ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(NodeInfo {
                id: get(row, "id")?,
                role: get(row, "role")?,
                concurrency: count(row, "concurrency")?,
                running: count(row, "running")?,
                started_at: get(row, "started_at")?,
                last_seen: get(row, "last_seen")?,
            })
        })
        .collect()
}
