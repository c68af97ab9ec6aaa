//! Cron schedules: what a user asks for ([`Schedule`]), what a Store keeps of it
//! ([`StoredSchedule`]), and when it ticks ([`Cadence`]).
//!
//! JSON (DESIGN §8): `{"id", "definitionId", "cron", "timezone", "params", "catchUp", "paused"}`.
//! `cron` has 5 fields (minute first) or 6 (seconds first); `timezone` is an IANA name
//! (default `UTC`); `catchUp` is `skip` (default), `one` or `all`.
//!
//! **Wall-clock ticks.** A cron pattern names wall-clock times in the schedule's time zone.
//! A wall-clock time that a daylight-saving change skips (spring forward) does not fire; one
//! that it repeats (fall back) fires once, at its first occurrence.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validate::is_valid_id;
use crate::{Error, Result};

/// The time zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Most missed ticks that `catchUp: all` runs after a gap (the latest ones).
pub const MAX_CATCH_UP: usize = 100;

/// What happens to the ticks that were missed while no node ran the scheduler.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CatchUp {
    /// None of them runs (the default).
    #[default]
    Skip,
    /// One run, at the latest missed tick.
    One,
    /// A run for every missed tick, at most [`MAX_CATCH_UP`] (the latest ones).
    All,
}

impl CatchUp {
    /// Its name on the wire: `skip`, `one`, `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::One => "one",
            Self::All => "all",
        }
    }

    /// The mode named `s` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Skip, Self::One, Self::All].into_iter().find(|c| c.as_str() == s)
    }

    /// How many of the latest missed ticks run.
    pub fn runs(self) -> usize {
        match self {
            Self::Skip => 0,
            Self::One => 1,
            Self::All => MAX_CATCH_UP,
        }
    }
}

/// A cron schedule that starts an execution of a definition at each tick.
///
/// ```
/// use naxos_core::model::{CatchUp, Schedule};
/// use naxos_core::serde_json::json;
/// let nightly = Schedule::new("nightly-report", "report", "0 2 * * *")
///     .timezone("Europe/Berlin")
///     .params(json!({"full": true}))
///     .catch_up(CatchUp::One);
/// assert!(nightly.cadence().is_ok());
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// The schedule's id (`[A-Za-z0-9_.-]{1,128}`).
    pub id: String,
    /// The definition each tick runs (its latest version at the tick).
    pub definition_id: String,
    /// The cron pattern: 5 fields (minute, hour, day of month, month, day of week), or 6 with
    /// seconds first.
    pub cron: String,
    /// The IANA time zone the pattern's wall-clock times are in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The params of every execution it starts (a JSON object).
    #[serde(default = "empty_object")]
    pub params: Value,
    /// What happens to ticks missed while no node ran.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Paused: no tick fires, and the ticks that pass meanwhile are never caught up. On a
    /// create it is the initial state; [`pause`](crate::Engine::pause_schedule) and
    /// [`resume`](crate::Engine::resume_schedule) change it.
    #[serde(default)]
    pub paused: bool,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.into()
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl Schedule {
    /// A schedule `id` running `definition_id` at each tick of `cron`, in UTC, with `{}` as
    /// params, skipping missed ticks, not paused.
    pub fn new(id: impl Into<String>, definition_id: impl Into<String>, cron: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            definition_id: definition_id.into(),
            cron: cron.into(),
            timezone: default_timezone(),
            params: empty_object(),
            catch_up: CatchUp::Skip,
            paused: false,
        }
    }

    /// Sets the time zone (an IANA name such as `Europe/Berlin`).
    #[must_use]
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }

    /// Sets the params of the executions it starts.
    #[must_use]
    pub fn params(mut self, params: Value) -> Self {
        self.params = params;
        self
    }

    /// Sets what happens to missed ticks.
    #[must_use]
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// Creates it paused (or not).
    #[must_use]
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Checks every field but the definition's existence (the engine's), and compiles the
    /// cron pattern in the time zone. [`Error::InvalidSchedule`] names the first bad field.
    pub fn cadence(&self) -> Result<Cadence> {
        let invalid = |field: &'static str, message: String| Error::InvalidSchedule {
            id: self.id.clone(),
            field,
            message,
        };
        if !is_valid_id(&self.id) {
            return Err(invalid("id", "must match [A-Za-z0-9_.-]{1,128}".into()));
        }
        if !is_valid_id(&self.definition_id) {
            return Err(invalid("definitionId", "must match [A-Za-z0-9_.-]{1,128}".into()));
        }
        if !self.params.is_object() {
            return Err(invalid("params", "must be a JSON object".into()));
        }
        if let Some(path) = super::find_nul(&self.params) {
            return Err(invalid("params", super::nul_message("the params", &path)));
        }
        Cadence::new(&self.cron, &self.timezone).map_err(|(field, message)| invalid(field, message))
    }

    /// True when `other` asks for the same thing, whatever either's paused state.
    pub fn same_spec(&self, other: &Schedule) -> bool {
        Self {
            paused: false,
            ..self.clone()
        } == Self {
            paused: false,
            ..other.clone()
        }
    }
}

