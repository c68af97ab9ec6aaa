//! Job definitions in the JSON format of the original naxos, plus optional extensions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Concurrency, Priority, RateLimit, Retention, Sleep, SubJob, TaskPlan, Trigger, WaitFor};
use crate::dag::Dag;

/// A job: a DAG of named tasks. The JSON form is the original's:
///
/// ```json
/// { "id": "sample-2", "name": "Parallel Task Execution",
///   "tasks": { "task1": {"id":"task1","name":"Initial Task","maxRetry":3,"functionName":"Task1"},
///              "task2": {"id":"task2","name":"Final Task","maxRetry":1,"functionName":"Task2"} },
///   "graph": { "task1": [], "task2": ["task1"] } }
/// ```
///
/// `tasks` is keyed by task id; `graph` maps a task id to the ids it depends on (a task missing
/// from `graph` has none). Unknown fields are rejected.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobDefinition {
    /// Unique id, `[A-Za-z0-9_.-]{1,128}`.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// Optional longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Optional limit on a whole execution's run time; past it the execution FAILS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Optional retention of its finished executions by end state (`completedMs`, `failedMs`);
    /// what it leaves out follows the server's default. See [`Retention`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Optional priority of its executions, 0 (the lowest) to 9 (the highest), where the
    /// request gives none (see [`Priority`]); 0 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9))]
    pub priority: Option<u64>,
    /// The tasks, keyed by their id.
    pub tasks: BTreeMap<String, TaskDefinition>,
    /// Dependencies: task id → the ids it waits for.
    #[serde(default)]
    pub graph: BTreeMap<String, Vec<String>>,
}

/// One task of a [`JobDefinition`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDefinition {
    /// The task's id; must equal its key in `tasks`.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// Extra attempts after a retryable failure (`maxRetry + 1` attempts in all).
    #[serde(default)]
    pub max_retry: u32,
    /// The name a task function was registered under. Empty (left out) for a task that
    /// `sleep`s, `waitFor`s a signal or runs a `subJob` instead: a task has exactly one of the
    /// four.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub function_name: String,
    /// Optional per-attempt time limit; an attempt past it fails (retryably).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Optional retry backoff; [`BackoffPolicy::default`] otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffPolicy>,
    /// Optional condition (CEL over `params` and `upstream`, giving a bool), evaluated once when
    /// the trigger holds: false SKIPS the task with error `condition false` and its function
    /// never runs; an evaluation error FAILS it. See [`crate::condition`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// When the task may start from its dependencies' end states (default `allSuccess`).
    #[serde(default, skip_serializing_if = "Trigger::is_default")]
    pub trigger: Trigger,
    /// A durable sleep instead of a function (see [`Sleep`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Sleep>,
    /// A wait for a named signal instead of a function (see [`WaitFor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// A fan-out: a CEL expression over `params` and `upstream` giving a list, evaluated once
    /// when the task starts; the task's function then runs once per element (an **instance**,
    /// which sees `item` and `index`, with its own attempts and retries) and the task's output
    /// is the list of the instances' outputs, in order. An empty list COMPLETES the task with
    /// `[]`; the first instance that FAILS for good FAILS the task. See
    /// [`crate::state`]'s `fanout.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// The most instances a `forEach` may start (default [`DEFAULT_MAX_FAN_OUT`], at most
    /// [`MAX_FAN_OUT`]): a longer list FAILS the task naming its length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fan_out: Option<u32>,
    /// A child execution of another definition instead of a function (see [`SubJob`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_job: Option<SubJob>,
    /// At most this many runs of the task at once across every node (see [`Concurrency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// At most `burst` runs of the task start at once and `perSecond` a second after that,
    /// across every node (see [`RateLimit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// The default `maxFanOut` of a `forEach` task.
pub const DEFAULT_MAX_FAN_OUT: u32 = 1_000;

/// The highest `maxFanOut` a definition may set.
pub const MAX_FAN_OUT: u32 = 10_000;

/// Exponential backoff between attempts: `initialMs × multiplier^(n-1)`, capped at `maxMs`,
/// minus up to `jitter` (a fraction, 0–1) of it at random.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BackoffPolicy {
    /// Delay before the first retry, in milliseconds.
    pub initial_ms: u64,
    /// Upper bound of any delay, in milliseconds.
    pub max_ms: u64,
    /// Growth factor per retry, at least 1.
    pub multiplier: f64,
    /// Fraction (0–1) of the delay taken off at random, to spread retries.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 200,
            max_ms: 30_000,
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl BackoffPolicy {
    /// The delay before retry number `retry` (1 for the first retry), with `unit` a number in
    /// `[0, 1)` that picks the jitter (pass `fastrand::f64()`; 0 for no jitter).
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = (self.initial_ms as f64) * self.multiplier.powi(exp);
        let capped = base.min(self.max_ms as f64).max(0.0);
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered / 1000.0)
    }
}

