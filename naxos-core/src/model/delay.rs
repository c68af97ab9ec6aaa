//! Delayed executions: when an execution is to start, if not at once (`?delayMs=` or `?runAt=`
//! on execute).

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use super::MAX_WAIT_MS;
use crate::clock::after;
use crate::{Error, Result};

/// A later start for a new execution: it is created at once, PENDING with no task queued, and
/// starts at [`scheduled_for`](super::ExecutionSummary::scheduled_for) (see
/// [`ExecuteRequest::delay`](crate::ExecuteRequest::delay)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// This long after the Store creates it (`delayMs`).
    For(Duration),
    /// At this time (`runAt`); a time already past starts it at once.
    Until(DateTime<Utc>),
}

impl Delay {
    /// The longest delay: [`MAX_WAIT_MS`], the limit of a `sleep` too.
    pub const MAX: Duration = Duration::from_millis(MAX_WAIT_MS);

    /// The name of the execute request's query parameter that gives this delay.
    pub fn parameter(&self) -> &'static str {
        match self {
            Self::For(_) => "delayMs",
            Self::Until(_) => "runAt",
        }
    }

    /// When an execution created at `now` with this delay starts: `None` for at once (a delay
    /// of zero, a time not after `now`). [`Error::InvalidInput`] naming the parameter when it
    /// is more than [`Delay::MAX`] after `now`.
    ///
    /// The time is cut to whole microseconds, which every Store keeps (PostgreSQL keeps no
    /// finer), so that the time a submit answers is the one every later read shows.
    pub fn start(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let at = match *self {
            Self::For(d) if d > Self::MAX => return Err(self.too_far()),
            Self::For(d) => after(now, d),
            Self::Until(at) if at > after(now, Self::MAX) => return Err(self.too_far()),
            Self::Until(at) => at,
        };
        let at = at.trunc_subsecs(6);
        Ok((at > now).then_some(at))
    }

    fn too_far(&self) -> Error {
        Error::InvalidInput(format!(
            "{} is too far ahead: an execution may start at most {MAX_WAIT_MS} ms (ten years) from now",
            self.parameter()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_starts_later_at_once_or_is_refused_naming_its_parameter() {
        let now = Utc::now().trunc_subsecs(6);
        let secs = chrono::Duration::seconds;
        assert_eq!(
            Delay::For(Duration::from_secs(5)).start(now).unwrap(),
            Some(now + secs(5))
        );
        assert_eq!(Delay::For(Duration::ZERO).start(now).unwrap(), None);
        assert_eq!(Delay::Until(now - secs(1)).start(now).unwrap(), None, "past: at once");
        assert_eq!(Delay::Until(now).start(now).unwrap(), None);
        assert_eq!(Delay::Until(now + secs(9)).start(now).unwrap(), Some(now + secs(9)));
        assert_eq!(Delay::For(Delay::MAX).start(now).unwrap(), Some(after(now, Delay::MAX)));
        let precise = now + chrono::Duration::nanoseconds(1_500);
        assert_eq!(
            Delay::Until(precise).start(now).unwrap(),
            Some(now + chrono::Duration::microseconds(1)),
            "cut to microseconds"
        );
        let far = Delay::For(Delay::MAX + Duration::from_millis(1))
            .start(now)
            .unwrap_err();
        assert!(
            matches!(&far, Error::InvalidInput(m) if m.starts_with("delayMs ")),
            "{far}"
        );
        let far = Delay::Until(after(now, Delay::MAX) + secs(1)).start(now).unwrap_err();
        assert!(
            matches!(&far, Error::InvalidInput(m) if m.starts_with("runAt ")),
            "{far}"
        );
    }
}