/// A schedule as a Store keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSchedule {
    /// What was asked for, with its current paused state.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every tick up to this instant is done with: fired, skipped as missed, or passed while
    /// paused (the cursor the scheduler moves, never backwards). It starts at the creation,
    /// and a resume or a change of the cron, time zone or definition moves it to that moment.
    pub last_tick: DateTime<Utc>,
}

impl StoredSchedule {
    /// A schedule created at `now`.
    pub fn new(schedule: Schedule, now: DateTime<Utc>) -> Self {
        Self {
            schedule,
            created_at: now,
            updated_at: now,
            last_tick: now,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.schedule.id
    }

    /// Applies a put of `schedule` at `now`: `None` when it asks for the same thing (nothing
    /// changes, the paused state included); otherwise the updated schedule, whose cursor moves
    /// to `now` so that the new cadence starts from the change.
    pub fn updated(&self, schedule: Schedule, now: DateTime<Utc>) -> Option<Self> {
        if self.schedule.same_spec(&schedule) {
            return None;
        }
        Some(Self {
            schedule,
            created_at: self.created_at,
            updated_at: now,
            last_tick: self.last_tick.max(now),
        })
    }

    /// Pauses or resumes it at `now`; `None` when it already is so. A resume moves the cursor
    /// to `now`: the ticks that passed while it was paused are never caught up.
    pub fn set_paused(&self, paused: bool, now: DateTime<Utc>) -> Option<Self> {
        if self.schedule.paused == paused {
            return None;
        }
        let mut next = self.clone();
        next.schedule.paused = paused;
        next.updated_at = now;
        if !paused {
            next.last_tick = next.last_tick.max(now);
        }
        Some(next)
    }

    /// The first tick after both `now` and its cursor, unless it is paused.
    pub fn next_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.schedule.paused {
            return None;
        }
        self.schedule.cadence().ok()?.next_after(now.max(self.last_tick))
    }
}

/// What [`Store::put_schedule`](crate::backend::Store::put_schedule) did.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePut {
    /// The schedule as it now stands.
    pub schedule: StoredSchedule,
    /// True when it did not exist.
    pub created: bool,
    /// True when it existed and asked for something else (it was replaced).
    pub updated: bool,
}

impl SchedulePut {
    /// What putting `schedule` at `now` does to `existing` (the stored one, if any): creates
    /// it, replaces it when it asks for something else, or leaves it as it is. A Store writes
    /// `schedule` when [`changed`](Self::changed).
    pub fn of(existing: Option<StoredSchedule>, schedule: Schedule, now: DateTime<Utc>) -> Self {
        match existing {
            None => Self {
                schedule: StoredSchedule::new(schedule, now),
                created: true,
                updated: false,
            },
            Some(existing) => match existing.updated(schedule, now) {
                None => Self {
                    schedule: existing,
                    created: false,
                    updated: false,
                },
                Some(changed) => Self {
                    schedule: changed,
                    created: false,
                    updated: true,
                },
            },
        }
    }

    /// True when the put created or replaced the schedule (there is something to write).
    pub fn changed(&self) -> bool {
        self.created || self.updated
    }
}

/// A compiled cron pattern in a time zone: when a schedule ticks.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    zone: Tz,
}

/// The furthest a daylight-saving change moves wall-clock time (with margin): a backward walk
/// starts this much later on the wall clock, so that it sees every tick of a repeated hour.
const MAX_SHIFT: Duration = Duration::hours(3);

