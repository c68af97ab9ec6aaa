//! The in-memory store's concurrency slots (see naxos-core's `state/concurrency.rs`): per
//! scope, how many runs hold a slot and which runs wait for one, the highest priority first,
//! then the oldest.
//!
//! Waiting runs are listed when their claim blocks and taken off when admitted. A run that
//! stopped waiting otherwise (its execution was cancelled) stays listed until its turn comes:
//! its admission then fails and the slot goes to the next.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::model::{ExecutionId, Priority};

/// A run waiting for a slot, in the order of admission: its execution's priority (the highest
/// first), when it became QUEUED, its execution and task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Waiter(Reverse<Priority>, DateTime<Utc>, ExecutionId, String);

impl Waiter {
    /// Task `task_id` of `execution` (at `priority`), QUEUED since `queued_at`.
    pub(super) fn new(priority: Priority, queued_at: DateTime<Utc>, execution: ExecutionId, task_id: &str) -> Self {
        Self(Reverse(priority), queued_at, execution, task_id.to_string())
    }
}

/// Every scope with a slot held or a run waiting.
#[derive(Debug, Default)]
pub(super) struct Slots {
    scopes: HashMap<String, Scope>,
}

#[derive(Debug, Default)]
struct Scope {
    held: u32,
    /// The limit the latest claim of the scope named.
    limit: u32,
    waiting: BTreeSet<Waiter>,
}

impl Slots {
    /// Takes a slot of `scope` (of `limit`) when one is free: fewer than `limit` held and
    /// none waiting.
    pub(super) fn try_take(&mut self, scope: &str, limit: u32) -> bool {
        let s = self.scopes.entry(scope.to_string()).or_default();
        s.limit = limit;
        let free = s.held < limit && s.waiting.is_empty();
        if free {
            s.held += 1;
        }
        free
    }

    /// Lists a run waiting for a slot of `scope` (of `limit`).
    pub(super) fn wait(&mut self, scope: &str, limit: u32, waiter: Waiter) {
        let s = self.scopes.entry(scope.to_string()).or_default();
        s.limit = limit;
        s.waiting.insert(waiter);
    }

    /// Gives back a slot of `scope`.
    pub(super) fn free(&mut self, scope: &str) {
        if let Some(s) = self.scopes.get_mut(scope) {
            s.held = s.held.saturating_sub(1);
            if s.held == 0 && s.waiting.is_empty() {
                self.scopes.remove(scope);
            }
        }
    }

    /// The first run waiting for `scope` (the highest priority, then the oldest) when a slot is free, taken off the list with the
    /// slot counted as its (given back with [`free`](Self::free) when its admission fails).
    pub(super) fn next(&mut self, scope: &str) -> Option<(ExecutionId, String)> {
        let s = self.scopes.get_mut(scope)?;
        if s.held >= s.limit {
            return None;
        }
        let Waiter(_, _, execution, task_id) = s.waiting.pop_first()?;
        s.held += 1;
        Some((execution, task_id))
    }

    /// Scopes with runs waiting and a slot free, up to `limit` of them.
    pub(super) fn admissible(&self, limit: usize) -> Vec<String> {
        self.scopes
            .iter()
            .filter(|(_, s)| s.held < s.limit && !s.waiting.is_empty())
            .map(|(scope, _)| scope.clone())
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_free_below_the_limit_and_only_when_none_waits() {
        let mut slots = Slots::default();
        let now = Utc::now();
        let (a, b) = (ExecutionId::now_v7(), ExecutionId::now_v7());
        assert!(slots.try_take("s", 1));
        assert!(!slots.try_take("s", 1), "the limit is reached");
        slots.wait("s", 1, Waiter::new(Priority::LOWEST, now, a, "t"));
        slots.wait("s", 1, Waiter::new(Priority::LOWEST, now, b, "t"));
        assert_eq!(slots.next("s"), None, "no slot is free");
        slots.free("s");
        assert!(
            !slots.try_take("s", 1),
            "two runs wait: a fresh claim does not pass them"
        );
        assert_eq!(slots.admissible(10), vec!["s".to_string()]);
        let first = slots.next("s").expect("a slot is free");
        assert_eq!(slots.next("s"), None, "the admitted run holds the slot");
        slots.free("s");
        let second = slots.next("s").expect("the next waits");
        assert_ne!(first, second);
        slots.free("s");
        assert!(
            slots.scopes.is_empty(),
            "nothing held, nothing waits: the scope is gone"
        );
    }

    #[test]
    fn a_higher_priority_goes_first_then_the_oldest() {
        let mut slots = Slots::default();
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(1);
        let (old, young, urgent) = (ExecutionId::now_v7(), ExecutionId::now_v7(), ExecutionId::now_v7());
        assert!(slots.try_take("s", 1));
        slots.wait("s", 1, Waiter::new(Priority::LOWEST, later, young, "t"));
        slots.wait("s", 1, Waiter::new(Priority::LOWEST, now, old, "t"));
        slots.wait("s", 1, Waiter::new(Priority::HIGHEST, later, urgent, "t"));
        let mut order = Vec::new();
        for _ in 0..3 {
            slots.free("s");
            order.push(slots.next("s").expect("a slot is free").0);
        }
        assert_eq!(order, [urgent, old, young]);
    }
}