impl JobDefinition {
    /// The newest definition format this build reads and writes.
    ///
    /// A stored definition carries the format it was written in (PostgreSQL: the `format`
    /// column). Format 1 is the original's JSON with the extensions above. A release that adds
    /// to the shape in a way an older reader would misread (a new default, a field whose
    /// absence means something else) raises this number, and a reader refuses a definition of
    /// a newer format with [`Error::NewerVersion`](crate::Error::NewerVersion) instead of
    /// running it wrongly.
    pub const FORMAT: u32 = 8;

    /// The lowest format that carries this definition faithfully: what a Store writes with it.
    ///
    /// Only definitions that use what a newer format adds get that format, so during a rolling
    /// upgrade the older nodes keep reading (and running) every other definition the newer
    /// nodes register: format 1 is the original's JSON and its extensions; format 2 adds task
    /// plans (`when`, `trigger`), which a node of format 1 would ignore and so run wrongly;
    /// format 3 adds tasks that `sleep` or `waitFor` a signal, and the job-level `retention`,
    /// which a node of format 2 cannot read; format 4 adds fan-outs (`forEach`); format 5 adds
    /// sub-jobs (`subJob`); format 6 adds concurrency limits (`concurrency`);
    /// format 7 adds rate limits (`rateLimit`); format 8 adds the job-level `priority`.
    pub fn required_format(&self) -> u32 {
        let tasks = self.tasks.values().map(|t| TaskPlan::of(t).format()).max().unwrap_or(1);
        let retention = if self.retention.is_some() { 3 } else { 1 };
        let priority = if self.priority.is_some() { 8 } else { 1 };
        tasks.max(retention).max(priority)
    }

    /// The priority of its executions where the request gives none: its `priority`, else the
    /// lowest (an invalid one, which [`validate`](super::validate) refuses, counts as the
    /// highest).
    pub fn default_priority(&self) -> Priority {
        self.priority
            .map_or(Priority::LOWEST, |p| Priority::new(p).unwrap_or(Priority::HIGHEST))
    }

    /// Parses the JSON form, rejecting unknown fields with the field's name.
    pub fn from_json(json: &str) -> crate::Result<Self> {
        serde_json::from_str(json).map_err(|e| crate::Error::InvalidInput(format!("job definition JSON: {e}")))
    }

    /// The ids a task depends on (empty when the task is missing from `graph`).
    pub fn dependencies(&self, task_id: &str) -> &[String] {
        self.graph.get(task_id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The job's time limit, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

impl TaskDefinition {
    /// The per-attempt time limit, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// The backoff policy in force (the task's own or the default).
    pub fn backoff_policy(&self) -> BackoffPolicy {
        self.backoff.unwrap_or_default()
    }
}

/// A registered, immutable version of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDefinition {
    /// The version, from 1, one more for every changed registration.
    pub version: u32,
    /// When this version was registered.
    pub created_at: DateTime<Utc>,
    /// The definition itself.
    pub definition: JobDefinition,
    /// Its task runs' template, derived from the definition once.
    #[serde(skip)]
    compiled: Compiled,
}

impl StoredDefinition {
    /// Version `version` of `definition`, registered at `created_at`.
    pub fn new(version: u32, created_at: DateTime<Utc>, definition: JobDefinition) -> Self {
        Self {
            version,
            created_at,
            definition,
            compiled: Compiled::default(),
        }
    }

    /// The definition's id.
    pub fn id(&self) -> &str {
        &self.definition.id
    }

    /// The tasks of a new execution of this version, in sorted order, with the edges of the
    /// compiled [`Dag`]: derived on the first call, then shared by every execution.
    pub fn new_tasks(&self) -> Arc<[NewTask]> {
        self.compiled.0.get_or_init(|| NewTask::all(&self.definition)).clone()
    }
}

/// A cache beside the definition: not part of its value (equal whatever it holds).
#[derive(Clone, Default)]
struct Compiled(OnceLock<Arc<[NewTask]>>);

impl PartialEq for Compiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Compiled")
    }
}

/// One task of a new execution: what its task run starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The task id.
    pub task_id: String,
    /// Its name.
    pub name: String,
    /// Its function.
    pub function_name: String,
    /// Ids of the tasks it waits for (all within the same execution).
    pub dependencies: Vec<String>,
    /// Ids of the tasks that wait for it.
    pub dependents: Vec<String>,
    /// Its condition and trigger, shared by every execution created from this template.
    pub plan: Arc<TaskPlan>,
}

