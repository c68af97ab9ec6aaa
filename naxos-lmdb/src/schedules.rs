//! Cron schedules in the LMDB store: four databases of their own, beside the executions'.
//!
//! | database | key | value |
//! | --- | --- | --- |
//! | `schedules` | schedule id | the schedule with its cursor (JSON) |
//! | `schedule_ticks` | schedule id, `0`, tick (8 bytes) | the tick's execution id |
//! | `by_schedule` | schedule id, `0`, execution id | — |
//! | `scheduled` | execution id | its tick (8 bytes), then the schedule id |
//!
//! The execution rows are untouched (an execution's schedule is read from `scheduled`), so
//! the data format stays: a directory written by a build without schedules opens as is (the
//! databases are created empty), and a build without schedules reads every execution of one
//! with them. Entries that name an execution no longer there (pruned by such a build) are
//! passed over.
//!
//! Every write is a request to the writer thread, so a tick's fire — the check of the cursor
//! and of `schedule_ticks`, the execution, its entries and the cursor's move — is one write
//! transaction, and two fires of one tick run one after the other: the second finds it taken.

use chrono::{DateTime, Utc};
use heed::RoTxn;
use naxos_core::backend::{Fired, NewExecution, ScheduleTick};
use naxos_core::model::{ExecutionId, ExecutionSummary, Schedule, SchedulePut, StoredSchedule};
use naxos_core::state::settle_family;
use naxos_core::{Error, Result};

use crate::error::corrupt;
use crate::keys;
use crate::tables::{decode, encode, Reader};
use crate::writer::Tx;

fn not_found(id: &str) -> Error {
    Error::not_found("schedule", id)
}

fn tick_key(schedule: &str, at: DateTime<Utc>) -> Result<Vec<u8>> {
    let mut k = keys::prefix(schedule);
    k.extend_from_slice(&keys::time(at));
    keys::checked(k, "a schedule id")
}

impl Reader<'_> {
    /// One schedule.
    pub(crate) fn schedule(&self, txn: &RoTxn<'_>, id: &str) -> Result<Option<StoredSchedule>> {
        let key = keys::checked(id.as_bytes().to_vec(), "a schedule id")?;
        self.get(txn, self.t.schedules, &key)?
            .map(|v| decode(v, "a schedule"))
            .transpose()
    }

    /// Every schedule, by id.
    pub(crate) fn schedules(&self, txn: &RoTxn<'_>) -> Result<Vec<StoredSchedule>> {
        let iter = self.t.schedules.iter(txn).map_err(|e| self.env.error(e))?;
        iter.map(|entry| {
            let (_, value) = entry.map_err(|e| self.env.error(e))?;
            decode(value, "a schedule")
        })
        .collect()
    }

    /// `summary` with its schedule, if a tick started it.
    pub(crate) fn with_schedule(&self, txn: &RoTxn<'_>, mut summary: ExecutionSummary) -> Result<ExecutionSummary> {
        if let Some(value) = self.get(txn, self.t.scheduled, summary.id.as_bytes())? {
            let id = value
                .get(keys::TIME..)
                .ok_or_else(|| corrupt(format!("a `scheduled` entry of {} bytes", value.len())))?;
            let id = std::str::from_utf8(id).map_err(|_| corrupt("a schedule id that is not UTF-8"))?;
            summary.schedule_id = Some(id.to_string());
        }
        Ok(summary)
    }

    /// Up to `n` of a schedule's executions below `below`, newest first.
    pub(crate) fn scheduled_ids(
        &self,
        txn: &RoTxn<'_>,
        schedule: &str,
        below: Option<ExecutionId>,
        n: usize,
    ) -> Result<Vec<ExecutionId>> {
        use std::ops::Bound;
        let prefix = keys::prefix(schedule);
        let upper = match below {
            Some(c) => [prefix.as_slice(), c.as_bytes()].concat(),
            None => keys::prefix_end(&prefix).ok_or_else(|| corrupt("a schedule id of 0xff bytes"))?,
        };
        let range = (Bound::Included(prefix.as_slice()), Bound::Excluded(upper.as_slice()));
        let iter = self
            .t
            .by_schedule
            .rev_range(txn, &range)
            .map_err(|e| self.env.error(e))?;
        let mut ids = Vec::new();
        for entry in iter.take(n) {
            let (key, _) = entry.map_err(|e| self.env.error(e))?;
            ids.push(keys::id_at(key, prefix.len())?);
        }
        Ok(ids)
    }
}

fn write(tx: &mut Tx<'_, '_>, schedule: &StoredSchedule) -> Result<()> {
    let key = keys::checked(schedule.id().as_bytes().to_vec(), "a schedule id")?;
    let db = tx.tables().schedules;
    tx.put(db, &key, &encode(schedule)?)
}

fn existing(tx: &Tx<'_, '_>, id: &str) -> Result<StoredSchedule> {
    tx.reader().schedule(tx.txn(), id)?.ok_or_else(|| not_found(id))
}

pub(crate) fn put(tx: &mut Tx<'_, '_>, schedule: &Schedule) -> Result<SchedulePut> {
    let now = tx.now();
    let existing = tx.reader().schedule(tx.txn(), &schedule.id)?;
    let put = SchedulePut::of(existing, schedule.clone(), now);
    if put.changed() {
        write(tx, &put.schedule)?;
    }
    Ok(put)
}

