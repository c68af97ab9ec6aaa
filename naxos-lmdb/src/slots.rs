//! Concurrency slots (naxos-core's `state/concurrency.rs`) and rate-limit windows
//! (`state/rate.rs`, one JSON record per scope in `rate_limits`) in LMDB. Slots: the runs holding a slot of
//! a scope and the runs waiting for one are the `slots_held` and `slots_waiting` indexes
//! (`keys.rs`), which [`write_back`](crate::tables::write_back) keeps in step with the task
//! rows. The writer runs one transaction at a time, so a claim's count holds until its commit,
//! and the admission of the waiting runs happens in the very transaction that freed a slot.

use naxos_core::backend::Changes;
use naxos_core::model::ExecutionId;
use naxos_core::state::RateWindow;
use naxos_core::Result;

use crate::keys;
use crate::tables::apply;
use crate::writer::Tx;

/// How many runs hold a slot of `scope`.
fn held(tx: &Tx<'_, '_>, scope: &str) -> Result<usize> {
    let reader = tx.reader();
    let err = |e| reader.env.error(e);
    let prefix = keys::slot_prefix(scope);
    let mut n = 0;
    for entry in tx.tables().slots_held.prefix_iter(tx.txn(), &prefix).map_err(err)? {
        entry.map_err(err)?;
        n += 1;
    }
    Ok(n)
}

/// The first run waiting for a slot of `scope` (the highest priority, then the oldest): its
/// execution and task position.
fn first_waiting(tx: &Tx<'_, '_>, scope: &str) -> Result<Option<(ExecutionId, usize)>> {
    let reader = tx.reader();
    let err = |e| reader.env.error(e);
    let prefix = keys::slot_prefix(scope);
    let mut iter = tx.tables().slots_waiting.prefix_iter(tx.txn(), &prefix).map_err(err)?;
    let Some(entry) = iter.next() else {
        return Ok(None);
    };
    let (key, _) = entry.map_err(err)?;
    let at = keys::slot_waiting_id_at(prefix.len());
    let id = keys::id_at(key, at)?;
    let index = key
        .get(at + 16..)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .ok_or_else(|| crate::error::corrupt(format!("a slots_waiting key of {} bytes", key.len())))?;
    Ok(Some((id, index)))
}

/// Whether a claim finds a slot of `scope` (of `limit`) free: fewer than `limit` held and none
/// waiting.
pub(crate) fn free(tx: &Tx<'_, '_>, scope: &str, limit: u32) -> Result<bool> {
    Ok(first_waiting(tx, scope)?.is_none() && held(tx, scope)? < limit as usize)
}

/// Gives back, in `tx`, the rate-limit turns a transition released (`ch.released_turns`,
/// emptied), and admits the runs waiting for the slots it freed (`ch.freed_slots`, emptied),
/// oldest first while a slot of theirs is free; what that changed is added to `ch`.
pub(crate) fn admit_freed(tx: &mut Tx<'_, '_>, ch: &mut Changes) -> Result<()> {
    for scope in std::mem::take(&mut ch.released_turns) {
        let mut window = rate_window(tx, &scope)?;
        window.release();
        save_rate_window(tx, &scope, &window)?;
    }
    if ch.freed_slots.is_empty() {
        return Ok(());
    }
    let mut freed = std::mem::take(&mut ch.freed_slots);
    freed.sort_unstable();
    freed.dedup();
    for scope in freed {
        admit_scope(tx, &scope, ch)?;
    }
    Ok(())
}

/// Admits the runs waiting for `scope`, the highest priority then the oldest first, while a
/// slot of it is free.
pub(crate) fn admit_scope(tx: &mut Tx<'_, '_>, scope: &str, ch: &mut Changes) -> Result<()> {
    let now = tx.now();
    while let Some((id, index)) = first_waiting(tx, scope)? {
        let Some(state) = tx.load(id)? else {
            return Err(crate::error::corrupt(format!(
                "slots_waiting names execution {id}, which is not stored"
            )));
        };
        let task_id = state.tasks().get(index).map(|t| t.task_id.clone()).unwrap_or_default();
        let limit = state.waiting_for_slot(&task_id).map(|(_, limit)| limit as usize);
        // Every slot is held (the transition that frees one admits the next), or the index and
        // the row disagree (nothing to admit, rather than loop).
        let free = match limit {
            Some(limit) => held(tx, scope)? < limit,
            None => false,
        };
        if !free {
            tx.keep(state);
            return Ok(());
        }
        let admitted = apply(tx, state, |s| Ok(s.admit_slot(&task_id, now).unwrap_or_default()))?;
        if admitted.ready.is_empty() {
            return Ok(());
        }
        ch.extend(admitted);
    }
    Ok(())
}

/// The rate-limit window of `scope` (empty the first time).
pub(crate) fn rate_window(tx: &Tx<'_, '_>, scope: &str) -> Result<RateWindow> {
    match tx.reader().get(tx.txn(), tx.tables().rate_limits, scope.as_bytes())? {
        Some(bytes) => crate::tables::decode(bytes, "a rate-limit window"),
        None => Ok(RateWindow::default()),
    }
}

/// Writes the rate-limit window of `scope`.
pub(crate) fn save_rate_window(tx: &mut Tx<'_, '_>, scope: &str, window: &RateWindow) -> Result<()> {
    let t = *tx.tables();
    tx.put(t.rate_limits, scope.as_bytes(), &crate::tables::encode(window)?)
}

/// Scopes with runs waiting for a slot, up to `limit` of them (the sweeper admits what it can).
pub(crate) fn waiting_scopes(tx: &Tx<'_, '_>, limit: usize) -> Result<Vec<String>> {
    let reader = tx.reader();
    let err = |e| reader.env.error(e);
    let mut scopes: Vec<String> = Vec::new();
    for entry in tx.tables().slots_waiting.iter(tx.txn()).map_err(err)? {
        let (key, _) = entry.map_err(err)?;
        let (scope, _) = keys::slot_of(key)
            .ok_or_else(|| crate::error::corrupt(format!("a slots_waiting key of {} bytes", key.len())))?;
        if scopes.last().is_none_or(|s| s != scope) {
            if scopes.len() == limit {
                break;
            }
            scopes.push(scope.to_string());
        }
    }
    Ok(scopes)
}
