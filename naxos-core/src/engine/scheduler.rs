//! The scheduler: fires due cron schedule ticks, on every node at once.
//!
//! There is no leader. Each pass reads every schedule, works out which of its ticks are due
//! from its cursor ([`StoredSchedule::last_tick`]) and the engine's clock, and asks the Store to
//! fire each one ([`Store::fire_schedule`](crate::backend::Store::fire_schedule)): the Store
//! records the unique (schedule, tick) and creates the tick's execution in one atomic step, so
//! however many nodes try, one execution starts, and the others see the tick taken.
//!
//! **Missed ticks.** A tick is *missed* when it was not fired within
//! [`EngineConfig::schedule_grace`](super::EngineConfig::schedule_grace) after its time — no
//! node ran the scheduler then. The schedule's [`CatchUp`](crate::model::CatchUp) says which
//! of them still run: `skip` none, `one` the latest, `all` every one (the latest
//! [`MAX_CATCH_UP`](crate::model::MAX_CATCH_UP)); the rest are skipped (the cursor moves past
//! them). Ticks within the grace run, late. Ticks that passed while the schedule was paused
//! are behind its cursor (a resume moves it to the moment of the resume), so never run.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::inner::Inner;
use crate::backend::{Fired, NewExecution, ScheduleTick};
use crate::clock::before;
use crate::model::{Cadence, CatchUp, StoredSchedule};
use crate::{Error, Result};

/// What one scheduler pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    /// Ticks fired by this node: one execution each.
    pub fired: usize,
    /// Ticks this node found fired already (by another node) or passed.
    pub taken: usize,
    /// Schedules whose missed ticks were skipped without running (by their `catchUp`).
    pub skipped: usize,
    /// The earliest tick to come of the schedules the pass read: when the next pass is due.
    pub next_tick: Option<DateTime<Utc>>,
}

