//! Retention: what pruning reads, and pruning.
//!
//! | database | key | value |
//! | --- | --- | --- |
//! | `retained` | execution id | its definition version's own retention (JSON); only for executions whose definition has one |
//! | `expiring` | expiry class (u8), instant, execution id (finished executions only) | — |
//!
//! A finished execution's entry in `expiring` is its [`Expiry`]: the class says whose period
//! applies (the server's default for COMPLETED, for FAILED and CANCELLED, or the definition's
//! own), the instant is its end time (default classes) or when its own period runs out. So a
//! prune is one range scan per class, up to [`RetentionDefaults::cutoff`], that stops at the
//! first entry not yet due: it never walks over executions kept for a longer period.
//!
//! `ended` (end time, execution id) is still written for every finished execution, so that a
//! build from before retention, opened on the same directory, prunes as it did. What such a
//! build finished has no `expiring` entry: [`backfill`] adds them when the store opens. What
//! such a build pruned or reopened leaves a stale `expiring` entry: [`prune`] removes an entry
//! that no longer matches its execution.

use chrono::{DateTime, Utc};
use naxos_core::model::{ExecutionId, ExecutionStatus, Expiry, ExpiryClass, Retention, RetentionDefaults};
use naxos_core::Result;

use crate::env::Environment;
use crate::keys;
use crate::tables::{decode, encode, write_back, Reader, Tables};
use crate::writer::Tx;

/// An `expiring` key.
pub(crate) fn key(expiry: Expiry, id: ExecutionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + keys::TIME + keys::ID);
    k.push(class_byte(expiry.class));
    k.extend_from_slice(&keys::time(expiry.at));
    k.extend_from_slice(id.as_bytes());
    k
}

fn class_byte(class: ExpiryClass) -> u8 {
    match class {
        ExpiryClass::Completed => 0,
        ExpiryClass::Failed => 1,
        ExpiryClass::Own => 2,
    }
}

/// Records a new execution's own retention (nothing when it has none).
pub(crate) fn retain(tx: &mut Tx<'_, '_>, id: ExecutionId, retention: Option<&Retention>) -> Result<()> {
    match retention.filter(|r| !r.is_empty()) {
        Some(r) => {
            let retained = tx.tables().retained;
            tx.put(retained, id.as_bytes(), &encode(r)?)
        }
        None => Ok(()),
    }
}

/// An execution's own retention, if its definition has one.
fn own(r: Reader<'_>, txn: &heed::RoTxn<'_>, id: ExecutionId) -> Result<Option<Retention>> {
    r.get(txn, r.t.retained, id.as_bytes())?
        .map(|v| decode(v, "a retention"))
        .transpose()
}

/// Moves execution `id`'s `expiring` entry from where its old end (`(status, end time)`, or
/// `None` when it was not finished or absent) put it to where its new end puts it; when the
/// execution is gone (`gone`), also forgets its own retention.
pub(crate) fn moved(
    tx: &mut Tx<'_, '_>,
    id: ExecutionId,
    old: Option<(ExecutionStatus, DateTime<Utc>)>,
    new: Option<(ExecutionStatus, DateTime<Utc>)>,
    gone: bool,
) -> Result<()> {
    let t = *tx.tables();
    if old != new {
        let reader = tx.reader();
        let own = own(reader, tx.txn(), id)?;
        let entry = |end: Option<(ExecutionStatus, DateTime<Utc>)>| {
            end.and_then(|(status, at)| RetentionDefaults::expiry(status, at, own.as_ref()))
                .map(|e| key(e, id))
        };
        if let Some(k) = entry(old) {
            tx.delete(t.expiring, &k)?;
        }
        if let Some(k) = entry(new) {
            tx.put(t.expiring, &k, &[])?;
        }
    }
    if gone {
        tx.delete(t.retained, id.as_bytes())?;
    }
    Ok(())
}

/// Deletes up to `limit` executions due at now by `defaults`, with their tasks, index entries,
/// idempotency key and schedule entries: one range of `expiring` per class, each entry checked
/// against its execution as it stands (the index only narrows the search).
pub(crate) fn prune(tx: &mut Tx<'_, '_>, defaults: RetentionDefaults, limit: usize) -> Result<u64> {
    let now = tx.now();
    let t = *tx.tables();
    let mut pruned = 0;
    for class in ExpiryClass::ALL {
        let until = keys::time(defaults.cutoff(class, now));
        let prefix = [class_byte(class)];
        let mut due = Vec::new();
        {
            let reader = tx.reader();
            let err = |e| reader.env.error(e);
            for entry in t.expiring.prefix_iter(tx.txn(), &prefix).map_err(err)? {
                if pruned + due.len() as u64 == limit as u64 {
                    break;
                }
                let (k, _) = entry.map_err(err)?;
                // Strictly before the cutoff: an entry at it is not yet due.
                if k.get(1..1 + keys::TIME).is_none_or(|at| at >= &until[..]) {
                    break;
                }
                due.push(k.to_vec());
            }
        }
        for k in due {
            let id = keys::id_at(&k, 1 + keys::TIME)?;
            let Some(state) = tx.load(id)? else {
                tx.delete(t.expiring, &k)?; // its execution is gone: a stale entry
                continue;
            };
            let s = state.summary();
            let reader = tx.reader();
            let own = own(reader, tx.txn(), id)?;
            let current = s
                .end_time
                .filter(|_| state.is_finished())
                .and_then(|at| RetentionDefaults::expiry(s.status, at, own.as_ref()));
            if current.map(|e| key(e, id)).as_deref() != Some(&k[..]) {
                tx.delete(t.expiring, &k)?; // it moved since (reopened by another build)
                tx.keep(state);
                continue;
            }
            delete(tx, state)?;
            pruned += 1;
        }
        if pruned == limit as u64 {
            break;
        }
    }
    Ok(pruned)
}

