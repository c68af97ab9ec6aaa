//! The cold transitions: load one execution under its row lock, apply naxos-core's state
//! function to it, and write back what changed — in the same transaction.
//!
//! The rules live in [`naxos_core::state`]; this file only moves rows. The write-back is one
//! statement: the execution row (bumping `revision`, see `settle.rs`), every task row that
//! changed, and the attempt records the transition started or ended.

use chrono::{DateTime, Utc};
use naxos_core::backend::Changes;
use naxos_core::model::{Attempt, Execution, ExecutionId, Signal, TaskPlan, TaskRun};
use naxos_core::state::{ExecutionState, FamilyStep, FamilyWalk, Transitioned};
use naxos_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::codec::{execution_summary, get, task_run, EXECUTION_COLUMNS, TASK_COLUMNS};
use crate::definitions;
use crate::error::db;
use crate::executions::{self, Tables};

/// Locks execution `id` for the rest of the transaction and loads it (without its history:
/// transitions only add to that). Every transition of one execution thus runs after the
/// previous one committed.
pub(crate) async fn load(
    conn: &mut PgConnection,
    id: ExecutionId,
    skip_locked: bool,
) -> Result<Option<ExecutionState>> {
    let lock = if skip_locked {
        "FOR NO KEY UPDATE SKIP LOCKED"
    } else {
        "FOR NO KEY UPDATE"
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EXECUTION_COLUMNS}, params, signals FROM naxos_executions WHERE id = $1 {lock}"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let tasks = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM naxos_tasks WHERE execution_id = $1 ORDER BY position"
    )))
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let execution = Execution {
        summary: execution_summary(&row)?,
        data: get(&row, "params")?,
        tasks: tasks.iter().map(task_run).collect::<Result<_>>()?,
    };
    let signals: Option<sqlx::types::Json<Vec<Signal>>> = get(&row, "signals")?;
    let state = ExecutionState::from_execution(execution)?;
    Ok(Some(match signals {
        Some(signals) => state.with_signals(signals.0),
        None => state,
    }))
}

/// Runs `transition` (at `now`) on execution `id` under its row lock, writes back what it
/// changed, and walks the execution's family in the same transaction ([`family`]). `NotFound`
/// for an unknown execution; an error from `transition` writes nothing.
pub(crate) async fn apply<T: Transitioned>(
    conn: &mut PgConnection,
    id: ExecutionId,
    now: DateTime<Utc>,
    transition: impl FnOnce(&mut ExecutionState) -> Result<T>,
) -> Result<T> {
    let state = load(conn, id, false)
        .await?
        .ok_or_else(|| Error::not_found("execution", id))?;
    apply_loaded(conn, state, now, transition).await
}

/// As [`apply`], on an execution this transaction already loaded (and so locked) with [`load`].
pub(crate) async fn apply_loaded<T: Transitioned>(
    conn: &mut PgConnection,
    mut state: ExecutionState,
    now: DateTime<Utc>,
    transition: impl FnOnce(&mut ExecutionState) -> Result<T>,
) -> Result<T> {
    let before = state.clone();
    let mut out = transition(&mut state)?;
    write_back(conn, &before, &state).await?;
    if let Some(ch) = out.changes_mut() {
        family(conn, &Tables::Own, &state, before.is_finished(), ch, now).await?;
    }
    Ok(out)
}

/// After a transition changed an execution into `state` (written back; `was_finished`: it was
/// finished before) with the changes `ch`: creates the children its sub-jobs started and
/// settles the parent of a child it ended, and so on (naxos-core's `FamilyWalk`), on `conn`
/// in the same transaction — child before parent, the only order in which one transaction
/// locks two executions. What each step changed is added to `ch`. Children are created in
/// `tables` (a caller's transaction gives its own, so that each child has its outbox row);
/// executions are loaded and written back by unqualified names.
pub(crate) async fn family(
    conn: &mut PgConnection,
    tables: &Tables<'_>,
    state: &ExecutionState,
    was_finished: bool,
    ch: &mut Changes,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(mut walk) = FamilyWalk::after(state, was_finished, ch) else {
        return Ok(());
    };
    while let Some(step) = walk.next_step() {
        match step {
            FamilyStep::Create(child) => {
                let definition = definitions::get_one(&mut *conn, &child.definition_id, Some(child.version)).await?;
                let new = child.execution(&definition);
                let Some((mut created, state)) = executions::insert(conn, tables, new, now, None).await? else {
                    continue;
                };
                walk.created(&state, &mut created.changes);
                ch.extend(created.changes);
            }
            FamilyStep::Settle(task, child_id) => {
                let Some(child) = load(conn, child_id, false).await? else {
                    continue;
                };
                let Some(mut parent) = load(conn, task.execution_id, false).await? else {
                    continue;
                };
                let before = parent.clone();
                if let Some(more) = walk.settle(&mut parent, &task, &child, now)? {
                    write_back(conn, &before, &parent).await?;
                    ch.extend(more);
                }
            }
        }
    }
    Ok(())
}