/// Deletes a schedule and its tick records (its executions stay, and keep its id).
pub(crate) fn delete(tx: &mut Tx<'_, '_>, id: &str) -> Result<()> {
    existing(tx, id)?;
    let t = *tx.tables();
    let prefix = keys::prefix(id);
    let ticks: Vec<Vec<u8>> = {
        let iter = t
            .schedule_ticks
            .prefix_iter(tx.txn(), &prefix)
            .map_err(|e| tx.reader().env.error(e))?;
        iter.map(|entry| entry.map(|(k, _)| k.to_vec()).map_err(|e| tx.reader().env.error(e)))
            .collect::<Result<_>>()?
    };
    for key in ticks {
        tx.delete(t.schedule_ticks, &key)?;
    }
    tx.delete(t.schedules, id.as_bytes())?;
    Ok(())
}

pub(crate) fn set_paused(tx: &mut Tx<'_, '_>, id: &str, paused: bool) -> Result<StoredSchedule> {
    let schedule = existing(tx, id)?;
    match schedule.set_paused(paused, tx.now()) {
        None => Ok(schedule),
        Some(changed) => {
            write(tx, &changed)?;
            Ok(changed)
        }
    }
}

pub(crate) fn skip(tx: &mut Tx<'_, '_>, id: &str, through: DateTime<Utc>) -> Result<()> {
    let mut schedule = existing(tx, id)?;
    if through > schedule.last_tick {
        schedule.last_tick = through;
        write(tx, &schedule)?;
    }
    Ok(())
}

/// Fires a tick: checks, creates the execution with its entries, moves the cursor.
pub(crate) fn fire(tx: &mut Tx<'_, '_>, tick: &ScheduleTick, new: &NewExecution) -> Result<Fired> {
    let t = *tx.tables();
    let mut schedule = existing(tx, &tick.schedule_id)?;
    let key = tick_key(&tick.schedule_id, tick.at)?;
    if tx.reader().get(tx.txn(), t.schedule_ticks, &key)?.is_some() {
        return Ok(Fired::Taken);
    }
    if let Some(refused) = Fired::refused(&schedule, tick) {
        return Ok(refused);
    }
    let id = new.id;
    if tx.reader().summary(tx.txn(), id)?.is_some() {
        return Err(Error::conflict(format!("execution {id} already exists")));
    }
    let mut new = new.clone();
    new.schedule_id = Some(tick.schedule_id.clone());
    let now = tx.now();
    let (state, mut changes) = crate::tables::insert(tx, new, now)?;
    settle_family(&mut crate::tables::TxFamily(tx), &state, false, &mut changes, now)?;
    let status = tx.load(id)?.map_or(state.summary().status, |s| s.summary().status);
    tx.put(t.schedule_ticks, &key, id.as_bytes())?;
    let mut by_schedule = keys::prefix(&tick.schedule_id);
    by_schedule.extend_from_slice(id.as_bytes());
    tx.put(t.by_schedule, &by_schedule, &[])?;
    let scheduled = [&keys::time(tick.at)[..], tick.schedule_id.as_bytes()].concat();
    tx.put(t.scheduled, id.as_bytes(), &scheduled)?;
    schedule.last_tick = tick.at;
    write(tx, &schedule)?;
    Ok(Fired::Created(Box::new(naxos_core::backend::Created {
        execution_id: id,
        created: true,
        status,
        changes,
    })))
}

/// Removes a pruned execution's schedule entries (its tick record goes too: the schedule's
/// cursor, past the tick, keeps it from firing again).
pub(crate) fn forget_execution(tx: &mut Tx<'_, '_>, id: ExecutionId) -> Result<()> {
    let t = *tx.tables();
    let Some(value) = tx
        .reader()
        .get(tx.txn(), t.scheduled, id.as_bytes())?
        .map(<[u8]>::to_vec)
    else {
        return Ok(());
    };
    let (at, schedule) = value
        .split_at_checked(keys::TIME)
        .ok_or_else(|| corrupt(format!("a `scheduled` entry of {} bytes", value.len())))?;
    let mut by_schedule = [schedule, &[0u8][..]].concat();
    by_schedule.extend_from_slice(id.as_bytes());
    tx.delete(t.by_schedule, &by_schedule)?;
    let mut tick = [schedule, &[0u8][..]].concat();
    tick.extend_from_slice(at);
    if tx.reader().get(tx.txn(), t.schedule_ticks, &tick)? == Some(id.as_bytes()) {
        tx.delete(t.schedule_ticks, &tick)?;
    }
    tx.delete(t.scheduled, id.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use naxos_core::backend::Store;
    use naxos_core::model::Schedule;

    use crate::env::{Environment, Kind, Options};
    use crate::tables::NAMES;
    use crate::{LmdbConfig, LmdbStore};

    /// The databases of the build before schedules.
    const BEFORE: usize = 11;

    /// A directory of a build without schedules opens (their databases are created), and one
    /// with schedules still opens with only the older databases: no data format change.
    #[tokio::test]
    async fn directories_open_across_the_schedules_change() {
        let path = crate::temporary_path("schedules-format");
        let options = || Options {
            path: &path,
            map_size: 1 << 24,
            kind: Kind::Store,
            temporary: false,
        };
        let older: [&str; BEFORE] = NAMES[..BEFORE].try_into().unwrap();
        drop(Environment::open(options(), older).expect("as the older build made it"));
        {
            let store = LmdbStore::with_config(LmdbConfig::new(&path)).expect("the new build opens it");
            let schedule = Schedule::new("s", "d", "* * * * *");
            assert!(store.put_schedule(schedule).await.unwrap().created);
        }
        drop(Environment::open(options(), older).expect("the older build still opens it"));
        let store = LmdbStore::with_config(LmdbConfig::new(&path)).unwrap();
        assert_eq!(
            store.list_schedules().await.unwrap().len(),
            1,
            "and the schedule is still there"
        );
        drop(store);
        std::fs::remove_dir_all(&path).unwrap();
    }
}
