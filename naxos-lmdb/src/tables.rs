//! The store's databases, how records are encoded, and how one execution is read and written
//! back with its indexes (the layout is in `keys.rs`).
//!
//! An execution is stored as rows: its summary, its params, its plan (what its task runs never
//! change) and one record per task run (with its output and attempt records), encoded as
//! `codec.rs` says. A transition loads them into naxos-core's [`ExecutionState`], applies the
//! state function, and [`write_back`] writes the difference — the summary if it changed, each
//! task record that changed — and moves the index entries that the change moved, all in the
//! caller's write transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use heed::RoTxn;
use naxos_core::backend::{Changes, NewExecution};
use naxos_core::model::{
    BlockedBy, Execution, ExecutionId, ExecutionStatus, ExecutionSummary, JobDefinition, NodeInfo, StoredDefinition,
    TaskRun, TaskStatus,
};
use naxos_core::state::{settle_family, ExecutionState, Family, Transitioned, MAX_DOUBLINGS};
use naxos_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec;
use crate::env::{Db, Environment};
use crate::error::corrupt;
use crate::keys;
use crate::writer::Tx;

/// The store's databases, by name, in the order [`Tables::new`] takes them.
pub(crate) const NAMES: [&str; 24] = [
    "definitions",
    "executions",
    "by_definition",
    "by_definition_status",
    "idempotency",
    "running",
    "queued",
    "retrying",
    "deadlines",
    "ended",
    "nodes",
    "schedules",
    "schedule_ticks",
    "by_schedule",
    "scheduled",
    "waiting",
    "retained",
    "expiring",
    "children",
    "paused",
    "blocked",
    "slots_held",
    "slots_waiting",
    "rate_limits",
];

/// The store's databases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables {
    pub(crate) definitions: Db,
    /// Every execution's rows: summary, params and task runs, under its id.
    pub(crate) executions: Db,
    pub(crate) by_definition: Db,
    pub(crate) by_definition_status: Db,
    pub(crate) idempotency: Db,
    pub(crate) running: Db,
    pub(crate) queued: Db,
    pub(crate) retrying: Db,
    pub(crate) deadlines: Db,
    pub(crate) ended: Db,
    pub(crate) nodes: Db,
    /// Cron schedules and their ticks' executions (see `schedules.rs`).
    pub(crate) schedules: Db,
    pub(crate) schedule_ticks: Db,
    pub(crate) by_schedule: Db,
    pub(crate) scheduled: Db,
    /// WAITING tasks with a due time, and delayed executions waiting for theirs, by time (see
    /// `keys.rs`).
    pub(crate) waiting: Db,
    /// Retention: own periods, and finished executions by expiry (see `retention.rs`).
    pub(crate) retained: Db,
    pub(crate) expiring: Db,
    /// Unfinished children of sub-jobs: child id → parent id (what the orphan scan reads).
    pub(crate) children: Db,
    /// Paused definitions, by id.
    pub(crate) paused: Db,
    /// QUEUED tasks blocked by a pause (kept out of `queued`, which the stale sweep reads), by
    /// the time they were queued.
    pub(crate) blocked: Db,
    /// Runs holding a slot of a concurrency scope, and runs waiting for one (oldest first),
    /// by scope (see naxos-core's `state/concurrency.rs`, and `slots.rs`).
    pub(crate) slots_held: Db,
    pub(crate) slots_waiting: Db,
    /// Rate-limit windows, by scope (naxos-core's `RateWindow`, JSON).
    pub(crate) rate_limits: Db,
}

impl Tables {
    pub(crate) fn new(dbs: [Db; 24]) -> Self {
        let [definitions, executions, by_definition, by_definition_status, idempotency, running, queued, retrying, deadlines, ended, nodes, schedules, schedule_ticks, by_schedule, scheduled, waiting, retained, expiring, children, paused, blocked, slots_held, slots_waiting, rate_limits] =
            dbs;
        Self {
            definitions,
            executions,
            by_definition,
            by_definition_status,
            idempotency,
            running,
            queued,
            retrying,
            deadlines,
            ended,
            nodes,
            schedules,
            schedule_ticks,
            by_schedule,
            scheduled,
            waiting,
            retained,
            expiring,
            children,
            paused,
            blocked,
            slots_held,
            slots_waiting,
            rate_limits,
        }
    }
}

