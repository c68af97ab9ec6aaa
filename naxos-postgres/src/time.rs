//! The store's clock: the database's, unless one is injected (tests).
//!
//! Every node that shares the database must judge leases, due times and deadlines by the same
//! clock. Asking PostgreSQL for `now()` in every statement would do, but the state module needs
//! "now" before the statement is written. So the store reads the database's clock once, keeps
//! it as an anchor with the local monotonic instant it was read at, and answers "now" from the
//! anchor plus the elapsed monotonic time — immune to the local wall clock being wrong or
//! stepped — reading the database's clock again every [`REFRESH`].

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
            Some(a) if a.at.elapsed() < REFRESH => return Ok(a.now()),
            Some(a) if self.refreshing.swap(true, Ordering::AcqRel) => return Ok(a.now()),
            Some(_) => {}
            None => {
                self.refreshing.store(true, Ordering::Release);
            }
        }
        let read = self.read(pool).await;
        self.refreshing.store(false, Ordering::Release);
        read
    }

    async fn read(&self, pool: &PgPool) -> Result<DateTime<Utc>> {
        let sent = Instant::now();
        let db_now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(pool)
            .await
            .map_err(db)?;
        // The database read its clock about halfway through the round trip.
        let anchor = Anchor {
            db: db_now,
            at: sent + sent.elapsed() / 2,
        };
        *self.anchor.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(anchor);
        Ok(anchor.now())
    }
}