impl NewTask {
    /// Every task of `def`, in its sorted order, with the edges of its compiled [`Dag`].
    pub fn all(def: &JobDefinition) -> Arc<[NewTask]> {
        let dag = Dag::build(def);
        let ids = |list: &[usize]| list.iter().map(|&j| dag.ids()[j].clone()).collect();
        def.tasks
            .values()
            .enumerate()
            .map(|(i, t)| NewTask {
                task_id: t.id.clone(),
                name: t.name.clone(),
                function_name: t.function_name.clone(),
                dependencies: ids(dag.dependencies(i)),
                dependents: ids(dag.dependents(i)),
                plan: Arc::new(TaskPlan::of(t)),
            })
            .collect()
    }
}

/// One line of a definition listing: the latest version of one id.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionSummary {
    /// The definition's id.
    pub id: String,
    /// The latest version's name.
    pub name: String,
    /// The latest version.
    pub latest_version: u32,
    /// How many tasks the latest version has.
    pub task_count: usize,
    /// When the latest version was registered.
    pub updated_at: DateTime<Utc>,
    /// True while the definition is paused: its executions start no new task.
    #[serde(default)]
    pub paused: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_2: &str = r#"{ "id": "sample-2", "name": "Parallel Task Execution",
      "tasks": { "task1": {"id":"task1","name":"Initial Task","maxRetry":3,"functionName":"Task1"},
                 "task2": {"id":"task2","name":"Parallel Task A","maxRetry":2,"functionName":"Task2"},
                 "task3": {"id":"task3","name":"Parallel Task B","maxRetry":2,"functionName":"Task3"},
                 "task4": {"id":"task4","name":"Final Task","maxRetry":1,"functionName":"Task4"} },
      "graph": { "task1": [], "task2": ["task1"], "task3": ["task1"], "task4": ["task2","task3"] } }"#;

    #[test]
    fn parses_the_original_format_unchanged() {
        let def = JobDefinition::from_json(SAMPLE_2).unwrap();
        assert_eq!(def.id, "sample-2");
        assert_eq!(def.tasks.len(), 4);
        assert_eq!(def.tasks["task1"].max_retry, 3);
        assert_eq!(def.tasks["task4"].function_name, "Task4");
        assert_eq!(def.dependencies("task4"), ["task2", "task3"]);
        assert_eq!(def.required_format(), 1, "the original's JSON is format 1");
        assert!(def.required_format() <= JobDefinition::FORMAT);
        // Round trip keeps the same content.
        let again = JobDefinition::from_json(&serde_json::to_string(&def).unwrap()).unwrap();
        assert_eq!(def, again);
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = JobDefinition::from_json(r#"{"id":"a","tasks":{},"retries":3}"#).unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
        let err = JobDefinition::from_json(r#"{"id":"a","tasks":{"t":{"id":"t","functionName":"f","maxRetries":1}}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("maxRetries"), "{err}");
    }

    #[test]
    fn extensions_parse() {
        let def = JobDefinition::from_json(
            r#"{"id":"a","timeoutMs":5000,"description":"d","tasks":{"t":{"id":"t","functionName":"f",
               "timeoutMs":100,"backoff":{"initialMs":10,"maxMs":40,"multiplier":3}}}}"#,
        )
        .unwrap();
        assert_eq!(def.timeout(), Some(Duration::from_secs(5)));
        let b = def.tasks["t"].backoff_policy();
        assert_eq!((b.initial_ms, b.max_ms, b.multiplier, b.jitter), (10, 40, 3.0, 0.2));
    }

    #[test]
    fn a_retention_round_trips_and_needs_format_3() {
        let def = JobDefinition::from_json(
            r#"{"id":"a","retention":{"completedMs":60000},"tasks":{"t":{"id":"t","functionName":"f"}}}"#,
        )
        .unwrap();
        let retention = def.retention.unwrap();
        assert_eq!((retention.completed_ms, retention.failed_ms), (Some(60_000), None));
        assert_eq!(def.required_format(), 3);
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["retention"], serde_json::json!({"completedMs": 60000}));
        assert_eq!(JobDefinition::from_json(&json.to_string()).unwrap(), def);
        let err = JobDefinition::from_json(r#"{"id":"a","retention":{"completed":1},"tasks":{}}"#).unwrap_err();
        assert!(err.to_string().contains("completed"), "{err}");
    }

    #[test]
    fn backoff_grows_caps_and_jitters_down() {
        let b = BackoffPolicy {
            initial_ms: 100,
            max_ms: 1000,
            multiplier: 2.0,
            jitter: 0.5,
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(4, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(5, 0.0), Duration::from_millis(1000));
        assert_eq!(b.delay(50, 0.0), Duration::from_millis(1000));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(50));
    }
}
