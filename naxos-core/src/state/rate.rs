//! Rate limits (`"rateLimit": {"perSecond", "burst", "key"}`): cluster-wide, in any window of
//! `t` seconds at most `burst + perSecond × t` runs of a task start, per key value.
//!
//! A run of a task with a rate limit gets its scope when the task starts, as a concurrency
//! slot's (`concurrency.rs`). The Store keeps one [`RateWindow`] per scope — the times of the
//! last `burst` starts and how far ahead turns are booked — and decides each claim with
//! [`RateWindow::decide`]:
//!
//! - **Start** when fewer than `burst` runs started in the last `burst / perSecond` seconds
//!   (the guarantee: a window of `t` seconds holds at most `⌈t·perSecond/burst⌉` such windows,
//!   so at most `burst + perSecond × t` starts) — and no run waits with a turn booked ahead of
//!   it, so a new run never passes one that waits.
//! - Otherwise **wait**: the claim books the run's turn — the first time it may start, after
//!   every turn booked before it, turns one `1 / perSecond` apart — and the run waits QUEUED
//!   ([`BlockedBy::RateLimit`], its `due_at` the turn). The claim answers
//!   [`Error::Deferred`](crate::Error::Deferred) with how long until then, and the worker
//!   publishes the task's message again for that time. When it comes back, its turn is checked
//!   against the starts as they are (a turn is no licence: runs delivered late, together, start
//!   only as the window allows). One that finds no room at its turn — the run `burst` places
//!   before it started a little after its own turn — waits until the window allows, keeping its
//!   place: no turn is lost to delivery delays.
//!
//! A booked message that is lost (its node died) is published by the stale sweep once its turn
//! is long past, as a due retry's is. A claim that blocks for another reason (a pause, a full
//! concurrency limit) changes no window: the Store keeps the new window only when the claim
//! started the run or booked its turn.
//!
//! [`BlockedBy::RateLimit`]: crate::model::BlockedBy::RateLimit

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Changes, ExecutionState};
use crate::clock::after;
use crate::model::{BlockedBy, Instance, RateLimit, TaskRef, TaskStatus};

/// What a Store keeps of one rate limit's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateWindow {
    /// The times of the last starts, oldest first (at most `burst` of them).
    pub starts: VecDeque<DateTime<Utc>>,
    /// The turn the next booking gets at the earliest (none: no turn booked ahead).
    pub booked_until: Option<DateTime<Utc>>,
    /// How many booked turns are still to come: runs that wait for theirs. When none is left
    /// (each started, or stopped waiting: [`release`](Self::release)), no turn is ahead.
    #[serde(default)]
    pub pending: u32,
}

/// What [`RateWindow::decide`] says of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// The run may start now.
    Start,
    /// The run waits until its turn.
    Wait(DateTime<Utc>),
}

impl RateWindow {
    /// Decides a claim at `now` of a run under `limit` (`booked`: the turn it waits for, if
    /// it has one), as the module says; returns the verdict and the window as it is after it
    /// (which the Store keeps when the claim started the run or booked its turn).
    pub fn decide(&self, limit: &RateLimit, booked: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (RateVerdict, Self) {
        if let Some(turn) = booked.filter(|&turn| turn > now) {
            // Early (a duplicate message): the same turn, nothing changes.
            return (RateVerdict::Wait(turn), self.clone());
        }
        let burst = limit.burst.max(1) as usize;
        let mut w = self.clone();
        while w.starts.len() > burst {
            w.starts.pop_front();
        }
        let earliest = match w.starts.len() {
            n if n < burst => now,
            _ => after(w.starts[0], limit.window()),
        };
        let ahead = w.booked_until.filter(|&until| until > now && w.pending > 0);
        if earliest <= now && (booked.is_some() || ahead.is_none()) {
            w.starts.push_back(now);
            if w.starts.len() > burst {
                w.starts.pop_front();
            }
            if booked.is_some() {
                w.release();
            }
            return (RateVerdict::Start, w);
        }
        if booked.is_some() {
            // Its turn came, but the run before it started a little after its own turn: it
            // waits just that much, keeping its place (turns booked after it stay theirs).
            let until = w.booked_until.map_or(after(earliest, limit.interval()), |u| {
                u.max(after(earliest, limit.interval()))
            });
            w.booked_until = Some(until);
            return (RateVerdict::Wait(earliest), w);
        }
        let turn = earliest.max(ahead.unwrap_or(now));
        w.booked_until = Some(after(turn, limit.interval()));
        w.pending += 1;
        (RateVerdict::Wait(turn), w)
    }
}

impl RateWindow {
    /// One booked turn will not be used: its run started, or stopped waiting for it
    /// (cancelled, blocked for another reason, taken over by the stale sweep). When no booked
    /// turn is left, none is ahead of a new run.
    pub fn release(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            self.booked_until = None;
        }
    }
}

