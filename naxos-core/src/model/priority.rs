//! An execution's priority: which of the tasks waiting to start goes first.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// An execution's priority, 0 (the lowest, and the default) to 9 (the highest).
///
/// Under a backlog, a task of a higher-priority execution starts before the tasks of
/// lower-priority executions already waiting; among equals, the oldest first. It orders the
/// queue's deliveries (a queue per level on RabbitMQ) and the runs waiting for a concurrency
/// slot. It orders, it does not reserve: a lower-priority task already running is not stopped,
/// and a steady stream of higher-priority work keeps lower-priority work waiting.
///
/// Set per execution (`?priority=` over HTTP, [`ExecuteRequest::priority`](crate::ExecuteRequest::priority)),
/// by default the definition's job-level `priority`, else 0; a sub-job's child has its
/// parent's.
///
/// ```
/// use naxos_core::model::Priority;
/// assert_eq!(Priority::new(9).unwrap(), Priority::HIGHEST);
/// assert!(Priority::HIGHEST > Priority::default());
/// assert!(Priority::new(10).unwrap_err().to_string().contains("`priority` is 10; it must be between 0"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// The lowest priority, and the default: 0.
    pub const LOWEST: Self = Self(0);
    /// The highest priority: 9.
    pub const HIGHEST: Self = Self(9);
    /// How many levels there are (0 to 9).
    pub const LEVELS: usize = 10;

    /// Priority `level`; [`Error::InvalidInput`] naming the field `priority` unless it is 0 to 9.
    pub fn new(level: u64) -> Result<Self> {
        u8::try_from(level)
            .ok()
            .filter(|l| *l <= Self::HIGHEST.0)
            .map(Self)
            .ok_or_else(|| Error::InvalidInput(Self::out_of_range(&level)))
    }

    /// The message for a `priority` that is not a level.
    pub(crate) fn out_of_range(given: &dyn fmt::Display) -> String {
        format!("`priority` is {given}; it must be between 0 (the lowest) and 9 (the highest)")
    }

    /// The level, 0 to 9.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The level as an index, 0 to [`LEVELS`](Self::LEVELS) − 1.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Every level, the highest first.
    pub fn highest_first() -> impl Iterator<Item = Self> {
        (0..=Self::HIGHEST.0).rev().map(Self)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let level = u64::deserialize(deserializer)?;
        Self::new(level).map_err(|_| serde::de::Error::custom(Self::out_of_range(&level)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_zero_to_nine() {
        assert_eq!(Priority::new(0).unwrap(), Priority::LOWEST);
        assert_eq!(Priority::new(9).unwrap().get(), 9);
        for bad in [10, 255, 256, u64::MAX] {
            let message = Priority::new(bad).unwrap_err().to_string();
            assert!(message.contains(&format!("`priority` is {bad}")), "{message}");
        }
        let order: Vec<u8> = Priority::highest_first().map(Priority::get).collect();
        assert_eq!(order, (0..=9).rev().collect::<Vec<u8>>());
    }

    #[test]
    fn it_is_a_number_in_json() {
        assert_eq!(serde_json::to_string(&Priority::HIGHEST).unwrap(), "9");
        assert_eq!(serde_json::from_str::<Priority>("3").unwrap().get(), 3);
        let error = serde_json::from_str::<Priority>("12").unwrap_err().to_string();
        assert!(error.contains("`priority` is 12"), "{error}");
    }
}