/// Reads from any transaction, mapping heed's errors to the environment's.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) env: &'a Environment,
    pub(crate) t: &'a Tables,
}

impl<'a> Reader<'a> {
    /// One value.
    pub(crate) fn get<'t>(&self, txn: &'t RoTxn<'_>, db: Db, key: &[u8]) -> Result<Option<&'t [u8]>> {
        db.get(txn, key).map_err(|e| self.env.error(e))
    }

    /// An execution's summary.
    pub(crate) fn summary(&self, txn: &RoTxn<'_>, id: ExecutionId) -> Result<Option<ExecutionSummary>> {
        self.get(txn, self.t.executions, &keys::row(id, keys::SUMMARY))?
            .map(|v| codec::read_summary(id, v).and_then(|s| self.with_schedule(txn, s)))
            .transpose()
    }

    /// An execution with its tasks, outputs and attempt records.
    pub(crate) fn execution(&self, txn: &RoTxn<'_>, id: ExecutionId) -> Result<Option<Execution>> {
        let Some(summary) = self.summary(txn, id)? else {
            return Ok(None);
        };
        let data: Value = match self.get(txn, self.t.executions, &keys::row(id, keys::PARAMS))? {
            Some(v) => decode(v, "execution params")?,
            None => return Err(corrupt(format!("execution {id} has no params"))),
        };
        let mut tasks = match self.get(txn, self.t.executions, &keys::row(id, keys::PLAN))? {
            Some(v) => codec::read_plan(v)?,
            None => return Err(corrupt(format!("execution {id} has no plan"))),
        };
        let iter = self
            .t
            .executions
            .prefix_iter(txn, &keys::row(id, keys::TASK))
            .map_err(|e| self.env.error(e))?;
        let mut filled = 0;
        for entry in iter {
            let (key, value) = entry.map_err(|e| self.env.error(e))?;
            let run = keys::position_of(key)
                .and_then(|i| tasks.get_mut(i))
                .ok_or_else(|| corrupt(format!("execution {id} has a task row its plan lacks")))?;
            codec::read_task(run, value)?;
            filled += 1;
        }
        if filled != tasks.len() {
            return Err(corrupt(format!("execution {id} lacks task rows of its plan")));
        }
        Ok(Some(Execution { summary, data, tasks }))
    }

    /// An execution as the state module's value, with the signals it keeps.
    pub(crate) fn state(&self, txn: &RoTxn<'_>, id: ExecutionId) -> Result<Option<ExecutionState>> {
        let Some(execution) = self.execution(txn, id)? else {
            return Ok(None);
        };
        let state = ExecutionState::from_execution(execution)?;
        Ok(Some(
            match self.get(txn, self.t.executions, &keys::row(id, keys::SIGNALS))? {
                Some(v) => state.with_signals(decode(v, "execution signals")?),
                None => state,
            },
        ))
    }

    /// A stored definition version, refusing one of a newer format.
    pub(crate) fn definition(&self, txn: &RoTxn<'_>, id: &str, version: u32) -> Result<Option<Arc<StoredDefinition>>> {
        let key = keys::definition(id, version)?;
        self.get(txn, self.t.definitions, &key)?
            .map(|v| decode_definition(id, version, v))
            .transpose()
    }

    /// The format of a stored definition version, without decoding it.
    pub(crate) fn definition_format(&self, txn: &RoTxn<'_>, id: &str, version: u32) -> Result<Option<u32>> {
        let key = keys::definition(id, version)?;
        self.get(txn, self.t.definitions, &key)?
            .map(|v| format_of(v).map(|(f, _)| f))
            .transpose()
    }

    /// The latest version of a definition: its number and format.
    pub(crate) fn latest_version(&self, txn: &RoTxn<'_>, id: &str) -> Result<Option<(u32, u32, Vec<u8>)>> {
        let prefix = keys::prefix(id);
        let mut iter = self
            .t
            .definitions
            .rev_prefix_iter(txn, &prefix)
            .map_err(|e| self.env.error(e))?;
        match iter.next() {
            None => Ok(None),
            Some(entry) => {
                let (key, value) = entry.map_err(|e| self.env.error(e))?;
                let (format, _) = format_of(value)?;
                Ok(Some((keys::version_of(key)?, format, value.to_vec())))
            }
        }
    }