/// Deletes a finished execution with everything kept for it.
fn delete(tx: &mut Tx<'_, '_>, state: naxos_core::state::ExecutionState) -> Result<()> {
    let t = *tx.tables();
    let s = state.summary();
    let id = s.id;
    write_back(tx, Some(&state), None)?;
    if s.schedule_id.is_some() {
        crate::schedules::forget_execution(tx, id)?;
    }
    if let Some(k) = &s.idempotency_key {
        let key = keys::idempotency(&s.definition_id, k)?;
        let reader = tx.reader();
        if reader.get(tx.txn(), t.idempotency, &key)? == Some(id.as_bytes()) {
            tx.delete(t.idempotency, &key)?;
        }
    }
    tx.forget(id);
    Ok(())
}

/// Adds the `expiring` entries of the executions a build from before retention finished (they
/// have an `ended` entry and no `expiring` one), in one write transaction, when the store
/// opens. Nothing to do (one comparison of two counts) once both hold the same executions.
pub(crate) fn backfill(env: &Environment, t: &Tables) -> Result<u64> {
    let err = |e| env.error(e);
    let mut wtxn = env.env().write_txn().map_err(err)?;
    if t.ended.len(&wtxn).map_err(err)? == t.expiring.len(&wtxn).map_err(err)? {
        return Ok(0);
    }
    let reader = Reader { env, t };
    let mut missing = Vec::new();
    for entry in t.ended.iter(&wtxn).map_err(err)? {
        let (k, _) = entry.map_err(err)?;
        let id = keys::id_at(k, keys::TIME)?;
        let Some(s) = reader.summary(&wtxn, id)? else { continue };
        let Some(at) = s.end_time.filter(|_| s.status.is_terminal()) else {
            continue;
        };
        let own = own(reader, &wtxn, id)?;
        if let Some(e) = RetentionDefaults::expiry(s.status, at, own.as_ref()) {
            let k = key(e, id);
            if t.expiring.get(&wtxn, &k).map_err(err)?.is_none() {
                missing.push(k);
            }
        }
    }
    for k in &missing {
        t.expiring.put(&mut wtxn, k, &[]).map_err(err)?;
    }
    wtxn.commit().map_err(err)?;
    Ok(missing.len() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use naxos_core::backend::{NewExecution, StopReason, Store};
    use naxos_core::model::{JobDefinition, RetentionDefaults, TaskBuilder};
    use naxos_core::testkit::test_clock;
    use naxos_core::Clock;

    use crate::env::{Environment, Kind, Options};
    use crate::tables::{Tables, NAMES};
    use crate::{LmdbConfig, LmdbStore};

    /// What a build from before retention finished (an `ended` entry, no `expiring` one) is
    /// pruned after the store reopens: the open adds the missing entries.
    #[tokio::test]
    async fn executions_finished_by_an_older_build_are_pruned() {
        let path = crate::temporary_path("retention-backfill");
        let clock = test_clock();
        let config = || {
            let mut config = LmdbConfig::new(&path);
            config.clock = Clock::Manual(clock.clone());
            config
        };
        let id = {
            let store = LmdbStore::with_config(config()).unwrap();
            let job = JobDefinition::builder("old")
                .task(TaskBuilder::new("only", "f"))
                .build();
            let put = store.put_definition(job).await.unwrap();
            let new = NewExecution::new(&put.definition, naxos_core::serde_json::json!({}));
            let id = store.create_execution(new).await.unwrap().execution_id;
            store.stop_execution(id, StopReason::Cancelled).await.unwrap();
            id
        };
        {
            // As the older build left it: no `expiring` entries.
            let options = Options {
                path: &path,
                map_size: LmdbConfig::new(&path).map_size,
                kind: Kind::Store,
                temporary: false,
            };
            let (env, dbs) = Environment::open(options, NAMES).unwrap();
            let t = Tables::new(dbs);
            let mut wtxn = env.env().write_txn().unwrap();
            assert_eq!(t.expiring.len(&wtxn).unwrap(), 1);
            t.expiring.clear(&mut wtxn).unwrap();
            wtxn.commit().unwrap();
        }
        let store = LmdbStore::with_config(config()).unwrap();
        clock.advance(Duration::from_secs(2));
        let defaults = RetentionDefaults::uniform(Duration::from_secs(1));
        assert_eq!(store.prune(defaults, 10).await.unwrap(), 1);
        assert!(store.get_execution(id).await.unwrap_err().is_not_found());
        drop(store);
        std::fs::remove_dir_all(&path).unwrap();
    }
}
