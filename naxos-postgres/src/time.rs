//! The store's clock: the database's, unless one is injected (tests).
//!
//! Every node that shares the database must judge leases, due times and deadlines by the same
//! clock. Asking PostgreSQL for `now()` in every statement would do, but the state module needs
//! "now" before the statement is written. So the store reads the database's clock once, keeps
//! it as an anchor with the local monotonic instant it was read at, and answers "now" from the
//! anchor plus the elapsed monotonic time — immune to the local wall clock being wrong or
//! stepped — reading the database's clock again every [`REFRESH`].
//!
//! The database read its clock somewhere within the round trip, which puts the anchor at the
//! round trip's middle, off by at most half of it. That is nothing on a round trip of a
//! millisecond, and seconds on one that a stalled network (or a paused server) stretched: a
//! reading whose request was held back answers with a time from the end of the wait, which
//! the middle makes early by half of it, so this node's clock runs ahead, and its sweeper
//! takes the live leases of every other node (each take counts against the task's
//! `max_lease_expiries`, so a few sweeps FAIL a healthy task); held back on the way back, the
//! clock runs behind, and the leases this node grants are over before they start. So a reading
//! whose round trip took longer than [`MAX_ROUND_TRIP`] replaces no better anchor: the anchor
//! that is kept is carried forward on the monotonic clock, which the stall did not disturb, and
//! the database's clock is read again after [`RETRY`]. The round trip is the statement's only:
//! waiting for a free connection is no part of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use naxos_core::clock::after;
use naxos_core::{Clock, Result};
use sqlx::PgPool;

use crate::error::db;

/// How long an anchor is used before the database's clock is read again.
const REFRESH: Duration = Duration::from_secs(5);
/// The longest round trip of a reading that may replace an anchor read in a shorter one: its
/// error is at most half of this.
const MAX_ROUND_TRIP: Duration = Duration::from_millis(200);
/// How soon the clock is read again after a reading too slow to use.
const RETRY: Duration = Duration::from_secs(1);

/// Where a [`PgStore`](crate::PgStore) reads the time.
#[derive(Debug)]
pub(crate) enum StoreClock {
    /// The database's clock, through an anchor.
    Database(DbClock),
    /// A clock given in [`PgConfig::clock`](crate::PgConfig::clock).
    Given(Clock),
}

impl StoreClock {
    pub(crate) fn new(given: Option<Clock>) -> Self {
        match given {
            Some(clock) => Self::Given(clock),
            None => Self::Database(DbClock::default()),
        }
    }

    /// The time now, read on `conn` (a transaction's, so no other connection is taken while it
    /// holds its locks): the database's `clock_timestamp()`, or the given clock.
    pub(crate) async fn now_on(&self, conn: &mut sqlx::PgConnection) -> Result<DateTime<Utc>> {
        match self {
            Self::Database(_) => sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(conn)
                .await
                .map_err(crate::error::db),
            Self::Given(clock) => Ok(clock.now()),
        }
    }

    /// The time now, as the store's clock says.
    pub(crate) async fn now(&self, pool: &PgPool) -> Result<DateTime<Utc>> {
        match self {
            Self::Database(clock) => clock.now(pool).await,
            Self::Given(clock) => Ok(clock.now()),
        }
    }
}

/// The database's time, read at a local instant.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    db: DateTime<Utc>,
    at: Instant,
    /// How long the reading's round trip took: twice its error at most.
    round_trip: Duration,
    /// When to read the database's clock again.
    next_read: Instant,
}

impl Anchor {
    fn now(&self) -> DateTime<Utc> {
        after(self.db, self.at.elapsed())
    }
}

/// The database's clock, read every [`REFRESH`] (by one caller at a time; the others use the
/// anchor they have meanwhile).
#[derive(Debug, Default)]
pub(crate) struct DbClock {
    anchor: Mutex<Option<Anchor>>,
    refreshing: AtomicBool,
}

impl DbClock {
    async fn now(&self, pool: &PgPool) -> Result<DateTime<Utc>> {
        let anchor = *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match anchor {
            Some(a) if Instant::now() < a.next_read => return Ok(a.now()),
            Some(a) if self.refreshing.swap(true, Ordering::AcqRel) => return Ok(a.now()),
            Some(_) => {}
            None => {
                self.refreshing.store(true, Ordering::Release);
            }
        }
        let _refreshing = Refreshing(&self.refreshing);
        self.read(pool, anchor).await
    }

