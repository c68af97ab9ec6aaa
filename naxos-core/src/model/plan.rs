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

use super::{TaskDefinition, DEFAULT_MAX_FAN_OUT};

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

/// A durable pause (`"sleep"`, instead of `functionName`): the task is WAITING, holding no
/// worker slot, until its due time, then COMPLETED with output `null`. JSON: `{"ms": N}` or
/// `{"until": "<CEL → RFC 3339 time>"}` — exactly one of the two.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sleep {
    /// How long to sleep, in milliseconds, from when the task's trigger holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// Until when: a CEL expression over `params` and `upstream` giving an RFC 3339 time
    /// (evaluated once, when the trigger holds; a time in the past completes at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// A wait for a named signal (`"waitFor"`, instead of `functionName`): the task is WAITING,
/// holding no worker slot, until a signal of that name is sent to its execution, then
/// COMPLETED with the signal's payload as its output; past `timeoutMs` it FAILS with
/// `signal <name> timed out`. JSON: `{"signal": "<name>", "timeoutMs"?: N}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitFor {
    /// The signal's name (`[A-Za-z0-9_.-]{1,128}`).
    pub signal: String,
    /// How long to wait, from when the task starts waiting; none: as long as it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A sub-job (`"subJob"`, instead of `functionName`): the task starts a child execution of
/// another definition and ends with it — COMPLETED with the child's outputs (`{taskId:
/// output}`), FAILED when it fails (a retryable failure: each retry starts a new child) or is
/// cancelled from elsewhere (final). Cancelling the parent cancels the child. JSON:
/// `{"definitionId": "…", "version"?: N, "params"?: "<CEL → object>"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubJob {
    /// The definition the child runs.
    pub definition_id: String,
    /// Its version; none: the latest when the parent execution is created (the version is then
    /// stored on the parent's task, so every retry runs the same one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The child's params: a CEL expression over `params` and `upstream` giving an object
    /// (evaluated when the task starts); none: the parent's params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

/// A concurrency limit on a task (`"concurrency"`): at most `limit` runs of it at once across
/// every node, per value of `key` (none: one limit for the task across all executions of its
/// definition). A run over the limit waits QUEUED (`blockedBy: "concurrency"`, no message) and
/// starts in order as slots free; it never fails for it. A fan-out's instances each take a
/// slot. JSON: `{"limit": N, "key"?: "<CEL → string>"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Concurrency {
    /// The most runs at once (at least 1).
    pub limit: u32,
    /// A CEL expression over `params` and `upstream` giving the key the limit counts per (a
    /// string, or a number or bool taken as its text), evaluated once when the task starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A rate limit on a task (`"rateLimit"`): cluster-wide, at most `burst` runs start at once and
/// `perSecond` a second after that, per value of `key` (none: one limit for the task across all
/// executions of its definition) — in any window of `t` seconds, at most `burst + perSecond × t`
/// starts. A run over it waits QUEUED (`blockedBy: "rateLimit"`) until its turn, which its
/// claim books; it never fails for it. JSON: `{"perSecond": R, "burst"?: B, "key"?: "<CEL →
/// string>"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Starts a second, sustained (more than 0, at most [`MAX_RATE`]).
    pub per_second: f64,
    /// Starts at once after a quiet spell (at least 1, at most [`MAX_BURST`]; default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub burst: u32,
    /// A CEL expression over `params` and `upstream` giving the key the limit counts per, as
    /// for [`Concurrency::key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The highest `rateLimit.perSecond`.
pub const MAX_RATE: f64 = 1_000_000.0;

/// The highest `rateLimit.burst` (a Store keeps the last `burst` start times of a limit).
pub const MAX_BURST: u32 = 1_000;

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

// Validation refuses a `perSecond` that is not a finite number, so equality is total.
impl Eq for RateLimit {}

impl RateLimit {
    /// The window a burst spans: `burst / perSecond`. In any window of this length, at most
    /// `burst` runs start.
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(f64::from(self.burst) / self.per_second)
    }

    /// The time between two starts at the sustained rate: `1 / perSecond`.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(1.0 / self.per_second)
    }
}

/// How deep sub-jobs may nest: an execution started by a sub-job of depth 10 may not start
/// another (its sub-job task FAILS).
pub const MAX_SUB_JOB_DEPTH: u32 = 10;