    /// A node.
    pub(crate) fn nodes(&self, txn: &RoTxn<'_>) -> Result<Vec<NodeInfo>> {
        let iter = self.t.nodes.iter(txn).map_err(|e| self.env.error(e))?;
        let mut nodes = Vec::new();
        for entry in iter {
            let (_, value) = entry.map_err(|e| self.env.error(e))?;
            nodes.push(decode(value, "a node")?);
        }
        Ok(nodes)
    }
}

/// JSON of a value naxos wrote.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(Error::permanent)
}

/// A value naxos wrote, from JSON.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("{what}: {e}")))
}

/// A definition record: its format (u32), then the stored definition as JSON.
pub(crate) fn encode_definition(stored: &StoredDefinition) -> Result<Vec<u8>> {
    let mut bytes = stored.definition.required_format().to_be_bytes().to_vec();
    serde_json::to_writer(&mut bytes, stored).map_err(Error::permanent)?;
    Ok(bytes)
}

fn format_of(value: &[u8]) -> Result<(u32, &[u8])> {
    let (format, body) = value
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("a definition record without a format"))?;
    Ok((u32::from_be_bytes(*format), body))
}

/// Decodes a definition record, refusing one written in a newer format.
pub(crate) fn decode_definition(id: &str, version: u32, value: &[u8]) -> Result<Arc<StoredDefinition>> {
    let (format, body) = format_of(value)?;
    if format > JobDefinition::FORMAT {
        return Err(newer_definition(id, version, format));
    }
    decode(body, "a definition").map(Arc::new)
}

/// The error for a definition of a format this build does not know.
pub(crate) fn newer_definition(id: &str, version: u32, format: u32) -> Error {
    Error::newer_version(
        format!("job definition `{id}` version {version}"),
        format!("format {format}"),
        format!("format {}", JobDefinition::FORMAT),
    )
}

/// Which recovery index a task is in, and under which key.
#[derive(PartialEq)]
enum TaskMark {
    Running(Vec<u8>),
    Queued(Vec<u8>),
    Retrying(Vec<u8>),
    Waiting(Vec<u8>),
    Blocked(Vec<u8>),
}

fn task_mark(id: ExecutionId, index: usize, t: &TaskRun) -> Option<TaskMark> {
    let never = DateTime::<Utc>::MAX_UTC;
    match t.status {
        TaskStatus::Running => Some(TaskMark::Running(keys::timed(
            t.lease.as_ref().map_or(never, |l| l.expires_at),
            id,
            Some(index),
        ))),
        TaskStatus::Queued if t.blocked_by == Some(BlockedBy::Paused) => Some(TaskMark::Blocked(keys::timed(
            t.queued_at.unwrap_or(never),
            id,
            Some(index),
        ))),
        // Waiting for its rate limit's turn: by that time with the due retries, which the stale
        // sweep reads (it publishes one whose turn is long past: its message was lost).
        TaskStatus::Queued if t.blocked_by == Some(BlockedBy::RateLimit) => Some(TaskMark::Retrying(keys::timed(
            t.due_at.unwrap_or(never),
            id,
            Some(index),
        ))),
        // Waiting for a concurrency slot: in `slots_waiting` (see `slot_mark`).
        TaskStatus::Queued if t.blocked_by.is_some() => None,
        TaskStatus::Queued => Some(TaskMark::Queued(keys::queued(
            t.republished,
            MAX_DOUBLINGS,
            t.queued_at.unwrap_or(never),
            id,
            index,
        ))),
        TaskStatus::Retrying => Some(TaskMark::Retrying(keys::timed(
            t.due_at.unwrap_or(never),
            id,
            Some(index),
        ))),
        TaskStatus::Waiting => t.due_at.map(|due| TaskMark::Waiting(keys::timed(due, id, Some(index)))),
        _ => None,
    }
}

/// Which concurrency index a run is in, under which key: holding a slot of its scope, or
/// waiting for one.
#[derive(PartialEq)]
enum SlotMark {
    Held(Vec<u8>),
    Waiting(Vec<u8>),
}

fn slot_mark(s: &ExecutionSummary, index: usize, t: &TaskRun) -> Option<SlotMark> {
    let scope = t.slot.as_deref()?;
    if t.holds_slot {
        let mut key = keys::slot_prefix(scope);
        key.extend_from_slice(s.id.as_bytes());
        key.extend_from_slice(&(index as u32).to_be_bytes());
        Some(SlotMark::Held(key))
    } else if t.status == TaskStatus::Queued && t.blocked_by == Some(BlockedBy::Concurrency) {
        let queued_at = t.queued_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
        Some(SlotMark::Waiting(keys::slot_waiting(
            scope, s.priority, queued_at, s.id, index,
        )))
    } else {
        None
    }
}