    /// Reads the database's clock, and keeps the reading as the anchor unless its round trip
    /// was too long to trust and `current` was read in a shorter one.
    async fn read(&self, pool: &PgPool, current: Option<Anchor>) -> Result<DateTime<Utc>> {
        let mut conn = pool.acquire().await.map_err(db)?;
        let sent = Instant::now();
        let db_now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        drop(conn);
        let anchor = choose(current, db_now, sent, Instant::now());
        *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(anchor);
        Ok(anchor.now())
    }
}

/// Clears [`DbClock::refreshing`] when the read ends, also when its caller gives up on it (a
/// deadline drops the call mid-read): else no caller would ever read the database's clock again.
struct Refreshing<'a>(&'a AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The anchor to keep after a reading `db_now` of a statement sent at `sent` and answered at
/// `received`: the reading — the database read its clock about halfway through the round trip
/// —, unless that round trip took longer than [`MAX_ROUND_TRIP`] and `current` was read in a
/// shorter one; `current` is then kept and read again after [`RETRY`].
fn choose(current: Option<Anchor>, db_now: DateTime<Utc>, sent: Instant, received: Instant) -> Anchor {
    let round_trip = received.saturating_duration_since(sent);
    let slow = round_trip > MAX_ROUND_TRIP;
    match current {
        Some(kept) if slow && kept.round_trip < round_trip => {
            tracing::debug!(
                ?round_trip,
                "a reading of the database's clock too slow to use; keeping the last one"
            );
            Anchor {
                next_read: received + RETRY,
                ..kept
            }
        }
        _ => Anchor {
            db: db_now,
            at: sent + round_trip / 2,
            round_trip,
            next_read: received + if slow { RETRY } else { REFRESH },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_quick_reading_becomes_the_anchor_at_its_round_trips_middle() {
        let t0 = Instant::now();
        let db = DateTime::<Utc>::UNIX_EPOCH;
        let anchor = choose(None, db, t0, t0 + 4 * MS);
        assert_eq!((anchor.db, anchor.at), (db, t0 + 2 * MS));
        assert_eq!(anchor.next_read, t0 + 4 * MS + REFRESH);
        // The next quick one replaces it, even if a little slower.
        let sent = t0 + REFRESH;
        let next = choose(Some(anchor), after(db, REFRESH), sent, sent + 50 * MS);
        assert_eq!((next.db, next.at), (after(db, REFRESH), sent + 25 * MS));
    }

    #[test]
    fn a_reading_through_a_stall_leaves_a_quicker_anchor_alone() {
        let t0 = Instant::now();
        let db = DateTime::<Utc>::UNIX_EPOCH;
        let anchor = choose(None, db, t0, t0 + 2 * MS);
        // Sent 5 s later and held back 4 s on the way: the database answered at the end of the
        // wait, which the middle of the round trip would put 2 s early (this clock 2 s ahead).
        let sent = t0 + REFRESH;
        let received = sent + Duration::from_secs(4);
        let kept = choose(
            Some(anchor),
            after(db, REFRESH + Duration::from_secs(4)),
            sent,
            received,
        );
        assert_eq!(
            (kept.db, kept.at, kept.round_trip),
            (anchor.db, anchor.at, anchor.round_trip)
        );
        assert_eq!(kept.next_read, received + RETRY, "read again soon");
    }

    #[test]
    fn a_slow_reading_serves_until_a_quicker_one_comes() {
        let t0 = Instant::now();
        let db = DateTime::<Utc>::UNIX_EPOCH;
        // The first reading is all there is: used, and read again soon.
        let first = choose(None, db, t0, t0 + 1_000 * MS);
        assert_eq!(first.db, db);
        assert_eq!(first.next_read, t0 + 1_000 * MS + RETRY);
        // A slow one quicker than it replaces it; so does a quick one, kept for longer.
        let sent = t0 + 2_000 * MS;
        let quicker = choose(Some(first), db, sent, sent + 600 * MS);
        assert_eq!(quicker.round_trip, 600 * MS);
        let quick = choose(Some(quicker), db, sent, sent + 3 * MS);
        assert_eq!(quick.round_trip, 3 * MS);
        assert_eq!(quick.next_read, sent + 3 * MS + REFRESH);
    }

    #[tokio::test]
    async fn a_read_its_caller_gave_up_on_lets_the_next_caller_read() {
        // A server that never answers: a socket that listens and never accepts.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("postgres://naxos@{}/naxos", silent.local_addr().unwrap());
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy(&url).unwrap();
        let clock = DbClock::default();
        // A deadline drops the call mid-read...
        let gave_up = tokio::time::timeout(Duration::from_millis(100), clock.now(&pool)).await;
        assert!(gave_up.is_err(), "the read cannot have finished");
        // ... and the next caller may read.
        assert!(
            !clock.refreshing.load(Ordering::Acquire),
            "the read left the clock marked as being read"
        );
    }
}
