//! Where "now" comes from.
//!
//! A [`Store`](crate::backend::Store) reads its own clock for every transition, so that leases,
//! due times and deadlines are judged by one clock however many nodes share the Store (the
//! PostgreSQL store's is the database's). The engine reads a clock of its own for its timers.
//! Tests hand both the same [`ManualClock`], or a [`Clock::Tokio`] that follows tokio's paused
//! time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::sync::lock;

/// A source of wall-clock time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Wall time derived from tokio's clock, so that `tokio::time::pause()` and `advance()`
    /// move leases, due times and deadlines too (for tests).
    Tokio {
        /// Wall time at `base`.
        wall: DateTime<Utc>,
        /// The tokio instant matching `wall`.
        base: tokio::time::Instant,
    },
    /// A clock that moves only when told to (for tests: one clock for several stores).
    Manual(ManualClock),
}

impl Clock {
    /// A [`Clock::Tokio`] anchored now.
    pub fn tokio() -> Self {
        Self::Tokio {
            wall: Utc::now(),
            base: tokio::time::Instant::now(),
        }
    }

    /// The current wall time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Tokio { wall, base } => after(*wall, base.elapsed()),
            Self::Manual(m) => m.now(),
        }
    }
}

/// A clock that stands still until [`advance`](ManualClock::advance)d or
/// [`set`](ManualClock::set). Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// The time it shows.
    pub fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = lock(&self.0);
        *t = after(*t, by);
    }

    /// Sets it to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *lock(&self.0) = at;
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Self {
        Self::Manual(m)
    }
}

/// `t + d`, saturating.
pub fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating.
pub fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