/// What the execution-level indexes hold for one execution.
#[derive(PartialEq)]
struct ExecutionMark {
    status: ExecutionStatus,
    deadline: Option<Vec<u8>>,
    /// A delayed execution waiting for its time: its entry in `waiting` (time, execution id —
    /// no task position, unlike a task's entry there).
    delayed: Option<Vec<u8>>,
    ended: Option<Vec<u8>>,
    /// How it ended, for its `expiring` entry (see `retention.rs`).
    end: Option<(ExecutionStatus, DateTime<Utc>)>,
    /// An unfinished child of a sub-job: its parent, for its `children` entry.
    parent: Option<ExecutionId>,
}

fn execution_mark(s: &ExecutionSummary) -> ExecutionMark {
    let finished = s.status.is_terminal();
    ExecutionMark {
        status: s.status,
        deadline: s.deadline.filter(|_| !finished).map(|d| keys::timed(d, s.id, None)),
        delayed: s
            .scheduled_for
            .filter(|_| s.is_delayed())
            .map(|at| keys::timed(at, s.id, None)),
        ended: s.end_time.filter(|_| finished).map(|t| keys::timed(t, s.id, None)),
        end: s.end_time.filter(|_| finished).map(|t| (s.status, t)),
        parent: s.parent.as_ref().filter(|_| !finished).map(|p| p.execution_id),
    }
}