/// A task row as the write-back statement reads it from JSON.
#[derive(Serialize)]
struct TaskRow<'a> {
    task_id: &'a str,
    status: &'static str,
    remaining: u32,
    attempt: u32,
    attempts: u32,
    failures: u32,
    lease_expiries: u32,
    republished: u32,
    error: Option<&'a str>,
    set_output: bool,
    /// The output in a one-element array: `jsonb_to_recordset` reads a JSON `null` field as SQL
    /// NULL, which would lose an output that is `null`.
    output: Option<[&'a Value; 1]>,
    lease_owner: Option<&'a str>,
    lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    queued_at: Option<chrono::DateTime<chrono::Utc>>,
    due_at: Option<chrono::DateTime<chrono::Utc>>,
    start_time: Option<chrono::DateTime<chrono::Utc>>,
    end_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The plan, when it changed (a fan-out instance that starts over on another item).
    set_plan: bool,
    plan: Option<&'a TaskPlan>,
    blocked_by: Option<&'static str>,
    slot: Option<&'a str>,
    holds_slot: bool,
    rate: Option<&'a str>,
}

/// A task run the transition added (a fan-out instance), as the write-back inserts it.
#[derive(Serialize)]
struct AddedRow<'a> {
    task_id: &'a str,
    position: usize,
    name: &'a str,
    function_name: &'a str,
    status: &'static str,
    attempt: u32,
    queued_at: Option<chrono::DateTime<chrono::Utc>>,
    plan: &'a TaskPlan,
    error: Option<&'a str>,
    due_at: Option<chrono::DateTime<chrono::Utc>>,
    start_time: Option<chrono::DateTime<chrono::Utc>>,
    end_time: Option<chrono::DateTime<chrono::Utc>>,
    slot: Option<&'a str>,
    rate: Option<&'a str>,
}

/// An attempt record as the write-back statement reads it from JSON.
#[derive(Serialize)]
struct AttemptRow<'a> {
    task_id: &'a str,
    attempt: u32,
    node: &'a str,
    started_at: chrono::DateTime<chrono::Utc>,
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    outcome: Option<&'static str>,
    error: Option<&'a str>,
}

impl<'a> AttemptRow<'a> {
    fn new(task_id: &'a str, record: &'a Attempt) -> Self {
        Self {
            task_id,
            attempt: record.attempt,
            node: &record.node,
            started_at: record.started_at,
            ended_at: record.ended_at,
            outcome: record.outcome.map(|o| o.as_str()),
            error: record.error.as_deref(),
        }
    }
}

const WRITE_BACK: &str = "
    WITH execution AS (
        UPDATE naxos_executions SET status = $2, error = $3, deadline = $4, updated_at = $5, start_time = $6,
               end_time = $7, scheduled_for = $12, revision = revision + 1,
               signals = CASE WHEN $10 THEN $11 ELSE signals END
        WHERE id = $1
    ), tasks AS (
        UPDATE naxos_tasks t SET status = r.status, remaining = r.remaining, attempt = r.attempt,
               attempts = r.attempts, failures = r.failures, lease_expiries = r.lease_expiries,
               republished = r.republished, error = r.error,
               output = CASE WHEN r.set_output THEN r.output -> 0 ELSE t.output END,
               lease_owner = r.lease_owner, lease_expires_at = r.lease_expires_at, queued_at = r.queued_at,
               due_at = r.due_at, start_time = r.start_time, end_time = r.end_time,
               plan = CASE WHEN r.set_plan THEN r.plan ELSE t.plan END, blocked_by = r.blocked_by,
               slot = r.slot, holds_slot = r.holds_slot, rate = r.rate
        FROM jsonb_to_recordset($8) AS r(task_id TEXT, status TEXT, remaining INTEGER, attempt INTEGER,
             attempts INTEGER, failures INTEGER, lease_expiries INTEGER, republished INTEGER, error TEXT,
             set_output BOOLEAN,
             output JSONB, lease_owner TEXT, lease_expires_at TIMESTAMPTZ, queued_at TIMESTAMPTZ,
             due_at TIMESTAMPTZ, start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, set_plan BOOLEAN, plan JSONB,
             blocked_by TEXT, slot TEXT, holds_slot BOOLEAN, rate TEXT)
        WHERE t.execution_id = $1 AND t.task_id = r.task_id
    ), added AS (
        INSERT INTO naxos_tasks
            (execution_id, task_id, position, name, function_name, status, dependencies, dependents, remaining,
             attempt, queued_at, plan, error, due_at, start_time, end_time, slot, rate, priority)
        SELECT $1, r.task_id, r.position, r.name, r.function_name, r.status, '{}', '{}', 0, r.attempt,
               r.queued_at, r.plan, r.error, r.due_at, r.start_time, r.end_time, r.slot, r.rate, $14
        FROM jsonb_to_recordset($13) AS r(task_id TEXT, position INTEGER, name TEXT, function_name TEXT,
             status TEXT, attempt INTEGER, queued_at TIMESTAMPTZ, plan JSONB, error TEXT, due_at TIMESTAMPTZ,
             start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, slot TEXT, rate TEXT)
    )
    INSERT INTO naxos_attempts (execution_id, task_id, attempt, node, started_at, ended_at, outcome, error)
    SELECT $1, r.task_id, r.attempt, r.node, r.started_at, r.ended_at, r.outcome, r.error
    FROM jsonb_to_recordset($9) AS r(task_id TEXT, attempt INTEGER, node TEXT, started_at TIMESTAMPTZ,
         ended_at TIMESTAMPTZ, outcome TEXT, error TEXT)
    ON CONFLICT (execution_id, task_id, attempt) DO UPDATE
        SET ended_at = excluded.ended_at, outcome = excluded.outcome, error = excluded.error";