impl ExecutionState {
    /// The run at `i` stops waiting for its rate limit's turn otherwise than by starting: its
    /// scope is named in `ch.released_turns`.
    pub(super) fn release_turn(&mut self, i: usize, ch: &mut Changes) {
        let t = &self.tasks[i];
        if t.status == TaskStatus::Queued && t.blocked_by == Some(BlockedBy::RateLimit) {
            if let Some(scope) = &t.rate {
                ch.released_turns.push(scope.clone());
            }
        }
    }

    /// The rate-limit scope of the task at `i` as it starts, if it has a limit; the error is
    /// what the task FAILS with (its key did not evaluate to a string).
    pub(super) fn rate_of(&self, i: usize) -> std::result::Result<Option<String>, String> {
        let Some(limit) = &self.tasks[i].plan.rate_limit else {
            return Ok(None);
        };
        let task = Instance::definition_task(&self.tasks[i].task_id);
        self.scope_of(i, task, "rateLimit.key", limit.key.as_deref()).map(Some)
    }

    /// The rate limit a claim of `task` is decided by, with its scope and the turn the run
    /// waits for, if it has one: when the task waits to run at that attempt and has a limit.
    pub fn rate_wanted(&self, task: &TaskRef) -> Option<(&str, &RateLimit, Option<DateTime<Utc>>)> {
        let i = self.index_of(&task.task_id)?;
        let t = &self.tasks[i];
        let waiting = matches!(t.status, TaskStatus::Queued | TaskStatus::Retrying) && t.attempt == task.attempt;
        waiting.then(|| self.rate_wanted_at(i)).flatten()
    }

