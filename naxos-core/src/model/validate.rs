//! Validation of job definitions: every problem is found and named, not just the first.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use super::{JobDefinition, MAX_FAN_OUT};
use crate::dag::Dag;
use crate::{Error, Result};

/// Size limits checked when a definition is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tasks a job may have.
    pub max_tasks: usize,
    /// Largest `maxRetry` a task may ask for.
    pub max_retry: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tasks: 1_000,
            max_retry: 100,
        }
    }
}

/// One thing wrong with a job definition, naming the ids involved.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The job id is empty or uses characters outside `[A-Za-z0-9_.-]`, or is over 128 long.
    InvalidJobId {
        /// The id as given.
        id: String,
    },
    /// The job has no tasks.
    NoTasks,
    /// More tasks than [`Limits::max_tasks`].
    TooManyTasks {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A task key is empty or uses characters outside `[A-Za-z0-9_.-]`, or is over 128 long.
    InvalidTaskId {
        /// The key as given.
        task: String,
    },
    /// A task's `id` differs from its key in `tasks`.
    TaskIdMismatch {
        /// The key in `tasks`.
        key: String,
        /// The `id` inside.
        id: String,
    },
    /// A task has no `functionName` (nor a `sleep`, `waitFor` or `subJob` instead).
    MissingFunctionName {
        /// The task.
        task: String,
    },
    /// A task has more than one of `functionName`, `sleep`, `waitFor` and `subJob`.
    ConflictingKinds {
        /// The task.
        task: String,
        /// The fields it has, of the three.
        fields: Vec<String>,
    },
    /// A task's `subJob` makes no sense (see also the engine's check that its definition, and
    /// version, exist).
    InvalidSubJob {
        /// The task.
        task: String,
        /// The field: `subJob.definitionId`, `subJob.version` or `subJob.params`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A task's `concurrency` or `rateLimit` (a limit on its runs) makes no sense.
    InvalidLimit {
        /// The task.
        task: String,
        /// The field: `concurrency`, `concurrency.limit`, `concurrency.key`, `rateLimit`,
        /// `rateLimit.perSecond`, `rateLimit.burst` or `rateLimit.key`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A task's `sleep` or `waitFor` makes no sense.
    InvalidWait {
        /// The task.
        task: String,
        /// The field: `sleep`, `sleep.until`, `waitFor.signal` or `waitFor.timeoutMs`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A task's `functionName` is not registered with the engine.
    UnregisteredFunction {
        /// The task.
        task: String,
        /// The function it names.
        function: String,
    },
    /// A `timeoutMs` of zero.
    InvalidTimeout {
        /// The task, or none for the job's own timeout.
        task: Option<String>,
    },
    /// A task's `backoff` makes no sense.
    InvalidBackoff {
        /// The task.
        task: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `maxRetry` above [`Limits::max_retry`].
    TooManyRetries {
        /// The task.
        task: String,
        /// What was asked for.
        max_retry: u32,
        /// The limit.
        max: u32,
    },
    /// `graph` has a key that is not a task.
    UnknownGraphTask {
        /// The key.
        task: String,
    },
    /// A task depends on an id that is not a task.
    UnknownDependency {
        /// The task.
        task: String,
        /// The missing dependency.
        dependency: String,
    },
    /// A task lists the same dependency twice.
    DuplicateDependency {
        /// The task.
        task: String,
        /// The repeated dependency.
        dependency: String,
    },
    /// Tasks that depend on each other in a cycle.
    Cycle {
        /// The tasks of the cycle, sorted.
        tasks: Vec<String>,
    },
    /// A text field holds the character U+0000, which no Store keeps.
    NulCharacter {
        /// The field: `name`, `description`, `tasks.<id>.name` or `tasks.<id>.when`.
        field: String,
    },
    /// A task's `when` is not a condition naxos accepts (see [`crate::condition::check`]).
    InvalidCondition {
        /// The task.
        task: String,
        /// What is wrong with it (a syntax error names its line and column).
        reason: String,
    },
    /// A task's `forEach` or `maxFanOut` makes no sense.
    InvalidFanOut {
        /// The task.
        task: String,
        /// The field: `forEach` or `maxFanOut`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `retention` period of zero or above [`MAX_RETENTION_MS`](super::MAX_RETENTION_MS).
    InvalidRetention {
        /// The field: `retention.completedMs` or `retention.failedMs`.
        field: String,
        /// The period as given, in milliseconds.
        ms: u64,
    },
    /// A job-level `priority` above 9 (see [`Priority`](super::Priority)).
    InvalidPriority {
        /// The priority as given.
        priority: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJobId { id } => write!(f, "job id `{id}` must match [A-Za-z0-9_.-]{{1,128}}"),
            Self::NoTasks => write!(f, "the job has no tasks"),
            Self::TooManyTasks { count, max } => write!(f, "the job has {count} tasks, over the limit of {max}"),
            Self::InvalidTaskId { task } => write!(f, "task id `{task}` must match [A-Za-z0-9_.-]{{1,128}}"),
            Self::TaskIdMismatch { key, id } => write!(f, "task `{key}` has id `{id}`; the id must equal its key"),
            Self::MissingFunctionName { task } => {
                write!(
                    f,
                    "task `{task}` has no functionName (nor a sleep, waitFor or subJob instead)"
                )
            }
            Self::ConflictingKinds { task, fields } => write!(
                f,
                "task `{task}` has {}; a task has exactly one of functionName, sleep, waitFor and subJob",
                quoted(fields).replace(", ", " and ")
            ),
            Self::InvalidWait { task, field, reason }
            | Self::InvalidSubJob { task, field, reason }
            | Self::InvalidLimit { task, field, reason } => {
                write!(f, "task `{task}` has an invalid `{field}`: {reason}")
            }
            Self::UnregisteredFunction { task, function } => {
                write!(f, "task `{task}` uses function `{function}`, which is not registered")
            }
            Self::InvalidTimeout { task: Some(task) } => write!(f, "task `{task}` has timeoutMs 0"),
            Self::InvalidTimeout { task: None } => write!(f, "the job has timeoutMs 0"),
            Self::InvalidBackoff { task, reason } => write!(f, "task `{task}` has an invalid backoff: {reason}"),
            Self::TooManyRetries { task, max_retry, max } => {
                write!(f, "task `{task}` has maxRetry {max_retry}, over the limit of {max}")
            }
            Self::UnknownGraphTask { task } => write!(f, "graph names `{task}`, which is not a task"),
            Self::UnknownDependency { task, dependency } => {
                write!(f, "task `{task}` depends on `{dependency}`, which is not a task")
            }
            Self::DuplicateDependency { task, dependency } => {
                write!(f, "task `{task}` lists dependency `{dependency}` more than once")
            }
            Self::Cycle { tasks } => write!(f, "tasks {} depend on each other in a cycle", quoted(tasks)),
            Self::NulCharacter { field } => {
                write!(f, "`{field}` holds the character U+0000, which cannot be stored")
            }
            Self::InvalidCondition { task, reason } => {
                write!(f, "task `{task}` has an invalid `when` condition: {reason}")
            }
            Self::InvalidFanOut { task, field, reason } => {
                write!(f, "task `{task}` has an invalid `{field}`: {reason}")
            }
            Self::InvalidRetention { field, ms } => write!(
                f,
                "`{field}` is {ms}; it must be between 1 and {} (100 years)",
                super::MAX_RETENTION_MS
            ),
            Self::InvalidPriority { priority } => f.write_str(&super::Priority::out_of_range(priority)),
        }
    }
}

fn quoted(ids: &[String]) -> String {
    ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// True when `id` matches `[A-Za-z0-9_.-]{1,128}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks `def` against `limits` and the registered functions, returning its compiled graph or
/// [`Error::InvalidDefinition`] listing every problem.
pub fn validate(def: &JobDefinition, limits: &Limits, is_registered: &dyn Fn(&str) -> bool) -> Result<Dag> {
    let mut problems = Vec::new();
    if !is_valid_id(&def.id) {
        problems.push(Problem::InvalidJobId { id: def.id.clone() });
    }
    if def.timeout_ms == Some(0) {
        problems.push(Problem::InvalidTimeout { task: None });
    }
    if let Some(priority) = def.priority.filter(|p| super::Priority::new(*p).is_err()) {
        problems.push(Problem::InvalidPriority { priority });
    }
    if let Some(r) = &def.retention {
        for (field, ms) in [("completedMs", r.completed_ms), ("failedMs", r.failed_ms)] {
            if let Some(ms) = ms.filter(|ms| *ms == 0 || *ms > super::MAX_RETENTION_MS) {
                problems.push(Problem::InvalidRetention {
                    field: format!("retention.{field}"),
                    ms,
                });
            }
        }
    }
    let texts = [
        ("name".to_string(), Some(&def.name)),
        ("description".to_string(), def.description.as_ref()),
    ];
    let task_names = def.tasks.iter().flat_map(|(k, t)| {
        [
            (format!("tasks.{k}.name"), Some(&t.name)),
            (format!("tasks.{k}.when"), t.when.as_ref()),
            (
                format!("tasks.{k}.sleep.until"),
                t.sleep.as_ref().and_then(|s| s.until.as_ref()),
            ),
            (format!("tasks.{k}.forEach"), t.for_each.as_ref()),
            (
                format!("tasks.{k}.subJob.params"),
                t.sub_job.as_ref().and_then(|j| j.params.as_ref()),
            ),
            (
                format!("tasks.{k}.concurrency.key"),
                t.concurrency.as_ref().and_then(|c| c.key.as_ref()),
            ),
            (
                format!("tasks.{k}.rateLimit.key"),
                t.rate_limit.as_ref().and_then(|r| r.key.as_ref()),
            ),
        ]
    });
    for (field, text) in texts.into_iter().chain(task_names) {
        if text.is_some_and(|t| t.contains('\0')) {
            problems.push(Problem::NulCharacter { field });
        }
    }
    if def.tasks.is_empty() {
        problems.push(Problem::NoTasks);
    }
    if def.tasks.len() > limits.max_tasks {
        problems.push(Problem::TooManyTasks {
            count: def.tasks.len(),
            max: limits.max_tasks,
        });
    }
    for (key, task) in &def.tasks {
        if !is_valid_id(key) {
            problems.push(Problem::InvalidTaskId { task: key.clone() });
        }
        if task.id != *key {
            problems.push(Problem::TaskIdMismatch {
                key: key.clone(),
                id: task.id.clone(),
            });
        }
        let kinds: Vec<String> = [
            (!task.function_name.is_empty(), "functionName"),
            (task.sleep.is_some(), "sleep"),
            (task.wait_for.is_some(), "waitFor"),
            (task.sub_job.is_some(), "subJob"),
        ]
        .into_iter()
        .filter(|&(has, _)| has)
        .map(|(_, field)| field.to_string())
        .collect();
        problems.extend(wait_problems(key, task));
        problems.extend(sub_job_problems(key, task));
        problems.extend(limit_problems(key, task));
        if kinds.len() > 1 {
            problems.push(Problem::ConflictingKinds {
                task: key.clone(),
                fields: kinds,
            });
        } else if kinds.is_empty() {
            problems.push(Problem::MissingFunctionName { task: key.clone() });
        } else if !task.function_name.is_empty() && !is_registered(&task.function_name) {
            problems.push(Problem::UnregisteredFunction {
                task: key.clone(),
                function: task.function_name.clone(),
            });
        }
        if task.timeout_ms == Some(0) {
            problems.push(Problem::InvalidTimeout {
                task: Some(key.clone()),
            });
        }
        if task.max_retry > limits.max_retry {
            problems.push(Problem::TooManyRetries {
                task: key.clone(),
                max_retry: task.max_retry,
                max: limits.max_retry,
            });
        }
        problems.extend(fan_out_problems(key, task));
        if let Some(Err(reason)) = task.when.as_deref().map(crate::condition::check_when) {
            problems.push(Problem::InvalidCondition {
                task: key.clone(),
                reason,
            });
        }
        if let Some(b) = &task.backoff {
            if let Some(reason) = backoff_problem(b) {
                problems.push(Problem::InvalidBackoff {
                    task: key.clone(),
                    reason,
                });
            }
        }
    }
    for (task, deps) in &def.graph {
        if !def.tasks.contains_key(task) {
            problems.push(Problem::UnknownGraphTask { task: task.clone() });
            continue;
        }
        // Sets, not scans: a body may list thousands of dependencies for one task.
        let mut seen = HashSet::new();
        let mut reported = HashSet::new();
        for dep in deps {
            if !def.tasks.contains_key(dep) {
                if reported.insert(dep) {
                    problems.push(Problem::UnknownDependency {
                        task: task.clone(),
                        dependency: dep.clone(),
                    });
                }
            } else if !seen.insert(dep) && reported.insert(dep) {
                problems.push(Problem::DuplicateDependency {
                    task: task.clone(),
                    dependency: dep.clone(),
                });
            }
        }
    }
    let dag = Dag::build(def);
    // Cycle search recurses once per task: only run it on a job within the size limit.
    if def.tasks.len() <= limits.max_tasks {
        problems.extend(dag.cycles().into_iter().map(|tasks| Problem::Cycle { tasks }));
    }
    if problems.is_empty() {
        Ok(dag)
    } else {
        Err(Error::InvalidDefinition {
            id: def.id.clone(),
            problems,
        })
    }
}

/// What is wrong with a task's `sleep` and `waitFor`.
fn wait_problems(key: &str, task: &super::TaskDefinition) -> Vec<Problem> {
    let problem = |field: &str, reason: String| Problem::InvalidWait {
        task: key.to_string(),
        field: field.to_string(),
        reason,
    };
    let mut problems = Vec::new();
    if let Some(sleep) = &task.sleep {
        match (sleep.ms, sleep.until.as_deref()) {
            (Some(_), Some(_)) => problems.push(problem("sleep", "it has both `ms` and `until`; give one".into())),
            (None, None) => problems.push(problem("sleep", "it needs `ms` or `until`".into())),
            (Some(ms), None) if ms > MAX_WAIT_MS => {
                problems.push(problem("sleep.ms", format!("{ms} is over the limit of {MAX_WAIT_MS}")))
            }
            (None, Some(until)) => {
                if let Err(reason) = crate::condition::check(until) {
                    problems.push(problem("sleep.until", reason));
                }
            }
            (Some(_), None) => {}
        }
    }
    if let Some(wait) = &task.wait_for {
        if !is_valid_id(&wait.signal) {
            problems.push(problem(
                "waitFor.signal",
                format!("`{}` must match [A-Za-z0-9_.-]{{1,128}}", wait.signal),
            ));
        }
        match wait.timeout_ms {
            Some(0) => problems.push(problem("waitFor.timeoutMs", "it is 0".into())),
            Some(ms) if ms > MAX_WAIT_MS => problems.push(problem(
                "waitFor.timeoutMs",
                format!("{ms} is over the limit of {MAX_WAIT_MS}"),
            )),
            _ => {}
        }
    }
    problems
}

/// What is wrong with a task's `subJob`.
fn sub_job_problems(key: &str, task: &super::TaskDefinition) -> Vec<Problem> {
    let problem = |field: &str, reason: String| Problem::InvalidSubJob {
        task: key.to_string(),
        field: field.to_string(),
        reason,
    };
    let Some(job) = &task.sub_job else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if !is_valid_id(&job.definition_id) {
        problems.push(problem(
            "subJob.definitionId",
            format!("`{}` must match [A-Za-z0-9_.-]{{1,128}}", job.definition_id),
        ));
    }
    if job.version == Some(0) {
        problems.push(problem("subJob.version", "versions start at 1".into()));
    }
    if let Some(Err(reason)) = job.params.as_deref().map(crate::condition::check_when) {
        problems.push(problem("subJob.params", reason));
    }
    if task.for_each.is_some() {
        problems.push(problem(
            "subJob",
            "a fan-out runs a function per item; a task with a `forEach` cannot be a sub-job".into(),
        ));
    }
    problems
}

/// What is wrong with a task's `concurrency` and `rateLimit`.
fn limit_problems(key: &str, task: &super::TaskDefinition) -> Vec<Problem> {
    let problem = |field: &str, reason: String| Problem::InvalidLimit {
        task: key.to_string(),
        field: field.to_string(),
        reason,
    };
    let mut problems = Vec::new();
    if let Some(c) = &task.concurrency {
        if c.limit == 0 {
            problems.push(problem(
                "concurrency.limit",
                "it is 0: at least one run must be able to start".into(),
            ));
        }
    }
    if let Some(r) = &task.rate_limit {
        if !(r.per_second.is_finite() && r.per_second > 0.0 && r.per_second <= super::MAX_RATE) {
            let reason = format!(
                "{} must be a number above 0 and at most {}",
                r.per_second,
                super::MAX_RATE
            );
            problems.push(problem("rateLimit.perSecond", reason));
        }
        if !(1..=super::MAX_BURST).contains(&r.burst) {
            let reason = format!("{} must be between 1 and {}", r.burst, super::MAX_BURST);
            problems.push(problem("rateLimit.burst", reason));
        }
    }
    // Both: a key that compiles, on a task that runs a function.
    let limits = [
        ("concurrency", task.concurrency.as_ref().map(|c| c.key.as_deref())),
        ("rateLimit", task.rate_limit.as_ref().map(|r| r.key.as_deref())),
    ];
    for (field, limit) in limits {
        let Some(key_expression) = limit else { continue };
        if let Some(Err(reason)) = key_expression.map(crate::condition::check_when) {
            problems.push(problem(&format!("{field}.key"), reason));
        }
        if task.function_name.is_empty() {
            problems.push(problem(
                field,
                "it limits the runs of a function; a `sleep`, `waitFor` or `subJob` runs none".into(),
            ));
        }
    }
    problems
}

/// What is wrong with a task's `forEach` and `maxFanOut`.
fn fan_out_problems(key: &str, task: &super::TaskDefinition) -> Vec<Problem> {
    let problem = |field: &str, reason: String| Problem::InvalidFanOut {
        task: key.to_string(),
        field: field.to_string(),
        reason,
    };
    let mut problems = Vec::new();
    match (&task.for_each, task.max_fan_out) {
        (None, Some(_)) => problems.push(problem("maxFanOut", "it needs a `forEach`".into())),
        (_, Some(0)) => problems.push(problem("maxFanOut", "it is 0".into())),
        (_, Some(max)) if max > MAX_FAN_OUT => problems.push(problem(
            "maxFanOut",
            format!("{max} is over the limit of {MAX_FAN_OUT}"),
        )),
        _ => {}
    }
    if let Some(list) = &task.for_each {
        if let Err(reason) = crate::condition::check_when(list) {
            problems.push(problem("forEach", reason));
        }
        if task.sleep.is_some() || task.wait_for.is_some() {
            problems.push(problem(
                "forEach",
                "a fan-out runs a function per item: it needs a `functionName`, not a `sleep` or `waitFor`".into(),
            ));
        }
    }
    problems
}

/// The longest `sleep.ms` or `waitFor.timeoutMs`: ten years.
pub const MAX_WAIT_MS: u64 = 10 * 366 * 24 * 3_600 * 1_000;

fn backoff_problem(b: &super::BackoffPolicy) -> Option<String> {
    if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
        Some(format!("multiplier {} must be a number ≥ 1", b.multiplier))
    } else if !(b.jitter.is_finite() && (0.0..=1.0).contains(&b.jitter)) {
        Some(format!("jitter {} must be between 0 and 1", b.jitter))
    } else if b.initial_ms > b.max_ms {
        Some(format!("initialMs {} is above maxMs {}", b.initial_ms, b.max_ms))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, registered: &[&str]) -> Vec<Problem> {
        let def = JobDefinition::from_json(json).unwrap();
        match validate(
            &def,
            &Limits {
                max_tasks: 4,
                max_retry: 10,
            },
            &|f| registered.contains(&f),
        ) {
            Ok(_) => Vec::new(),
            Err(Error::InvalidDefinition { problems, .. }) => problems,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn a_valid_diamond_passes() {
        let problems = check(
            r#"{"id":"d","tasks":{"a":{"id":"a","functionName":"f"},"b":{"id":"b","functionName":"f"},
                "c":{"id":"c","functionName":"f"},"e":{"id":"e","functionName":"f"}},
                "graph":{"b":["a"],"c":["a"],"e":["b","c"]}}"#,
            &["f"],
        );
        assert_eq!(problems, vec![]);
    }

    #[test]
    fn every_problem_is_named() {
        let problems = check(
            r#"{"id":"bad id!","timeoutMs":0,"tasks":{
                "a":{"id":"x","functionName":"f"},
                "":{"id":"","functionName":"f"},
                "b":{"id":"b","functionName":"nope","timeoutMs":0,"maxRetry":11},
                "c":{"id":"c","functionName":"","backoff":{"multiplier":0.5}},
                "d":{"id":"d","functionName":"f","backoff":{"initialMs":9,"maxMs":1,"jitter":0.1}}},
                "graph":{"zz":["a"],"a":["missing","b","b"]}}"#,
            &["f"],
        );
        let expected = vec![
            Problem::InvalidJobId { id: "bad id!".into() },
            Problem::InvalidTimeout { task: None },
            Problem::TooManyTasks { count: 5, max: 4 },
            Problem::InvalidTaskId { task: "".into() },
            Problem::TaskIdMismatch {
                key: "a".into(),
                id: "x".into(),
            },
            Problem::UnregisteredFunction {
                task: "b".into(),
                function: "nope".into(),
            },
            Problem::InvalidTimeout { task: Some("b".into()) },
            Problem::TooManyRetries {
                task: "b".into(),
                max_retry: 11,
                max: 10,
            },
            Problem::MissingFunctionName { task: "c".into() },
            Problem::InvalidBackoff {
                task: "c".into(),
                reason: "multiplier 0.5 must be a number ≥ 1".into(),
            },
            Problem::InvalidBackoff {
                task: "d".into(),
                reason: "initialMs 9 is above maxMs 1".into(),
            },
            Problem::UnknownDependency {
                task: "a".into(),
                dependency: "missing".into(),
            },
            Problem::DuplicateDependency {
                task: "a".into(),
                dependency: "b".into(),
            },
            Problem::UnknownGraphTask { task: "zz".into() },
        ];
        assert_eq!(problems, expected);
        let text = Error::InvalidDefinition {
            id: "bad id!".into(),
            problems,
        }
        .to_string();
        assert!(text.contains("function `nope`, which is not registered"), "{text}");
        assert!(text.contains("depends on `missing`"), "{text}");
    }

    #[test]
    fn cycles_name_their_tasks() {
        let problems = check(
            r#"{"id":"c","tasks":{"a":{"id":"a","functionName":"f"},"b":{"id":"b","functionName":"f"},
                "c":{"id":"c","functionName":"f"},"d":{"id":"d","functionName":"f"}},
                "graph":{"a":["c"],"b":["a"],"c":["b"],"d":["d"]}}"#,
            &["f"],
        );
        assert_eq!(
            problems,
            vec![
                Problem::Cycle {
                    tasks: vec!["a".into(), "b".into(), "c".into()]
                },
                Problem::Cycle {
                    tasks: vec!["d".into()]
                },
            ]
        );
        assert_eq!(
            problems[0].to_string(),
            "tasks `a`, `b`, `c` depend on each other in a cycle"
        );
    }

    #[test]
    fn conditions_that_do_not_compile_are_named_with_their_task() {
        let problems = check(
            r#"{"id":"w","tasks":{"a":{"id":"a","functionName":"f","when":"params.x > 1"},
                "b":{"id":"b","functionName":"f","when":"params.x >","trigger":"noneFailed"}},
                "graph":{"b":["a"]}}"#,
            &["f"],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(
            text.starts_with("task `b` has an invalid `when` condition: line 1, column 11: "),
            "{text}"
        );
    }

    #[test]
    fn retention_periods_are_positive_and_bounded() {
        let job = |retention: &str| {
            format!(r#"{{"id":"r","retention":{retention},"tasks":{{"a":{{"id":"a","functionName":"f"}}}}}}"#)
        };
        assert_eq!(check(&job(r#"{"completedMs":1,"failedMs":5000}"#), &["f"]), vec![]);
        assert_eq!(check(&job("{}"), &["f"]), vec![]);
        let too_long = crate::model::MAX_RETENTION_MS + 1;
        let problems = check(&job(&format!(r#"{{"completedMs":0,"failedMs":{too_long}}}"#)), &["f"]);
        assert_eq!(
            problems,
            vec![
                Problem::InvalidRetention {
                    field: "retention.completedMs".into(),
                    ms: 0
                },
                Problem::InvalidRetention {
                    field: "retention.failedMs".into(),
                    ms: too_long
                },
            ]
        );
        assert!(problems[0]
            .to_string()
            .starts_with("`retention.completedMs` is 0; it must be between 1 and "));
    }

    #[test]
    fn a_job_priority_is_zero_to_nine() {
        let job = |priority: u64| {
            format!(r#"{{"id":"p","priority":{priority},"tasks":{{"a":{{"id":"a","functionName":"f"}}}}}}"#)
        };
        assert_eq!(check(&job(0), &["f"]), vec![]);
        assert_eq!(check(&job(9), &["f"]), vec![]);
        let problems = check(&job(10), &["f"]);
        assert_eq!(problems, vec![Problem::InvalidPriority { priority: 10 }]);
        assert!(problems[0]
            .to_string()
            .starts_with("`priority` is 10; it must be between 0"));
    }

    #[test]
    fn no_tasks_is_a_problem() {
        assert_eq!(check(r#"{"id":"e","tasks":{}}"#, &[]), vec![Problem::NoTasks]);
    }

    #[test]
    fn ids_follow_the_charset() {
        assert!(is_valid_id("sample-2.v1_x"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"a".repeat(129)));
        assert!(is_valid_id(&"a".repeat(128)));
    }
}