fn same_output(a: Option<&Arc<Value>>, b: Option<&Arc<Value>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Writes the difference between `before` and `after` of one execution (`None`: absent) and
/// moves its index entries, in `tx`. The idempotency key is the caller's.
pub(crate) fn write_back(
    tx: &mut Tx<'_, '_>,
    before: Option<&ExecutionState>,
    after: Option<&ExecutionState>,
) -> Result<()> {
    let t = *tx.tables();
    let Some(any) = after.or(before) else {
        return Ok(());
    };
    let id = any.summary().id;
    let definition = any.summary().definition_id.clone();
    if let Some(a) = after {
        let s = a.summary();
        if before.map(|b| b.summary()) != Some(s) {
            tx.put(t.executions, &keys::row(id, keys::SUMMARY), &codec::summary(s)?)?;
        }
        // A transition may add runs (a fan-out's instances), after the others.
        let planned = before.is_some_and(|b| {
            b.tasks().len() == a.tasks().len() && b.tasks().iter().zip(a.tasks()).all(|(x, y)| codec::same_plan(x, y))
        });
        if !planned {
            tx.put(t.executions, &keys::row(id, keys::PLAN), &codec::plan(a.tasks())?)?;
        }
        if before.map(|b| b.signals()) != Some(a.signals()) {
            let key = keys::row(id, keys::SIGNALS);
            if a.signals().is_empty() {
                tx.delete(t.executions, &key)?;
            } else {
                tx.put(t.executions, &key, &encode(a.signals())?)?;
            }
        }
        if before.is_none() {
            tx.put(t.executions, &keys::row(id, keys::PARAMS), &encode(&**a.params())?)?;
            tx.put(t.by_definition, &keys::by_definition(&definition, id), &[])?;
        }
    }
    let count = before
        .map_or(0, |b| b.tasks().len())
        .max(after.map_or(0, |a| a.tasks().len()));
    for i in 0..count {
        let old = before.and_then(|b| b.tasks().get(i));
        let new = after.and_then(|a| a.tasks().get(i));
        match (before, after) {
            (_, Some(a)) => {
                let changed = old
                    .is_none_or(|o| *o != a.tasks()[i] || !same_output(before.and_then(|b| b.output(i)), a.output(i)));
                if changed {
                    let record = codec::task(&a.tasks()[i], a.output(i).map(|o| &**o))?;
                    tx.put(t.executions, &keys::task(id, i), &record)?;
                }
            }
            (Some(_), None) => {
                tx.delete(t.executions, &keys::task(id, i))?;
            }
            (None, None) => {}
        }
        let old_mark = old.and_then(|r| task_mark(id, i, r));
        let new_mark = new.and_then(|r| task_mark(id, i, r));
        if old_mark != new_mark {
            if let Some(m) = old_mark {
                let (db, key) = mark_db(&t, m);
                tx.delete(db, &key)?;
            }
            if let Some(m) = new_mark {
                let (db, key) = mark_db(&t, m);
                tx.put(db, &key, &[])?;
            }
        }
        let old_slot = before.zip(old).and_then(|(b, r)| slot_mark(b.summary(), i, r));
        let new_slot = after.zip(new).and_then(|(a, r)| slot_mark(a.summary(), i, r));
        if old_slot != new_slot {
            if let Some(m) = old_slot {
                let (db, key) = slot_db(&t, m);
                tx.delete(db, &key)?;
            }
            if let Some(m) = new_slot {
                let (db, key) = slot_db(&t, m);
                tx.put(db, &key, &[])?;
            }
        }
    }
    let old = before.map(|b| execution_mark(b.summary()));
    let new = after.map(|a| execution_mark(a.summary()));
    if old != new {
        let (old_status, new_status) = (old.as_ref().map(|m| m.status), new.as_ref().map(|m| m.status));
        if old_status != new_status {
            if let Some(s) = old_status {
                tx.count(s, -1);
                tx.delete(t.by_definition_status, &keys::by_definition_status(&definition, s, id))?;
            }
            if let Some(s) = new_status {
                tx.count(s, 1);
                tx.put(
                    t.by_definition_status,
                    &keys::by_definition_status(&definition, s, id),
                    &[],
                )?;
            }
        }
        let (old_deadline, new_deadline) = (
            old.as_ref().and_then(|m| m.deadline.clone()),
            new.as_ref().and_then(|m| m.deadline.clone()),
        );
        if old_deadline != new_deadline {
            if let Some(k) = old_deadline {
                tx.delete(t.deadlines, &k)?;
            }
            if let Some(k) = new_deadline {
                tx.put(t.deadlines, &k, &[])?;
            }
        }
        let (old_delayed, new_delayed) = (
            old.as_ref().and_then(|m| m.delayed.clone()),
            new.as_ref().and_then(|m| m.delayed.clone()),
        );
        if old_delayed != new_delayed {
            if let Some(k) = old_delayed {
                tx.delete(t.waiting, &k)?;
            }
            if let Some(k) = new_delayed {
                tx.put(t.waiting, &k, &[])?;
            }
        }
        let (old_parent, new_parent) = (old.as_ref().and_then(|m| m.parent), new.as_ref().and_then(|m| m.parent));
        if old_parent != new_parent {
            match new_parent {
                Some(parent) => tx.put(t.children, id.as_bytes(), parent.as_bytes())?,
                None => {
                    tx.delete(t.children, id.as_bytes())?;
                }
            }
        }
        let (old_end, new_end) = (old.as_ref().and_then(|m| m.end), new.as_ref().and_then(|m| m.end));
        crate::retention::moved(tx, id, old_end, new_end, false)?;
        let (old_ended, new_ended) = (old.and_then(|m| m.ended), new.and_then(|m| m.ended));
        if old_ended != new_ended {
            if let Some(k) = old_ended {
                tx.delete(t.ended, &k)?;
            }
            if let Some(k) = new_ended {
                tx.put(t.ended, &k, &[])?;
            }
        }
    }
    if after.is_none() {
        crate::retention::moved(tx, id, None, None, true)?;
        tx.delete(t.executions, &keys::row(id, keys::SUMMARY))?;
        tx.delete(t.executions, &keys::row(id, keys::PARAMS))?;
        tx.delete(t.executions, &keys::row(id, keys::PLAN))?;
        tx.delete(t.executions, &keys::row(id, keys::SIGNALS))?;
        tx.delete(t.by_definition, &keys::by_definition(&definition, id))?;
    }
    Ok(())
}

fn mark_db(t: &Tables, mark: TaskMark) -> (Db, Vec<u8>) {
    match mark {
        TaskMark::Running(k) => (t.running, k),
        TaskMark::Queued(k) => (t.queued, k),
        TaskMark::Retrying(k) => (t.retrying, k),
        TaskMark::Waiting(k) => (t.waiting, k),
        TaskMark::Blocked(k) => (t.blocked, k),
    }
}

fn slot_db(t: &Tables, mark: SlotMark) -> (Db, Vec<u8>) {
    match mark {
        SlotMark::Held(k) => (t.slots_held, k),
        SlotMark::Waiting(k) => (t.slots_waiting, k),
    }
}

/// Creates `execution` (its sub-jobs pinned to the latest versions) in `tx`, without walking
/// its family (the caller's, with the state returned). The idempotency key is the caller's.
pub(crate) fn insert(
    tx: &mut Tx<'_, '_>,
    mut execution: NewExecution,
    now: DateTime<Utc>,
) -> Result<(ExecutionState, Changes)> {
    let unpinned = execution.unpinned_sub_jobs();
    if !unpinned.is_empty() {
        let reader = tx.reader();
        let mut latest = Vec::new();
        for id in unpinned {
            if let Some((version, _, _)) = reader.latest_version(tx.txn(), &id)? {
                latest.push((id, version));
            }
        }
        execution.pin_sub_jobs(|id| latest.iter().find(|(d, _)| d == id).map(|&(_, v)| v));
    }
    let id = execution.id;
    crate::retention::retain(tx, id, execution.retention.as_ref())?;
    let (state, changes) = ExecutionState::create(execution, now)?;
    write_back(tx, None, Some(&state))?;
    tx.keep(state.clone());
    Ok((state, changes))
}

/// The write transaction as the [`Family`] of the execution a transition changed.
pub(crate) struct TxFamily<'a, 't, 'e>(pub(crate) &'a mut Tx<'t, 'e>);