/// Runs a pass at each schedule's next tick, and at least every `schedule_interval` (which
/// picks up schedules created or changed elsewhere), until the node stops. A tick thus fires
/// when it comes, not up to an interval later.
pub(crate) async fn run(inner: Arc<Inner>) {
    let interval = inner.config.schedule_interval;
    loop {
        let wait = match schedule_once(&inner).await {
            Ok(r) => {
                if r.fired > 0 || r.skipped > 0 {
                    tracing::debug!(?r, "schedules");
                }
                until_next(r.next_tick, inner.now(), interval)
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler pass failed");
                interval
            }
        };
        tokio::select! {
            _ = inner.stopping.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long to wait for the next pass: until `next_tick`, at most `interval`. A tick already
/// due after a pass is one the pass could not fire (the Store refused it): the next try waits
/// the interval, so a failing Store is not asked again at once.
fn until_next(
    next_tick: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> std::time::Duration {
    match next_tick {
        Some(at) if at > now => (at - now).to_std().unwrap_or(interval).min(interval),
        _ => interval,
    }
}

/// One pass over every schedule. A Store without schedules makes it a no-op.
pub(crate) async fn schedule_once(inner: &Inner) -> Result<ScheduleReport> {
    let schedules = match inner.store.list_schedules().await {
        Err(Error::NotSupported { .. }) => return Ok(ScheduleReport::default()),
        other => other?,
    };
    let mut report = ScheduleReport::default();
    for schedule in schedules.iter().filter(|s| !s.schedule.paused) {
        if let Err(e) = fire_due(inner, schedule, &mut report).await {
            tracing::warn!(schedule = schedule.id(), error = %e, "could not fire a schedule's ticks");
        }
        let next = schedule.next_tick(inner.now());
        report.next_tick = match (report.next_tick, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(report)
}

/// The ticks of one schedule to fire now, and how far to skip.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// To fire, in order.
    pub(crate) fire: Vec<DateTime<Utc>>,
    /// The latest missed tick, when the firings do not move the cursor past it.
    pub(crate) skip_through: Option<DateTime<Utc>>,
}

/// Which ticks after `cursor` are due at `now`: those within `grace` of `now` fire, the missed
/// ones before as `catch_up` says.
pub(crate) fn plan(
    cadence: &Cadence,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: std::time::Duration,
    catch_up: CatchUp,
) -> Plan {
    let missed_before = before(now, grace);
    // The latest missed tick, to skip through, whatever the mode; then those that run.
    let missed = cadence.latest_before(cursor, missed_before, catch_up.runs().max(1));
    let on_time_after = cursor.max(missed_before - chrono::Duration::nanoseconds(1));
    let mut fire: Vec<DateTime<Utc>> = match catch_up {
        CatchUp::Skip => Vec::new(),
        CatchUp::One | CatchUp::All => missed.clone(),
    };
    fire.extend(cadence.ticks(on_time_after, now));
    let skip_through = missed
        .last()
        .copied()
        .filter(|last| fire.last().is_none_or(|f| f < last));
    Plan { fire, skip_through }
}

async fn fire_due(inner: &Inner, stored: &StoredSchedule, report: &mut ScheduleReport) -> Result<()> {
    let schedule = &stored.schedule;
    let cadence = schedule.cadence()?;
    let plan = plan(
        &cadence,
        stored.last_tick,
        inner.now(),
        inner.config.schedule_grace,
        schedule.catch_up,
    );
    for at in plan.fire {
        // The latest version at the tick: read from the Store, not the node's cache.
        let definition = inner.store.get_definition(&schedule.definition_id, None).await?;
        let execution = NewExecution::new(&definition, schedule.params.clone());
        let tick = ScheduleTick {
            schedule_id: schedule.id.clone(),
            at,
        };
        match inner.store.fire_schedule(tick, execution).await? {
            Fired::Created(created) => {
                report.fired += 1;
                super::metrics::submitted(&schedule.definition_id);
                tracing::info!(schedule = %schedule.id, tick = %at, execution_id = %created.execution_id, "schedule fired");
                inner.dispatch(created.changes).await;
            }
            Fired::Taken => report.taken += 1,
            Fired::Paused => return Ok(()),
        }
    }
    if let Some(through) = plan.skip_through {
        inner.store.skip_schedule_ticks(&schedule.id, through).await?;
        report.skipped += 1;
        tracing::info!(schedule = %schedule.id, through = %through, "missed schedule ticks skipped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_next_pass_waits_for_the_next_tick_at_most_an_interval() {
        let now = at("2024-01-01T10:00:00Z");
        let interval = Duration::from_secs(1);
        let next = |s: &str| until_next(Some(at(s)), now, interval);
        assert_eq!(next("2024-01-01T10:00:00.250Z"), Duration::from_millis(250));
        assert_eq!(
            next("2024-01-01T10:05:00Z"),
            interval,
            "a far tick: a pass every interval"
        );
        assert_eq!(next("2024-01-01T09:59:59Z"), interval, "a tick the pass could not fire");
        assert_eq!(until_next(None, now, interval), interval, "no schedule");
    }

    /// Every minute, down from 10:00:30 to 10:05:30 (ticks 10:01 … 10:05 missed with a 10 s
    /// grace), then one on time at 10:06.
    #[test]
    fn each_catch_up_mode_plans_its_missed_ticks() {
        let cadence = Cadence::new("* * * * *", "UTC").unwrap();
        let cursor = at("2024-01-01T10:00:00Z");
        let grace = Duration::from_secs(10);
        let plan_at = |now: &str, mode| plan(&cadence, cursor, at(now), grace, mode);
        let missed: Vec<_> = (1..=5).map(|m| at(&format!("2024-01-01T10:0{m}:00Z"))).collect();
        assert_eq!(
            plan_at("2024-01-01T10:05:30Z", CatchUp::Skip),
            Plan {
                fire: vec![],
                skip_through: Some(missed[4])
            }
        );
        assert_eq!(
            plan_at("2024-01-01T10:05:30Z", CatchUp::One),
            Plan {
                fire: vec![missed[4]],
                skip_through: None
            }
        );
        assert_eq!(
            plan_at("2024-01-01T10:05:30Z", CatchUp::All),
            Plan {
                fire: missed.clone(),
                skip_through: None
            }
        );
        // 10:06:05: 10:06 is within the grace, so it runs in every mode.
        let now = "2024-01-01T10:06:05Z";
        assert_eq!(plan_at(now, CatchUp::Skip).fire, vec![at("2024-01-01T10:06:00Z")]);
        assert_eq!(
            plan_at(now, CatchUp::One).fire,
            vec![missed[4], at("2024-01-01T10:06:00Z")]
        );
        assert_eq!(plan_at(now, CatchUp::All).fire.len(), 6);
    }

    /// `all` runs the latest 100 of a long gap, found without walking the whole gap.
    #[test]
    fn all_is_bounded_to_the_latest_hundred() {
        let cadence = Cadence::new("* * * * * *", "UTC").unwrap();
        let cursor = at("2024-01-01T00:00:00Z");
        let now = at("2024-01-08T00:00:00Z"); // a week of seconds later
        let plan = plan(&cadence, cursor, now, Duration::from_secs(1), CatchUp::All);
        let missed = plan
            .fire
            .iter()
            .filter(|t| **t < now - chrono::Duration::seconds(1))
            .count();
        assert_eq!(missed, crate::model::MAX_CATCH_UP);
        assert!(plan.fire.windows(2).all(|w| w[0] < w[1]));
    }
}