/// Writes the difference between `before` and `after` (one execution) in one statement.
pub(crate) async fn write_back(conn: &mut PgConnection, before: &ExecutionState, after: &ExecutionState) -> Result<()> {
    let mut rows = Vec::new();
    let mut attempts = Vec::new();
    for (i, (old, new)) in before.tasks().iter().zip(after.tasks()).enumerate() {
        let set_output = before.output(i) != after.output(i);
        let set_plan = old.plan != new.plan;
        if set_output || set_plan || !same_row(old, new) {
            rows.push(TaskRow {
                task_id: &new.task_id,
                status: new.status.as_str(),
                remaining: new.remaining_dependencies,
                attempt: new.attempt,
                attempts: new.attempts,
                failures: new.failures,
                lease_expiries: new.lease_expiries,
                republished: new.republished,
                error: new.error.as_deref(),
                set_output,
                output: after.output(i).map(|o| [&**o]),
                lease_owner: new.lease.as_ref().map(|l| l.owner.as_str()),
                lease_expires_at: new.lease.as_ref().map(|l| l.expires_at),
                queued_at: new.queued_at,
                due_at: new.due_at,
                start_time: new.start_time,
                end_time: new.end_time,
                set_plan,
                plan: set_plan.then_some(&new.plan),
                blocked_by: new.blocked_by.map(|b| b.as_str()),
                slot: new.slot.as_deref(),
                holds_slot: new.holds_slot,
                rate: new.rate.as_deref(),
            });
        }
        // The loaded state had no history: every record in it now is one this transition wrote.
        attempts.extend(new.history.iter().map(|record| AttemptRow::new(&new.task_id, record)));
    }
    // Runs a transition added: a fan-out's instances, after the runs there were.
    let added: Vec<AddedRow> = after
        .tasks()
        .iter()
        .enumerate()
        .skip(before.tasks().len())
        .map(|(position, t)| AddedRow {
            task_id: &t.task_id,
            position,
            name: &t.name,
            function_name: &t.function_name,
            status: t.status.as_str(),
            attempt: t.attempt,
            queued_at: t.queued_at,
            plan: &t.plan,
            error: t.error.as_deref(),
            due_at: t.due_at,
            start_time: t.start_time,
            end_time: t.end_time,
            slot: t.slot.as_deref(),
            rate: t.rate.as_deref(),
        })
        .collect();
    let s = after.summary();
    let set_signals = before.signals() != after.signals();
    if rows.is_empty() && added.is_empty() && attempts.is_empty() && s == before.summary() && !set_signals {
        return Ok(());
    }
    let signals = Some(after.signals()).filter(|s| !s.is_empty()).map(sqlx::types::Json);
    sqlx::query(WRITE_BACK)
        .bind(s.id)
        .bind(s.status.as_str())
        .bind(&s.error)
        .bind(s.deadline)
        .bind(s.updated_at)
        .bind(s.start_time)
        .bind(s.end_time)
        .bind(sqlx::types::Json(&rows))
        .bind(sqlx::types::Json(&attempts))
        .bind(set_signals)
        .bind(signals)
        .bind(s.scheduled_for)
        .bind(sqlx::types::Json(&added))
        .bind(crate::codec::level(s.priority))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// True when the two runs of one task have the same row (the history is written apart).
fn same_row(a: &TaskRun, b: &TaskRun) -> bool {
    a.status == b.status
        && a.remaining_dependencies == b.remaining_dependencies
        && a.attempt == b.attempt
        && a.attempts == b.attempts
        && a.failures == b.failures
        && a.lease_expiries == b.lease_expiries
        && a.republished == b.republished
        && a.error == b.error
        && a.lease == b.lease
        && a.queued_at == b.queued_at
        && a.due_at == b.due_at
        && a.start_time == b.start_time
        && a.end_time == b.end_time
        && a.blocked_by == b.blocked_by
        && a.slot == b.slot
        && a.holds_slot == b.holds_slot
        && a.rate == b.rate
}
