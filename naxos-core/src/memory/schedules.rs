//! The in-memory store's schedules: a map by id, and the ticks fired.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::backend::{Fired, ScheduleTick};
use crate::model::{Schedule, SchedulePut, StoredSchedule};
use crate::{Error, Result};

/// Schedules by id, and the (schedule, tick) of every execution a tick created that is still
/// in the store (removed when it is pruned).
#[derive(Debug, Default)]
pub(super) struct Schedules {
    by_id: BTreeMap<String, StoredSchedule>,
    fired: BTreeSet<(String, DateTime<Utc>)>,
}

impl Schedules {
    pub(super) fn put(&mut self, schedule: Schedule, now: DateTime<Utc>) -> SchedulePut {
        let put = SchedulePut::of(self.by_id.get(&schedule.id).cloned(), schedule, now);
        if put.changed() {
            self.by_id.insert(put.schedule.id().to_string(), put.schedule.clone());
        }
        put
    }

    pub(super) fn get(&self, id: &str) -> Result<&StoredSchedule> {
        self.by_id.get(id).ok_or_else(|| Error::not_found("schedule", id))
    }

    pub(super) fn list(&self) -> Vec<StoredSchedule> {
        self.by_id.values().cloned().collect()
    }

    pub(super) fn delete(&mut self, id: &str) -> Result<()> {
        self.by_id.remove(id).ok_or_else(|| Error::not_found("schedule", id))?;
        self.fired.retain(|(s, _)| s != id);
        Ok(())
    }

    pub(super) fn set_paused(&mut self, id: &str, paused: bool, now: DateTime<Utc>) -> Result<StoredSchedule> {
        let schedule = self.by_id.get_mut(id).ok_or_else(|| Error::not_found("schedule", id))?;
        if let Some(changed) = schedule.set_paused(paused, now) {
            *schedule = changed;
        }
        Ok(schedule.clone())
    }

    pub(super) fn skip(&mut self, id: &str, through: DateTime<Utc>) -> Result<()> {
        let schedule = self.by_id.get_mut(id).ok_or_else(|| Error::not_found("schedule", id))?;
        schedule.last_tick = schedule.last_tick.max(through);
        Ok(())
    }

    /// `Some` when the tick is not to be created (paused, passed or fired already).
    pub(super) fn refused(&self, tick: &ScheduleTick) -> Result<Option<Fired>> {
        let schedule = self.get(&tick.schedule_id)?;
        if self.fired.contains(&(tick.schedule_id.clone(), tick.at)) {
            return Ok(Some(Fired::Taken));
        }
        Ok(Fired::refused(schedule, tick))
    }

    /// Records a fired tick and moves the schedule's cursor to it.
    pub(super) fn record(&mut self, tick: &ScheduleTick) {
        self.fired.insert((tick.schedule_id.clone(), tick.at));
        if let Some(schedule) = self.by_id.get_mut(&tick.schedule_id) {
            schedule.last_tick = schedule.last_tick.max(tick.at);
        }
    }

    /// Forgets a fired tick whose execution was pruned.
    pub(super) fn forget(&mut self, schedule_id: &str, at: DateTime<Utc>) {
        self.fired.remove(&(schedule_id.to_string(), at));
    }
}
