//! A task's plan: what the state machine needs to know of a task beyond its function and its
//! dependencies — when it may start (`trigger`) and whether it runs at all (`when`).
//!
//! The plan is fixed when an execution is created: it is copied from the definition into every
//! task run ([`TaskRun::plan`](super::TaskRun::plan)) and stored with the execution by every
//! Store, so that a transition never needs the definition. A task with the default plan is
//! **plain**: it behaves as tasks did before plans existed, and a Store's hand-written fast
//! paths serve only executions whose tasks are all plain. The later workflow kinds of a task
//! (fan-out, sub-job, sleep, signal) extend this same struct.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::TaskDefinition;

/// When a task may start, from its dependencies' end states.
///
/// A dependency counts as **failed** when it FAILED or was CANCELLED, or was SKIPPED because
/// something above it failed; it counts as **skipped** when it was SKIPPED by its own `when`,
/// or because its trigger could no longer hold since a dependency was skipped, while none
/// counted as failed (the task is decided at once; a failure beside it later does not change
/// how it counts). So a branch that was not taken stays "skipped" all the way down, and a
/// failure stays a failure all the way down.
///
/// A task without dependencies starts at once, whatever its trigger. A task whose trigger can
/// no longer hold is SKIPPED at once (and counts as failed below it if a dependency counted as
/// failed, else as skipped).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// Every dependency COMPLETED (the default, and the only rule before triggers existed).
    #[default]
    AllSuccess,
    /// Every dependency finished, however: the task runs even after a failure above it.
    AllDone,
    /// Every dependency finished and none counts as failed: the join after a branch, which
    /// runs even when every dependency was skipped.
    NoneFailed,
    /// At the first dependency that COMPLETED; SKIPPED once every dependency finished and none
    /// completed.
    AnySuccess,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Self; 4] = [Self::AllSuccess, Self::AllDone, Self::NoneFailed, Self::AnySuccess];

    /// The JSON name, e.g. `"noneFailed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllSuccess => "allSuccess",
            Self::AllDone => "allDone",
            Self::NoneFailed => "noneFailed",
            Self::AnySuccess => "anySuccess",
        }
    }

    /// Parses a JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// True for [`Trigger::AllSuccess`], the default (what serialization leaves out).
    pub fn is_default(&self) -> bool {
        *self == Self::AllSuccess
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a task run needs of its definition besides its function: its condition and trigger.
/// JSON: `{"when"?: "<CEL>", "trigger"?: "<trigger>"}`, each left out at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskPlan {
    /// The task's `when` condition (CEL over `params` and `upstream`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// When the task may start.
    #[serde(default, skip_serializing_if = "Trigger::is_default")]
    pub trigger: Trigger,
}

impl TaskPlan {
    /// The plan of a task of a definition.
    pub fn of(task: &TaskDefinition) -> Self {
        Self {
            when: task.when.clone(),
            trigger: task.trigger,
        }
    }

    /// True for the default plan: no condition, the default trigger. A plain task behaves as
    /// tasks did before plans existed.
    pub fn is_plain(&self) -> bool {
        self.when.is_none() && self.trigger.is_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_have_their_json_names() {
        for t in Trigger::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
        }
        assert_eq!(Trigger::parse("AllSuccess"), None);
        let err = serde_json::from_str::<Trigger>("\"sometimes\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `sometimes`"), "{err}");
    }

    #[test]
    fn the_default_plan_is_plain_and_serializes_empty() {
        assert!(TaskPlan::default().is_plain());
        assert_eq!(serde_json::to_string(&TaskPlan::default()).unwrap(), "{}");
        let plan = TaskPlan {
            when: Some("params.x > 1".into()),
            trigger: Trigger::NoneFailed,
        };
        assert!(!plan.is_plain());
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(json, r#"{"when":"params.x > 1","trigger":"noneFailed"}"#);
        assert_eq!(serde_json::from_str::<TaskPlan>(&json).unwrap(), plan);
    }
}