impl Family for TxFamily<'_, '_, '_> {
    fn definition(&mut self, id: &str, version: u32) -> Result<Arc<StoredDefinition>> {
        self.0
            .reader()
            .definition(self.0.txn(), id, version)?
            .ok_or_else(|| Error::not_found("job definition", format!("{id} version {version}")))
    }

    fn create(&mut self, execution: NewExecution, now: DateTime<Utc>) -> Result<(ExecutionState, Changes)> {
        insert(self.0, execution, now)
    }

    fn load(&mut self, id: ExecutionId) -> Result<Option<ExecutionState>> {
        let state = self.0.load(id)?;
        if let Some(state) = &state {
            self.0.keep(state.clone());
        }
        Ok(state)
    }

    fn save(&mut self, before: &ExecutionState, after: ExecutionState) -> Result<()> {
        write_back(self.0, Some(before), Some(&after))?;
        self.0.keep(after);
        Ok(())
    }
}

/// The job timeout of execution `id`'s definition version (none for an unknown execution:
/// the transition then says `NotFound`).
pub(crate) fn timeout_of(tx: &mut Tx<'_, '_>, id: ExecutionId) -> Result<Option<std::time::Duration>> {
    let Some(s) = tx.reader().summary(tx.txn(), id)? else {
        return Ok(None);
    };
    let def = tx
        .reader()
        .definition(tx.txn(), &s.definition_id, s.definition_version)?;
    Ok(def.and_then(|d| d.definition.timeout()))
}

/// Applies `f` to execution `id`'s state and writes back what it changed.
pub(crate) fn transition<T: Transitioned>(
    tx: &mut Tx<'_, '_>,
    id: ExecutionId,
    f: impl FnOnce(&mut ExecutionState) -> Result<T>,
) -> Result<T> {
    let state = tx.load(id)?.ok_or_else(|| Error::not_found("execution", id))?;
    apply(tx, state, f)
}

/// Applies `f` to `state`; on success writes back the difference and walks the execution's
/// family (the children its sub-jobs started, the parent of a child it ended: naxos-core's
/// `settle_family`), on failure changes nothing (the state functions leave the state as it
/// was when they refuse).
pub(crate) fn apply<T: Transitioned>(
    tx: &mut Tx<'_, '_>,
    mut state: ExecutionState,
    f: impl FnOnce(&mut ExecutionState) -> Result<T>,
) -> Result<T> {
    let before = state.clone();
    match f(&mut state) {
        Ok(mut out) => {
            write_back(tx, Some(&before), Some(&state))?;
            let walk = out
                .changes_mut()
                .is_some_and(|ch| !ch.children.is_empty() || state.settles_parent(before.is_finished()).is_some());
            if walk {
                tx.keep(state.clone());
                let now = tx.now();
                if let Some(ch) = out.changes_mut() {
                    settle_family(&mut TxFamily(tx), &state, before.is_finished(), ch, now)?;
                }
            } else {
                tx.keep(state);
            }
            if let Some(ch) = out.changes_mut() {
                crate::slots::admit_freed(tx, ch)?;
            }
            Ok(out)
        }
        Err(e) => {
            tx.keep(before);
            Err(e)
        }
    }
}