impl Cadence {
    /// Compiles `cron` (5 fields, or 6 with seconds first) in the IANA time zone `timezone`;
    /// the error names the bad field (`cron` or `timezone`) and says why.
    pub fn new(cron: &str, timezone: &str) -> std::result::Result<Self, (&'static str, String)> {
        let fields = cron.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err((
                "cron",
                format!("`{cron}` has {fields} fields; a cron pattern has 5, or 6 with seconds first"),
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(cron)
            .map_err(|e| ("cron", format!("`{cron}` is not a cron pattern: {e}")))?;
        let zone = Tz::from_str(timezone).map_err(|_| {
            (
                "timezone",
                format!("`{timezone}` is not an IANA time zone (such as `UTC` or `Europe/Berlin`)"),
            )
        })?;
        Ok(Self { cron, zone })
    }

    /// The instant of wall-clock time `wall`: `None` when a daylight-saving change skips it,
    /// its first occurrence when one repeats it.
    fn instant(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.zone.from_local_datetime(&wall) {
            LocalResult::None => None,
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        }
    }

    fn wall(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.zone).naive_local()
    }

    /// The first tick strictly after `t`.
    ///
    /// Wall times map to instants in order (a repeated one to its first occurrence), so
    /// walking the wall clock forward walks the ticks forward.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wall = self.wall(t);
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            match self.instant(wall) {
                Some(tick) if tick > t => return Some(tick),
                _ => continue,
            }
        }
    }

    /// The ticks in `(after, until]`, in order.
    pub fn ticks(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut at = after;
        std::iter::from_fn(move || {
            let tick = self.next_after(at).filter(|t| *t <= until)?;
            at = tick;
            Some(tick)
        })
    }

    /// Up to `n` of the ticks in `(after, before)`, the latest ones, in order; found walking
    /// backwards from `before` (so a long gap costs `n` steps, not the gap's ticks).
    pub fn latest_before(&self, after: DateTime<Utc>, before: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut found = Vec::new();
        let mut wall = self.wall(before) + MAX_SHIFT;
        while found.len() < n {
            let Ok(previous) = self.cron.find_previous_occurrence(&wall, false) else {
                break;
            };
            wall = previous;
            let Some(tick) = self.instant(wall) else { continue };
            if tick <= after {
                break;
            }
            if tick < before {
                found.push(tick);
            }
        }
        found.reverse();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |s: Schedule| match s.cadence() {
            Err(Error::InvalidSchedule { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Schedule::new("s", "d", "* * *")), "cron");
        assert_eq!(field(Schedule::new("s", "d", "61 * * * *")), "cron");
        assert_eq!(field(Schedule::new("s", "d", "* * * * * * *")), "cron");
        assert_eq!(
            field(Schedule::new("s", "d", "* * * * *").timezone("Mars/Olympus")),
            "timezone"
        );
        assert_eq!(field(Schedule::new("s s", "d", "* * * * *")), "id");
        assert_eq!(field(Schedule::new("s", "", "* * * * *")), "definitionId");
        assert_eq!(
            field(Schedule::new("s", "d", "* * * * *").params(Value::Null)),
            "params"
        );
        assert!(Schedule::new("s", "d", "*/5 * * * * *").cadence().is_ok(), "six fields");
    }

    #[test]
    fn five_fields_tick_on_minutes_six_on_seconds() {
        let minutes = Cadence::new("*/15 * * * *", "UTC").unwrap();
        let t = utc("2024-01-01T10:07:30Z");
        assert_eq!(minutes.next_after(t), Some(utc("2024-01-01T10:15:00Z")));
        let seconds = Cadence::new("*/10 * * * * *", "UTC").unwrap();
        let ticks: Vec<_> = seconds.ticks(t, utc("2024-01-01T10:08:00Z")).collect();
        assert_eq!(
            ticks,
            vec![
                utc("2024-01-01T10:07:40Z"),
                utc("2024-01-01T10:07:50Z"),
                utc("2024-01-01T10:08:00Z")
            ]
        );
        assert_eq!(
            seconds.latest_before(utc("2024-01-01T10:07:35Z"), utc("2024-01-01T10:08:00Z"), 2),
            vec![utc("2024-01-01T10:07:40Z"), utc("2024-01-01T10:07:50Z")]
        );
    }

    /// Berlin springs forward at 02:00 → 03:00 on 2024-03-31 and falls back 03:00 → 02:00 on
    /// 2024-10-27: 02:30 does not exist on the first day and exists twice on the second.
    #[test]
    fn a_skipped_wall_time_does_not_fire_and_a_repeated_one_fires_once() {
        let daily = Cadence::new("30 2 * * *", "Europe/Berlin").unwrap();
        let spring: Vec<_> = daily
            .ticks(utc("2024-03-29T12:00:00Z"), utc("2024-04-02T00:00:00Z"))
            .collect();
        assert_eq!(
            spring,
            vec![utc("2024-03-30T01:30:00Z"), utc("2024-04-01T00:30:00Z")],
            "no tick on the 31st"
        );
        let autumn: Vec<_> = daily
            .ticks(utc("2024-10-26T12:00:00Z"), utc("2024-10-28T12:00:00Z"))
            .collect();
        // 02:30 CEST (00:30 UTC) on the 27th, not again at 02:30 CET (01:30 UTC).
        assert_eq!(autumn, vec![utc("2024-10-27T00:30:00Z"), utc("2024-10-28T01:30:00Z")]);
        // Walking backwards sees the same ticks, from inside the repeated hour too.
        assert_eq!(
            daily.latest_before(utc("2024-10-26T12:00:00Z"), utc("2024-10-27T01:45:00Z"), 5),
            vec![utc("2024-10-27T00:30:00Z")]
        );
        assert_eq!(
            daily.latest_before(utc("2024-03-29T12:00:00Z"), utc("2024-04-01T00:00:00Z"), 5),
            vec![utc("2024-03-30T01:30:00Z")]
        );
    }
}