/// What runs a task: a registered function (the default), a fan-out of it, a durable sleep, a
/// wait for a signal, or a sub-job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind<'a> {
    /// The function named by the task's `functionName`, run by a worker (also what runs each
    /// instance of a fan-out).
    Function,
    /// A fan-out: the function runs once per item of the list the CEL expression gives.
    ForEach(&'a str),
    /// A durable sleep.
    Sleep(&'a Sleep),
    /// A wait for a signal.
    WaitFor(&'a WaitFor),
    /// A child execution of another definition.
    SubJob(&'a SubJob),
}

/// One instance of a fan-out: which task it is of, its position in the list, and its item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    /// The `forEach` task it is an instance of.
    pub of: String,
    /// Its position in the list (from 0).
    pub index: u32,
    /// Its element of the list.
    pub item: serde_json::Value,
}

impl Instance {
    /// The task id of instance `index` of the task `of`: `of[index]` (task ids never hold a
    /// `[`, so it names no task of a definition).
    pub fn task_id(of: &str, index: u32) -> String {
        format!("{of}[{index}]")
    }

    /// The task of the definition that runs the task `task_id`: the `forEach` task of an
    /// instance, else the task itself.
    pub fn definition_task(task_id: &str) -> &str {
        task_id.split_once('[').map_or(task_id, |(of, _)| of)
    }
}

/// What a task run needs of its definition besides its function: its condition, its trigger,
/// and what runs it when it is not a function. JSON: `{"when"?: "<CEL>", "trigger"?:
/// "<trigger>", "sleep"?: {…}, "waitFor"?: {…}, "forEach"?: "<CEL>", "maxFanOut"?: N,
/// "instance"?: {…}}`, each left out at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskPlan {
    /// The task's `when` condition (CEL over `params` and `upstream`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// When the task may start.
    #[serde(default, skip_serializing_if = "Trigger::is_default")]
    pub trigger: Trigger,
    /// A durable sleep instead of a function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Sleep>,
    /// A wait for a signal instead of a function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// A fan-out of the function over the list this CEL expression gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// The most instances the fan-out may start (none: [`DEFAULT_MAX_FAN_OUT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fan_out: Option<u32>,
    /// Set on the run of one instance of a fan-out (a run the state module adds when the
    /// fan-out starts, not a task of the definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
    /// A child execution of another definition instead of a function (its `version` set when
    /// the execution was created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_job: Option<SubJob>,
    /// For a sub-job: how many failed children it retries with a new one (the task's
    /// `maxRetry`; a function's retries are the worker's, not the plan's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_retry: u32,
    /// For a sub-job: the child execution of its current attempt, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<crate::model::ExecutionId>,
    /// The task's concurrency limit, if any (a fan-out's instances carry their task's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// The task's rate limit, if any (a fan-out's instances carry their task's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskPlan {
    /// The plan of a task of a definition.
    pub fn of(task: &TaskDefinition) -> Self {
        Self {
            when: task.when.clone(),
            trigger: task.trigger,
            sleep: task.sleep.clone(),
            wait_for: task.wait_for.clone(),
            for_each: task.for_each.clone(),
            max_fan_out: task.max_fan_out,
            instance: None,
            sub_job: task.sub_job.clone(),
            max_retry: if task.sub_job.is_some() { task.max_retry } else { 0 },
            child: None,
            concurrency: task.concurrency.clone(),
            rate_limit: task.rate_limit.clone(),
        }
    }

    /// True for the default plan: no condition, the default trigger, a function. A plain task
    /// behaves as tasks did before plans existed.
    pub fn is_plain(&self) -> bool {
        self.when.is_none()
            && self.trigger.is_default()
            && self.sleep.is_none()
            && self.wait_for.is_none()
            && self.for_each.is_none()
            && self.instance.is_none()
            && self.sub_job.is_none()
            && self.concurrency.is_none()
            && self.rate_limit.is_none()
    }

    /// The most instances this fan-out may start.
    pub fn max_fan_out(&self) -> u32 {
        self.max_fan_out.unwrap_or(DEFAULT_MAX_FAN_OUT)
    }

    /// What runs the task.
    pub fn kind(&self) -> TaskKind<'_> {
        match (&self.sleep, &self.wait_for, &self.for_each, &self.sub_job) {
            (Some(s), ..) => TaskKind::Sleep(s),
            (None, Some(w), ..) => TaskKind::WaitFor(w),
            (None, None, Some(list), _) => TaskKind::ForEach(list),
            (None, None, None, Some(job)) => TaskKind::SubJob(job),
            (None, None, None, None) => TaskKind::Function,
        }
    }

    /// The definition format that carries this plan (see [`JobDefinition::FORMAT`](super::JobDefinition::FORMAT)):
    /// 1 when plain, 2 with a condition or trigger, 3 with a sleep or a wait, 4 with a fan-out,
    /// 5 with a sub-job.
    pub fn format(&self) -> u32 {
        if self.rate_limit.is_some() {
            7
        } else if self.concurrency.is_some() {
            6
        } else if self.sub_job.is_some() {
            5
        } else if self.for_each.is_some() || self.instance.is_some() {
            4
        } else if self.sleep.is_some() || self.wait_for.is_some() {
            3
        } else if self.is_plain() {
            1
        } else {
            2
        }
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
            ..TaskPlan::default()
        };
        assert!(!plan.is_plain());
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(json, r#"{"when":"params.x > 1","trigger":"noneFailed"}"#);
        assert_eq!(serde_json::from_str::<TaskPlan>(&json).unwrap(), plan);
    }

    #[test]
    fn waits_have_their_json_names_and_format() {
        let json = r#"{"waitFor":{"signal":"approve","timeoutMs":5000}}"#;
        let plan: TaskPlan = serde_json::from_str(json).unwrap();
        assert_eq!(
            plan.kind(),
            TaskKind::WaitFor(&WaitFor {
                signal: "approve".into(),
                timeout_ms: Some(5_000)
            })
        );
        assert_eq!((plan.is_plain(), plan.format()), (false, 3));
        assert_eq!(serde_json::to_string(&plan).unwrap(), json);
        let plan: TaskPlan = serde_json::from_str(r#"{"sleep":{"until":"params.at"}}"#).unwrap();
        assert!(matches!(
            plan.kind(),
            TaskKind::Sleep(Sleep {
                ms: None,
                until: Some(_)
            })
        ));
        let err = serde_json::from_str::<TaskPlan>(r#"{"sleep":{"seconds":1}}"#).unwrap_err();
        assert!(err.to_string().contains("seconds"), "{err}");
        assert_eq!(TaskPlan::default().format(), 1);
    }
}
