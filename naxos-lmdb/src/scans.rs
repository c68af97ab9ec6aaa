//! The whole-store scans: lease recovery, stale take-over, due waits and delayed starts, and
//! deadlines (pruning is `retention.rs`'s).
//!
//! Each finds its candidates in a time-ordered index — reading only the entries that are due,
//! and stopping at the first that is not — then applies the state module's own scan to each
//! candidate execution, which decides exactly (the index only narrows the search).

use std::time::Duration;

use chrono::{DateTime, Utc};
use heed::RoTxn;
use naxos_core::backend::Changes;
use naxos_core::clock::before;
use naxos_core::model::{BlockedBy, ExecutionId};
use naxos_core::state::{republish_wait, ExecutionState, MAX_DOUBLINGS};
use naxos_core::Result;

use crate::env::Db;
use crate::keys;
use crate::tables::{apply, Reader};
use crate::writer::Tx;

/// One key and value of a scan.
type Entry<'t> = heed::Result<(&'t [u8], &'t [u8])>;

/// Adds to `ids` the executions named by the keys of `db` under `prefix` whose time (just
/// after the prefix) is at most `until`, in key order, without repeats, from at most `limit`
/// keys.
fn due(
    tx: &Tx<'_, '_>,
    db: Db,
    prefix: &[u8],
    until: DateTime<Utc>,
    limit: usize,
    ids: &mut Vec<ExecutionId>,
) -> Result<()> {
    let reader = tx.reader();
    let until = keys::time(until);
    let at = prefix.len();
    let err = |e| reader.env.error(e);
    // LMDB refuses an empty key, so an empty prefix is a scan from the start.
    let iter: Box<dyn Iterator<Item = Entry<'_>>> = if prefix.is_empty() {
        Box::new(db.iter(tx.txn()).map_err(err)?)
    } else {
        Box::new(db.prefix_iter(tx.txn(), prefix).map_err(err)?)
    };
    for (n, entry) in iter.enumerate() {
        if n == limit {
            break;
        }
        let (key, _) = entry.map_err(err)?;
        if key.get(at..at + keys::TIME).is_none_or(|t| t > &until[..]) {
            break;
        }
        let id = keys::id_at(key, at + keys::TIME)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(())
}

/// RUNNING tasks whose lease expired: the candidates are the `running` index up to now.
pub(crate) fn recover_expired(tx: &mut Tx<'_, '_>, max_lease_expiries: u32, limit: usize) -> Result<Changes> {
    let now = tx.now();
    let mut ids = Vec::new();
    due(tx, tx.tables().running, &[], now, limit, &mut ids)?;
    apply_within(tx, ids, limit, |s, budget| {
        s.recover_expired(now, max_lease_expiries, budget)
    })
}

/// QUEUED tasks whose message may be lost and RETRYING ones long due.
pub(crate) fn take_stale(tx: &mut Tx<'_, '_>, older_than: Duration, limit: usize) -> Result<Changes> {
    let now = tx.now();
    let t = *tx.tables();
    let mut ids = Vec::new();
    // One range per republish count, each ordered by when its tasks became QUEUED, so that a
    // task waiting out a long republish wait is never read before it is due.
    for republished in 0..=MAX_DOUBLINGS {
        let until = before(now, republish_wait(older_than, republished));
        due(tx, t.queued, &[republished as u8], until, limit, &mut ids)?;
    }
    due(tx, t.retrying, &[], before(now, older_than), limit, &mut ids)?;
    apply_within(tx, ids, limit, |s, budget| s.take_stale(older_than, now, budget))
}

/// WAITING tasks whose due time has passed, and delayed executions whose time has come: the
/// candidates are the `waiting` index up to now.
pub(crate) fn wake_due(tx: &mut Tx<'_, '_>, limit: usize) -> Result<Changes> {
    let now = tx.now();
    let mut ids = Vec::new();
    due(tx, tx.tables().waiting, &[], now, limit, &mut ids)?;
    apply_within(tx, ids, limit, |s, budget| s.wake_due(now, budget))
}