    /// [`rate_wanted`](Self::rate_wanted) of the task at `i`, which waits to run.
    pub(super) fn rate_wanted_at(&self, i: usize) -> Option<(&str, &RateLimit, Option<DateTime<Utc>>)> {
        let t = &self.tasks[i];
        let booked = t.due_at.filter(|_| t.blocked_by == Some(BlockedBy::RateLimit));
        match (&t.rate, &t.plan.rate_limit) {
            (Some(scope), Some(limit)) => Some((scope, limit, booked)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            key: None,
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn a_burst_starts_at_once_then_turns_are_booked_one_interval_apart() {
        let l = limit(10.0, 2); // window 200 ms, interval 100 ms
        let mut w = RateWindow::default();
        let mut verdicts = Vec::new();
        for _ in 0..5 {
            let (v, next) = w.decide(&l, None, at(0));
            verdicts.push(v);
            w = next;
        }
        assert_eq!(
            verdicts,
            [
                RateVerdict::Start,
                RateVerdict::Start,
                RateVerdict::Wait(at(200)),
                RateVerdict::Wait(at(300)),
                RateVerdict::Wait(at(400)),
            ]
        );
        // Early: the same turn, nothing changes.
        assert_eq!(
            w.decide(&l, Some(at(300)), at(250)),
            (RateVerdict::Wait(at(300)), w.clone())
        );
        // A new run does not pass the booked ones, even when the window has room.
        assert_eq!(w.decide(&l, None, at(200)).0, RateVerdict::Wait(at(500)));
        // The booked runs start on their turns.
        for turn in [200, 300, 400] {
            let (v, next) = w.decide(&l, Some(at(turn)), at(turn));
            assert_eq!(v, RateVerdict::Start, "turn {turn}");
            w = next;
        }
        // Early: the same turn.
        let (v, _) = w.decide(&l, Some(at(500)), at(450));
        assert_eq!(v, RateVerdict::Wait(at(500)));
    }

    #[test]
    fn a_run_that_finds_no_room_at_its_turn_keeps_its_place() {
        let l = limit(5.0, 1); // interval and window 200 ms
        let (_, w) = RateWindow::default().decide(&l, None, at(0));
        let (v1, w) = w.decide(&l, None, at(1));
        let (v2, w) = w.decide(&l, None, at(2));
        assert_eq!((v1, v2), (RateVerdict::Wait(at(200)), RateVerdict::Wait(at(400))));
        // The first starts 3 ms after its turn; the second comes 1 ms after its own.
        let (v, w) = w.decide(&l, Some(at(200)), at(203));
        assert_eq!(v, RateVerdict::Start);
        let (v, w) = w.decide(&l, Some(at(400)), at(401));
        assert_eq!(v, RateVerdict::Wait(at(403)), "it waits only until the window allows");
        let (v, w) = w.decide(&l, Some(at(403)), at(403));
        assert_eq!(v, RateVerdict::Start);
        // A new run still comes after every booked turn.
        assert_eq!(w.decide(&l, None, at(404)).0, RateVerdict::Wait(at(603)));
    }

    #[test]
    fn turns_nobody_waits_for_are_not_ahead_of_a_new_run() {
        let l = limit(1.0, 1);
        let (_, mut w) = RateWindow::default().decide(&l, None, at(0));
        for _ in 0..300 {
            let (v, next) = w.decide(&l, None, at(1));
            assert!(matches!(v, RateVerdict::Wait(_)));
            w = next;
        }
        assert_eq!(w.pending, 300);
        // Every waiting run is cancelled: their turns are given back.
        for _ in 0..300 {
            w.release();
        }
        assert_eq!(
            w.decide(&l, None, at(2_000)).0,
            RateVerdict::Start,
            "nothing is ahead of it"
        );
    }

    /// Claims at random times, each deciding as a Store would: in every window of `t`, at most
    /// `burst + perSecond × t` starts.
    #[test]
    fn starts_never_exceed_burst_plus_rate_times_window() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (per_second, burst) in [(10.0, 1), (10.0, 3), (2.5, 4), (100.0, 20)] {
            let l = limit(per_second, burst);
            let mut w = RateWindow::default();
            let mut starts = Vec::new();
            let mut waiting: Vec<DateTime<Utc>> = Vec::new();
            let mut now = 0;
            for _ in 0..2_000 {
                now += (next() % 40) as i64;
                // A new claim, or a waiting run's message back (on time or late).
                let booked = if !waiting.is_empty() && next() % 2 == 0 {
                    Some(waiting.remove(0))
                } else {
                    None
                };
                let when = booked.map_or(at(now), |b| b.max(at(now)));
                let (v, after) = w.decide(&l, booked, when);
                w = after;
                match v {
                    RateVerdict::Start => starts.push(when),
                    RateVerdict::Wait(turn) => waiting.push(turn),
                }
            }
            starts.sort();
            for (i, first) in starts.iter().enumerate() {
                for (j, last) in starts.iter().enumerate().skip(i) {
                    let t = (*last - *first).num_microseconds().unwrap() as f64 / 1e6;
                    let bound = f64::from(burst) + per_second * t;
                    assert!(
                        (j - i + 1) as f64 <= bound + 1e-9,
                        "{per_second}/s burst {burst}: {} starts in {t} s",
                        j - i + 1
                    );
                }
            }
            assert!(starts.len() > 10, "some runs started: {}", starts.len());
        }
    }
}
