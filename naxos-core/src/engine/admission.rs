//! Admission control: a submit is refused while the Store holds more unstarted executions than
//! [`EngineConfig::max_pending_executions`](super::EngineConfig::max_pending_executions), so a
//! backlog stops growing at the door instead of without bound.
//!
//! Counting PENDING executions on every submit would cost a Store read each; the count is read
//! at most once per sweep interval instead, and the submits this node admitted since are added
//! to it. One node alone therefore never overshoots; several may, by what they admit in one
//! interval.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::inner::Inner;
use crate::clock::after;
use crate::sync::lock;
use crate::{Error, Result};

/// The last count read, and what was admitted since.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// PENDING executions at the last reading.
    counted: AtomicU64,
    /// Submits admitted here since that reading.
    admitted: AtomicU64,
    /// When the next reading is due (`None`: at once).
    due: Mutex<Option<DateTime<Utc>>>,
    /// A reading is under way (one at a time; the others use the last one).
    reading: AtomicBool,
}

impl Admission {
    /// Admits `n` submits (a batch is admitted whole or refused whole), or refuses them with
    /// [`Error::Overloaded`].
    pub(crate) async fn admit(&self, inner: &Inner, n: u64) -> Result<()> {
        let Some(limit) = inner.config.max_pending_executions else {
            return Ok(());
        };
        let now = inner.now();
        let due = lock(&self.due).is_none_or(|due| now >= due);
        if due && !self.reading.swap(true, Ordering::AcqRel) {
            let read = inner.store.pending_executions().await;
            if let Ok(n) = read {
                self.counted.store(n, Ordering::Release);
                self.admitted.store(0, Ordering::Release);
                *lock(&self.due) = Some(after(now, inner.config.sweep_interval));
            }
            self.reading.store(false, Ordering::Release);
            // A Store that cannot count cannot create either: say so as the creation would.
            read?;
        }
        let pending = self.counted.load(Ordering::Acquire) + self.admitted.fetch_add(n, Ordering::AcqRel);
        if pending + n > limit {
            self.admitted.fetch_sub(n, Ordering::AcqRel);
            return Err(Error::Overloaded {
                message: format!(
                    "{pending} executions wait to start{}, the most this system accepts is {limit} \
                     (max_pending_executions)",
                    if n > 1 {
                        format!(" and this batch adds {n}")
                    } else {
                        String::new()
                    }
                ),
                retry_after: inner.config.sweep_interval.max(Duration::from_secs(1)),
            });
        }
        Ok(())
    }

    /// Takes back `n` admissions whose creations did not happen.
    pub(crate) fn cancel(&self, n: u64) {
        self.admitted.fetch_sub(n, Ordering::AcqRel);
    }
}