/// Tasks a pause blocked, in executions whose definition is no longer paused: the candidates
/// are the `blocked` index, oldest first.
pub(crate) fn admit_blocked(tx: &mut Tx<'_, '_>, limit: usize) -> Result<Changes> {
    let now = tx.now();
    let t = *tx.tables();
    let reader = tx.reader();
    let mut paused = std::collections::HashSet::new();
    for entry in t.paused.iter(tx.txn()).map_err(|e| reader.env.error(e))? {
        let (key, _) = entry.map_err(|e| reader.env.error(e))?;
        paused.insert(key.to_vec());
    }
    // Only executions of definitions no longer paused are loaded: a long pause with many
    // blocked tasks costs each sweep a read of their summaries, not of their states.
    let mut ids = Vec::new();
    for entry in t.blocked.iter(tx.txn()).map_err(|e| reader.env.error(e))? {
        if ids.len() == limit {
            break;
        }
        let (key, _) = entry.map_err(|e| reader.env.error(e))?;
        let id = keys::id_at(key, keys::TIME)?;
        if ids.contains(&id) {
            continue;
        }
        let resumed = reader
            .summary(tx.txn(), id)?
            .is_some_and(|s| !paused.contains(s.definition_id.as_bytes()));
        if resumed {
            ids.push(id);
        }
    }
    apply_within(tx, ids, limit, |s, budget| {
        if !s.blocked(BlockedBy::Paused) {
            return Changes::default();
        }
        *budget -= 1;
        s.unblock(BlockedBy::Paused, now)
    })
}

/// Runs `scan` on each candidate's state in turn (the state module decides what is due) until
/// `limit` tasks were taken.
fn apply_within(
    tx: &mut Tx<'_, '_>,
    ids: Vec<ExecutionId>,
    limit: usize,
    mut scan: impl FnMut(&mut ExecutionState, &mut usize) -> Changes,
) -> Result<Changes> {
    let mut budget = limit;
    let mut changes = Changes::default();
    for id in ids {
        if budget == 0 {
            break;
        }
        let Some(state) = tx.load(id)? else { continue };
        changes.extend(apply(tx, state, |s| Ok(scan(s, &mut budget)))?);
    }
    Ok(changes)
}

/// Unfinished children of sub-jobs whose parent finished (a read: nothing changes).
pub(crate) fn orphaned_children(r: Reader<'_>, txn: &RoTxn<'_>, limit: usize) -> Result<Vec<ExecutionId>> {
    let iter = r.t.children.iter(txn).map_err(|e| r.env.error(e))?;
    let mut orphans = Vec::new();
    for entry in iter {
        if orphans.len() == limit {
            break;
        }
        let (child, parent) = entry.map_err(|e| r.env.error(e))?;
        let (child, parent) = (keys::id_of(child)?, keys::id_of(parent)?);
        if r.summary(txn, parent)?.is_some_and(|p| p.status.is_terminal()) {
            orphans.push(child);
        }
    }
    Ok(orphans)
}

/// Unfinished executions past their deadline (a read: nothing changes).
pub(crate) fn overdue(r: Reader<'_>, txn: &RoTxn<'_>, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExecutionId>> {
    let until = keys::time(now);
    let iter = r.t.deadlines.iter(txn).map_err(|e| r.env.error(e))?;
    let mut overdue = Vec::new();
    for entry in iter {
        if overdue.len() == limit {
            break;
        }
        let (key, _) = entry.map_err(|e| r.env.error(e))?;
        if key[..keys::TIME.min(key.len())] > until[..] {
            break;
        }
        let id = keys::id_at(key, keys::TIME)?;
        let overdue_now = r.summary(txn, id)?.is_some_and(|s| s.is_overdue(now));
        if overdue_now {
            overdue.push(id);
        }
    }
    Ok(overdue)
}
