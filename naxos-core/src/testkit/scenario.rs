//! Random scenarios for the state machine: a random DAG (half of them with random task plans:
//! `when` conditions that hold, fail or do not evaluate, and every trigger), a random sequence
//! of operations on one execution of it (a quarter of them delayed), as proptest strategies, and
//! the drivers that run a scenario against the pure state module or against any [`Store`].
//!
//! An [`Op`] picks its task among those it can apply to (a claim among the QUEUED and RETRYING
//! tasks, a finish among the RUNNING ones, …) and names the current attempt, an older one or a
//! newer one, so most operations do something and some are stale. [`resolve`] turns it into a
//! concrete [`Call`] against a snapshot of the execution, so two stores given the same scenario
//! receive exactly the same calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::backend::{
    Changes, ClaimRequest, ClaimedTask, LeaseState, NewExecution, StopReason, Store, TaskFinish, TaskOutcome,
};
use crate::clock::ManualClock;
use crate::model::{
    Delay, Execution, ExecutionId, JobDefinition, Sleep, StoredDefinition, SubJob, TaskBuilder, TaskPlan, TaskRef,
    TaskRun, TaskStatus, TraceParent, Trigger, WaitFor,
};
use crate::state::ExecutionState;
use crate::{Error, Result};

/// Most tasks in a scenario's DAG.
pub const MAX_TASKS: usize = 6;

/// A DAG (task `i` depends on some of the tasks before it) and the operations to apply.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// For each task, the indices of its dependencies (all lower than its own).
    pub dependencies: Vec<Vec<usize>>,
    /// For each task, its plan (empty: every task plain).
    pub plans: Vec<TaskPlan>,
    /// The job's `timeoutMs`, in seconds.
    pub timeout_secs: Option<u8>,
    /// The execution's start delay (`delayMs`), in seconds; `None` to start at once.
    pub delay_secs: Option<u8>,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// Which attempt an operation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// The task's current attempt.
    Current,
    /// The one before: a late message or a presumed-dead worker.
    Stale,
    /// The one after: a message from the future, which no store can have sent.
    Ahead,
}

/// One operation of a [`Scenario`]. `pick` chooses among the tasks the operation can apply to
/// (any task when there are none).
#[derive(Debug, Clone)]
pub enum Op {
    /// Claim a QUEUED or RETRYING task for `owner`, leased for `lease_secs`.
    Claim {
        /// Which task.
        pick: u8,
        /// Which attempt.
        fence: Fence,
        /// The claiming node (0 or 1).
        owner: u8,
        /// The lease length.
        lease_secs: u8,
    },
    /// Extend a running (or cancelled) task's lease to `secs` from now.
    Heartbeat {
        /// Which task.
        pick: u8,
        /// Which attempt.
        fence: Fence,
        /// The new lease length.
        secs: u8,
    },
    /// Finish running tasks: one outcome per entry, all in one call.
    Finish {
        /// Which tasks and how each ended.
        outcomes: Vec<(u8, Fence, Ending)>,
    },
    /// Hand a running task back.
    Release {
        /// Which task.
        pick: u8,
        /// Which attempt.
        fence: Fence,
    },
    /// Cancel the execution.
    Cancel,
    /// Fail the execution for its deadline.
    TimeOut,
    /// Retry the failed part.
    Retry,
    /// Restart from a task.
    RetryFrom {
        /// Which task (any).
        pick: u8,
    },
    /// Move the clock forward.
    Advance {
        /// By how many seconds.
        secs: u8,
    },
    /// Recover expired leases.
    Recover {
        /// Lease expiries allowed before a task FAILS.
        max_expiries: u8,
    },
    /// Take over QUEUED tasks older than `older_secs`, and due retries.
    TakeStale {
        /// How old a QUEUED task must be.
        older_secs: u8,
    },
    /// Ask which executions are past their deadline.
    Overdue,
    /// Wake a WAITING task (due or not).
    Wake {
        /// Which task.
        pick: u8,
        /// Which attempt.
        fence: Fence,
    },
    /// Wake every WAITING task that is due.
    WakeDue,
    /// Send the signal `s<name % 2>` (a name the job may or may not wait for).
    Signal {
        /// Which name.
        name: u8,
    },
    /// Start the execution if it is delayed (due or not, delayed or not).
    StartDelayed,
    /// End the child of a RUNNING sub-job task as `ending` says.
    ChildEnds {
        /// Which task.
        pick: u8,
        /// Which attempt.
        fence: Fence,
        /// How the child ends.
        ending: ChildEnding,
    },
}

/// How a sub-job's child ends in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnding {
    /// Its task completed.
    Completed,
    /// Its task failed for good.
    Failed,
    /// It was cancelled from elsewhere.
    Cancelled,
}

/// How a finished attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// With an output.
    Completed,
    /// Failed, to be retried after this many seconds.
    Retry(u8),
    /// Failed for good.
    Failed,
}

fn fence() -> impl Strategy<Value = Fence> {
    prop_oneof![8 => Just(Fence::Current), 1 => Just(Fence::Stale), 1 => Just(Fence::Ahead)]
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![6 => Just(Ending::Completed), 2 => (0u8..20).prop_map(Ending::Retry), 1 => Just(Ending::Failed)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), fence(), 0u8..2, 1u8..60)
            .prop_map(|(pick, fence, owner, lease_secs)| Op::Claim { pick, fence, owner, lease_secs }),
        2 => (any::<u8>(), fence(), 1u8..60).prop_map(|(pick, fence, secs)| Op::Heartbeat { pick, fence, secs }),
        6 => proptest::collection::vec((any::<u8>(), fence(), ending()), 1..3)
            .prop_map(|outcomes| Op::Finish { outcomes }),
        1 => (any::<u8>(), fence()).prop_map(|(pick, fence)| Op::Release { pick, fence }),
        1 => Just(Op::Cancel),
        1 => Just(Op::TimeOut),
        1 => Just(Op::Retry),
        1 => any::<u8>().prop_map(|pick| Op::RetryFrom { pick }),
        2 => (1u8..90).prop_map(|secs| Op::Advance { secs }),
        2 => (0u8..3).prop_map(|max_expiries| Op::Recover { max_expiries }),
        2 => (0u8..30).prop_map(|older_secs| Op::TakeStale { older_secs }),
        1 => Just(Op::Overdue),
        1 => (any::<u8>(), fence()).prop_map(|(pick, fence)| Op::Wake { pick, fence }),
        2 => Just(Op::WakeDue),
        2 => any::<u8>().prop_map(|name| Op::Signal { name }),
        1 => Just(Op::StartDelayed),
        3 => (any::<u8>(), fence(), prop_oneof![
                3 => Just(ChildEnding::Completed),
                2 => Just(ChildEnding::Failed),
                1 => Just(ChildEnding::Cancelled)
            ])
            .prop_map(|(pick, fence, ending)| Op::ChildEnds { pick, fence, ending }),
    ]
}

fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1..=MAX_TASKS)
        .prop_flat_map(|n| {
            (0..n)
                .map(|i| proptest::collection::vec(any::<bool>(), i))
                .collect::<Vec<_>>()
        })
        .prop_map(|edges| {
            edges
                .into_iter()
                .map(|mine| {
                    mine.into_iter()
                        .enumerate()
                        .filter(|(_, on)| *on)
                        .map(|(d, _)| d)
                        .collect()
                })
                .collect()
        })
}

/// The conditions a scenario's tasks may have, over the params `{"n": 1}` its executions get:
/// true, false, true only once `t0` completed, and two that fail to evaluate (a missing key, a
/// result that is not a bool).
pub const CONDITIONS: [&str; 5] = [
    "params.n == 1",
    "params.n > 1",
    "has(upstream.t0)",
    "params.missing > 0",
    "params.n",
];

/// The `forEach` lists a scenario's fan-outs may have: three items, none, one from the params,
/// and one that fails to evaluate.
pub const LISTS: [&str; 4] = ["[1, 2, 3]", "[]", "[params.n]", "params.missing"];

/// The `subJob.params` a scenario's sub-jobs may have: none (the parent's), an object from the
/// params, and one that does not give an object.
pub const SUB_JOB_PARAMS: [Option<&str>; 3] = [None, Some("{'from': params.n}"), Some("params.n")];

/// A task's kind in a scenario: its sleep, its wait, its fan-out (list and `maxFanOut`), its
/// sub-job (`maxRetry`, and the index of its params in [`SUB_JOB_PARAMS`]).
type Kind = (
    Option<Sleep>,
    Option<WaitFor>,
    Option<(String, Option<u32>)>,
    Option<(u32, usize)>,
);

/// What runs a task in a scenario: a function (mostly), a sleep of 1–59 s, a wait for the
/// signal `s0` or `s1` with or without a timeout of 1–59 s, a fan-out over one of [`LISTS`]
/// (sometimes with a `maxFanOut` of 2, which three items exceed), or a sub-job of the
/// scenario's [`child_definition`] with a `maxRetry` of 0–2.
fn task_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => Just((None, None, None, None)),
        1 => (1u64..60).prop_map(|s| (Some(Sleep { ms: Some(s * 1_000), until: None }), None, None, None)),
        1 => (0u8..2, proptest::option::of(1u64..60)).prop_map(|(n, timeout)| {
            let wait = WaitFor { signal: format!("s{n}"), timeout_ms: timeout.map(|s| s * 1_000) };
            (None, Some(wait), None, None)
        }),
        2 => (proptest::sample::select(&LISTS[..]), proptest::option::of(Just(2u32)))
            .prop_map(|(list, max)| (None, None, Some((list.to_string(), max)), None)),
        2 => (0u32..3, 0..SUB_JOB_PARAMS.len()).prop_map(|sub| (None, None, None, Some(sub))),
    ]
}

fn plan() -> impl Strategy<Value = TaskPlan> {
    let when = prop_oneof![3 => Just(None), 2 => proptest::sample::select(&CONDITIONS[..]).prop_map(Some)];
    let trigger = prop_oneof![2 => Just(Trigger::AllSuccess), 1 => proptest::sample::select(&Trigger::ALL[..])];
    (when, trigger, task_kind()).prop_map(|(when, trigger, (sleep, wait_for, fan_out, sub_job))| TaskPlan {
        when: when.map(str::to_string),
        trigger,
        sleep,
        wait_for,
        max_fan_out: fan_out.as_ref().and_then(|(_, max)| *max),
        for_each: fan_out.map(|(list, _)| list),
        max_retry: sub_job.map_or(0, |(retries, _)| retries),
        sub_job: sub_job.map(|(_, params)| SubJob {
            definition_id: CHILD.into(),
            version: None,
            params: SUB_JOB_PARAMS[params].map(str::to_string),
        }),
        ..TaskPlan::default()
    })
}

/// Scenarios of up to [`MAX_TASKS`] tasks and up to `max_ops` operations; half of them plain,
/// half with random task plans; a quarter of them delayed by 1–59 s.
pub fn scenario(max_ops: usize) -> impl Strategy<Value = Scenario> {
    (
        dag(),
        proptest::option::of(proptest::collection::vec(plan(), MAX_TASKS)),
        proptest::option::of(1u8..120),
        proptest::option::weighted(0.25, 1u8..60),
        proptest::collection::vec(op(), 0..max_ops),
    )
        .prop_map(|(dependencies, plans, timeout_secs, delay_secs, ops)| Scenario {
            plans: plans
                .map(|p| p.into_iter().take(dependencies.len()).collect())
                .unwrap_or_default(),
            dependencies,
            timeout_secs,
            delay_secs,
            ops,
        })
}

/// How many cases a property runs: `NAXOS_PROPTEST_CASES` when set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("NAXOS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A proptest configuration with `cases` cases that writes no regression files.
pub fn config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

impl Scenario {
    /// The scenario's job: tasks `t0`, `t1`, … (so id order is index order), each depending
    /// on the tasks its [`dependencies`](Self::dependencies) name and with its plan, under a
    /// fresh id, with the scenario's timeout.
    ///
    /// Its sub-jobs run the definition [`child_definition`] gives for its id.
    pub fn definition(&self) -> JobDefinition {
        let id = super::unique_id("scenario");
        let mut builder = JobDefinition::builder(id.clone());
        for (i, deps) in self.dependencies.iter().enumerate() {
            let mut task = TaskBuilder::new(format!("t{i}"), "f").after(deps.iter().map(|d| format!("t{d}")));
            if let Some(plan) = self.plans.get(i) {
                task = match (&plan.sleep, &plan.wait_for, &plan.sub_job) {
                    (Some(sleep), ..) => task.kind(Some(sleep.clone()), None),
                    (None, Some(wait), _) => task.kind(None, Some(wait.clone())),
                    (None, None, Some(job)) => {
                        let sub = TaskBuilder::sub_job(format!("t{i}"), child_id(&id))
                            .after(deps.iter().map(|d| format!("t{d}")))
                            .max_retry(plan.max_retry);
                        match &job.params {
                            Some(params) => sub.sub_job_params(params.clone()),
                            None => sub,
                        }
                    }
                    (None, None, None) => task,
                };
                task = task.trigger(plan.trigger);
                if let Some(when) = &plan.when {
                    task = task.when(when.clone());
                }
                if let Some(list) = &plan.for_each {
                    task = task.for_each(list.clone());
                }
                if let Some(max) = plan.max_fan_out {
                    task = task.max_fan_out(max);
                }
            }
            builder = builder.task(task);
        }
        let mut def = builder.build();
        def.timeout_ms = self.timeout_secs.map(|s| u64::from(s) * 1_000);
        def
    }

    /// True when some task of the scenario is a sub-job.
    pub fn has_sub_jobs(&self) -> bool {
        self.plans.iter().any(|p| p.sub_job.is_some())
    }

    /// The execution the scenario creates ([`new_execution`]) with its delay, its sub-jobs
    /// pinned to version 1 (of a [`child_definition`] registered once).
    pub fn execution(&self, definition: &Arc<StoredDefinition>) -> NewExecution {
        let mut new = new_execution(definition);
        new.pin_sub_jobs(|_| Some(1));
        new.delay = self
            .delay_secs
            .map(|s| Delay::For(std::time::Duration::from_secs(u64::from(s))));
        new
    }
}

/// The placeholder a generated plan's sub-job names (the scenario's definition names its
/// [`child_definition`] instead).
const CHILD: &str = "child";

/// The id of the child definition of the scenario definition `parent`.
pub fn child_id(parent: &str) -> String {
    format!("{parent}-child")
}

/// The definition the sub-jobs of the scenario definition `parent` run: one plain task `c0`.
pub fn child_definition(parent: &str) -> JobDefinition {
    JobDefinition::builder(child_id(parent))
        .task(TaskBuilder::new("c0", "f"))
        .build()
}

/// The scenarios' fixed start time (whole seconds, so every store keeps it exactly).
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// A fake clock at [`epoch`], for the stores a scenario runs on.
pub fn clock() -> ManualClock {
    ManualClock::new(epoch())
}

/// A concrete call to a Store, resolved from an [`Op`]. Times are the Store's: a call carries
/// durations only, and the scenario moves the stores' shared clock.
#[derive(Debug, Clone)]
pub enum Call {
    /// [`Store::claim`].
    Claim(ClaimRequest),
    /// [`Store::heartbeat`] (the lease's new length).
    Heartbeat(TaskRef, std::time::Duration),
    /// [`Store::finish`].
    Finish(Vec<TaskFinish>),
    /// [`Store::release`].
    Release(TaskRef),
    /// [`Store::stop_execution`].
    Stop(ExecutionId, StopReason),
    /// [`Store::retry_execution`].
    Retry(ExecutionId),
    /// [`Store::retry_from`].
    RetryFrom(ExecutionId, String),
    /// [`Store::recover_expired`] (max expiries).
    Recover(u32),
    /// [`Store::take_stale`] (how old).
    TakeStale(std::time::Duration),
    /// [`Store::overdue_executions`].
    Overdue,
    /// [`Store::wake`].
    Wake(TaskRef),
    /// [`Store::wake_due`].
    WakeDue,
    /// [`Store::signal`] (execution, name, payload).
    Signal(ExecutionId, String, Value),
    /// [`Store::start_delayed`].
    StartDelayed(ExecutionId),
    /// The child of the sub-job task (at the attempt named) ends in this status: on a Store,
    /// its task `c0` completes or fails, or it is stopped; on a pure state, a child state so
    /// ended is given to [`ExecutionState::child_ended`].
    ChildEnded(TaskRef, crate::model::ExecutionStatus),
}

/// Scans look at this many tasks at most.
const SCAN_LIMIT: usize = 100;

/// Turns `op` into a call on `execution` (moving `clock` for [`Op::Advance`], which makes no
/// call).
pub fn resolve(op: &Op, execution: &Execution, clock: &ManualClock) -> Option<Call> {
    let task = |pick: u8, fence: Fence, statuses: &[TaskStatus]| -> TaskRef {
        let candidates: Vec<_> = execution
            .tasks
            .iter()
            .filter(|t| statuses.contains(&t.status))
            .collect();
        let t = if candidates.is_empty() {
            &execution.tasks[pick as usize % execution.tasks.len()]
        } else {
            candidates[pick as usize % candidates.len()]
        };
        let attempt = match fence {
            Fence::Current => t.attempt,
            Fence::Stale => t.attempt - 1,
            Fence::Ahead => t.attempt + 1,
        };
        TaskRef::new(execution.id, t.task_id.clone(), attempt)
    };
    let secs = |s: u8| std::time::Duration::from_secs(u64::from(s));
    Some(match op {
        Op::Claim {
            pick,
            fence,
            owner,
            lease_secs,
        } => Call::Claim(ClaimRequest {
            task: task(*pick, *fence, &[TaskStatus::Queued, TaskStatus::Retrying]),
            owner: format!("node-{owner}"),
            lease: secs(*lease_secs),
        }),
        Op::Heartbeat { pick, fence, secs: s } => Call::Heartbeat(
            task(*pick, *fence, &[TaskStatus::Running, TaskStatus::Cancelled]),
            secs(*s),
        ),
        Op::Finish { outcomes } => Call::Finish(
            outcomes
                .iter()
                .map(|(pick, fence, ending)| {
                    let task = task(*pick, *fence, &[TaskStatus::Running]);
                    let outcome = match ending {
                        Ending::Completed => TaskOutcome::Completed(json!({ "by": task.task_id, "at": task.attempt })),
                        Ending::Retry(s) => TaskOutcome::Failed {
                            error: format!("{} failed; retry", task.task_id),
                            retry_in: Some(secs(*s)),
                        },
                        Ending::Failed => TaskOutcome::Failed {
                            error: format!("{} failed", task.task_id),
                            retry_in: None,
                        },
                    };
                    TaskFinish { task, outcome }
                })
                .collect(),
        ),
        Op::Release { pick, fence } => Call::Release(task(*pick, *fence, &[TaskStatus::Running])),
        Op::Cancel => Call::Stop(execution.id, StopReason::Cancelled),
        Op::TimeOut => Call::Stop(execution.id, StopReason::TimedOut),
        Op::Retry => Call::Retry(execution.id),
        Op::RetryFrom { pick } => Call::RetryFrom(
            execution.id,
            execution.tasks[*pick as usize % execution.tasks.len()].task_id.clone(),
        ),
        Op::Advance { secs: s } => {
            clock.advance(secs(*s));
            return None;
        }
        Op::Recover { max_expiries } => Call::Recover(u32::from(*max_expiries)),
        Op::TakeStale { older_secs } => Call::TakeStale(secs(*older_secs)),
        Op::Overdue => Call::Overdue,
        Op::Wake { pick, fence } => Call::Wake(task(*pick, *fence, &[TaskStatus::Waiting])),
        Op::WakeDue => Call::WakeDue,
        Op::Signal { name } => Call::Signal(execution.id, format!("s{}", name % 2), json!({ "signal": name })),
        Op::StartDelayed => Call::StartDelayed(execution.id),
        Op::ChildEnds { pick, fence, ending } => Call::ChildEnded(
            task(*pick, *fence, &[TaskStatus::Running]),
            match ending {
                ChildEnding::Completed => crate::model::ExecutionStatus::Completed,
                ChildEnding::Failed => crate::model::ExecutionStatus::Failed,
                ChildEnding::Cancelled => crate::model::ExecutionStatus::Cancelled,
            },
        ),
    })
}

/// The next call that moves a stuck-free execution towards its end: for a delayed execution,
/// move `clock` to its time and wake what is due (which starts it); else complete the first
/// RUNNING task, else claim the first QUEUED or RETRYING one, else complete the child of the
/// first running sub-job, else signal the first task WAITING for a signal, else move `clock` to
/// the first sleep's due time and wake what is due. `None` when the execution is finished or
/// (a bug) nothing can move.
pub fn drain_step(execution: &Execution, clock: &ManualClock) -> Option<Call> {
    if execution.status.is_terminal() {
        return None;
    }
    if let Some(at) = execution.scheduled_for.filter(|_| execution.summary.is_delayed()) {
        if at > clock.now() {
            clock.set(at);
        }
        return Some(Call::WakeDue);
    }
    let waiting = || execution.tasks.iter().filter(|t| t.status == TaskStatus::Waiting);
    // What a worker could take or finish (a fan-out is RUNNING without a lease: its instances are).
    let workable = |t: &TaskRun| {
        matches!(t.status, TaskStatus::Queued | TaskStatus::Retrying)
            || t.status == TaskStatus::Running && t.lease.is_some()
    };
    if !execution.tasks.iter().any(workable) {
        let sub_job = |t: &&TaskRun| t.status == TaskStatus::Running && t.lease.is_none() && t.plan.child.is_some();
        if let Some(t) = execution.tasks.iter().find(sub_job) {
            return Some(Call::ChildEnded(
                t.task_ref(execution.id),
                crate::model::ExecutionStatus::Completed,
            ));
        }
        if let Some(w) = waiting().find_map(|t| t.plan.wait_for.as_ref()) {
            return Some(Call::Signal(execution.id, w.signal.clone(), json!("drain")));
        }
        if let Some(due) = waiting().filter_map(|t| t.due_at).min() {
            if due > clock.now() {
                clock.set(due);
            }
            return Some(Call::WakeDue);
        }
    }
    if let Some(t) = execution
        .tasks
        .iter()
        .find(|t| t.status == TaskStatus::Running && t.lease.is_some())
    {
        let task = t.task_ref(execution.id);
        let outcome = TaskOutcome::Completed(json!({ "by": task.task_id, "at": task.attempt }));
        return Some(Call::Finish(vec![TaskFinish { task, outcome }]));
    }
    let t = execution
        .tasks
        .iter()
        .find(|t| matches!(t.status, TaskStatus::Queued | TaskStatus::Retrying))?;
    Some(Call::Claim(ClaimRequest {
        task: t.task_ref(execution.id),
        owner: "drain".into(),
        lease: std::time::Duration::from_secs(30),
    }))
}

/// What a call returned, in a form two stores can be compared on.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// A claim: the claimed task's inputs and the claim's changes.
    Claimed(std::result::Result<Box<Claimed>, ErrorKind>),
    /// A heartbeat.
    Lease(std::result::Result<LeaseState, ErrorKind>),
    /// A finish: each item's result, and the changes.
    Finished(Vec<std::result::Result<(), ErrorKind>>, Changes),
    /// A release, retry or scan.
    Changed(std::result::Result<Changes, ErrorKind>),
    /// A stop: the new status, the running tasks, the changes.
    Stopped(std::result::Result<(crate::ExecutionStatus, Vec<TaskRef>, Changes), ErrorKind>),
    /// The overdue executions.
    Overdue(std::result::Result<Vec<ExecutionId>, ErrorKind>),
    /// A signal: the task that took it, and the changes.
    Signalled(std::result::Result<(Option<String>, Changes), ErrorKind>),
}

/// A [`ClaimedTask`] without its `Arc`s.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The task.
    pub task: TaskRef,
    /// Definition id and version.
    pub definition: (String, u32),
    /// Attempts and failures.
    pub counts: (u32, u32),
    /// When it was queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// The params.
    pub params: Value,
    /// The upstream outputs.
    pub upstream: BTreeMap<String, Value>,
    /// A fan-out instance's index and item.
    pub instance: Option<(u32, Value)>,
    /// The execution's trace context.
    pub traceparent: Option<TraceParent>,
    /// The claim's changes.
    pub changes: Changes,
}

impl From<ClaimedTask> for Claimed {
    fn from(c: ClaimedTask) -> Self {
        Self {
            task: c.task,
            definition: (c.definition_id, c.definition_version),
            counts: (c.attempts, c.failures),
            queued_at: c.queued_at,
            params: (*c.params).clone(),
            upstream: c.upstream.into_iter().map(|(k, v)| (k, (*v).clone())).collect(),
            instance: c.instance,
            traceparent: c.traceparent,
            changes: c.changes,
        }
    }
}

/// The kind of an error, which is what two stores must agree on (their texts may differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// [`Error::Conflict`].
    Conflict,
    /// [`Error::NotFound`].
    NotFound,
    /// Anything else, with its text.
    Other(String),
}

fn kind(e: Error) -> ErrorKind {
    match e {
        Error::Conflict(_) => ErrorKind::Conflict,
        Error::NotFound { .. } => ErrorKind::NotFound,
        other => ErrorKind::Other(other.to_string()),
    }
}

fn observe<T, U>(r: Result<T>, f: impl FnOnce(T) -> U) -> std::result::Result<U, ErrorKind> {
    r.map(f).map_err(kind)
}

/// Applies `call` to a pure execution state at `now`.
///
/// `timeout` is the job timeout of the state's definition (what a Store reads from the
/// definition for a retry).
pub fn apply_to_state(
    state: &mut ExecutionState,
    call: &Call,
    timeout: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Observed {
    match call.clone() {
        Call::Claim(req) => Observed::Claimed(observe(state.claim(&req, now), |c| Box::new(Claimed::from(c)))),
        Call::Heartbeat(task, lease) => Observed::Lease(observe(state.heartbeat(&task, lease, now), |l| l)),
        Call::Finish(items) => {
            let mut changes = Changes::default();
            let results = items
                .into_iter()
                .map(|f| observe(state.finish(&f.task, f.outcome, now), |c| changes.extend(c)))
                .collect();
            Observed::Finished(results, changes)
        }
        Call::Release(task) => Observed::Changed(observe(state.release(&task, now), |c| c)),
        Call::Stop(_, reason) => {
            Observed::Stopped(observe(state.stop(reason, now), |s| (s.status, s.running, s.changes)))
        }
        Call::Retry(_) => Observed::Changed(observe(state.retry(timeout, now), |c| c)),
        Call::RetryFrom(_, task) => Observed::Changed(observe(state.retry_from(&task, timeout, now), |c| c)),
        Call::Recover(max) => Observed::Changed(Ok(state.recover_expired(now, max, &mut SCAN_LIMIT.clone()))),
        Call::TakeStale(older_than) => {
            Observed::Changed(Ok(state.take_stale(older_than, now, &mut SCAN_LIMIT.clone())))
        }
        Call::Overdue => Observed::Overdue(Ok(if state.is_overdue(now) {
            vec![state.summary().id]
        } else {
            Vec::new()
        })),
        Call::Wake(task) => Observed::Changed(observe(state.wake(&task, now), |c| c)),
        Call::WakeDue => Observed::Changed(Ok(state.wake_due(now, &mut SCAN_LIMIT.clone()))),
        Call::Signal(_, name, payload) => Observed::Signalled(observe(state.signal(&name, payload, now), |s| {
            (s.delivered_to, s.changes)
        })),
        Call::StartDelayed(_) => Observed::Changed(observe(state.start_delayed(now), |c| c)),
        Call::ChildEnded(task, status) => {
            let child = ended_child(state, &task, status, now);
            Observed::Changed(observe(state.child_ended(&task, &child, now), |c| c))
        }
    }
}

/// The child of the sub-job task `task` of `parent` (its current child; a nil id when it has
/// none), ended in `status` at `now`: what a Store would hold once its `c0` completed or failed,
/// or once it was stopped.
fn ended_child(
    parent: &ExecutionState,
    task: &TaskRef,
    status: crate::model::ExecutionStatus,
    now: DateTime<Utc>,
) -> ExecutionState {
    let child_id = parent
        .index_of(&task.task_id)
        .and_then(|i| parent.tasks()[i].plan.child)
        .unwrap_or_default();
    let def = Arc::new(StoredDefinition::new(
        1,
        epoch(),
        child_definition(&parent.summary().definition_id),
    ));
    let mut new = NewExecution::new(&def, json!({}));
    new.id = child_id;
    new.parent = Some(crate::model::ParentLink {
        execution_id: parent.summary().id,
        task_id: task.task_id.clone(),
        attempt: task.attempt,
        depth: 1,
    });
    let (mut child, _) = ExecutionState::create(new, now).expect("a child of one plain task");
    let c0 = TaskRef::new(child_id, "c0", 1);
    let claim = ClaimRequest {
        task: c0.clone(),
        owner: "child".into(),
        lease: std::time::Duration::from_secs(30),
    };
    let ended = match status {
        crate::model::ExecutionStatus::Cancelled => child.stop(StopReason::Cancelled, now).map(drop),
        _ => child
            .claim(&claim, now)
            .and_then(|_| child.finish(&c0, child_outcome(status), now).map(drop)),
    };
    ended.expect("a new child ends as asked");
    child
}

/// The outcome of a child's `c0` that ends the child in `status`.
fn child_outcome(status: crate::model::ExecutionStatus) -> TaskOutcome {
    match status {
        crate::model::ExecutionStatus::Completed => TaskOutcome::Completed(json!("child output")),
        _ => TaskOutcome::Failed {
            error: "child failed".into(),
            retry_in: None,
        },
    }
}

/// On a Store: ends the current child of the sub-job task `task` as `status` says — its `c0`
/// claimed if need be and finished, or the child stopped — and returns what the last call
/// changed (the parent's settling included). `Conflict` when the task is not a RUNNING sub-job
/// at that attempt, or its child already ended.
async fn end_child(store: &dyn Store, task: &TaskRef, status: crate::model::ExecutionStatus) -> Result<Changes> {
    let parent = store.get_execution(task.execution_id).await?;
    let run = parent.task(&task.task_id);
    let child = run
        .filter(|t| t.attempt == task.attempt && t.status == TaskStatus::Running && t.lease.is_none())
        .and_then(|t| t.plan.child)
        .ok_or_else(|| Error::conflict(format!("{task} runs no child")))?;
    if status == crate::model::ExecutionStatus::Cancelled {
        return store
            .stop_execution(child, StopReason::Cancelled)
            .await
            .map(|s| s.changes);
    }
    let exec = store.get_execution(child).await?;
    let c0 = exec.task("c0").ok_or_else(|| Error::conflict("a child without c0"))?;
    let c0_ref = c0.task_ref(child);
    let mut changes = Changes::default();
    if matches!(c0.status, TaskStatus::Queued | TaskStatus::Retrying) {
        let claim = ClaimRequest {
            task: c0_ref.clone(),
            owner: "child".into(),
            lease: std::time::Duration::from_secs(30),
        };
        changes = store.claim(claim).await?.changes;
    }
    let report = store
        .finish(vec![TaskFinish {
            task: c0_ref,
            outcome: child_outcome(status),
        }])
        .await?;
    if let Some(Err(e)) = report.results.into_iter().next() {
        return Err(e);
    }
    changes.extend(report.changes);
    Ok(changes)
}

/// Applies `call` to a Store.
pub async fn apply_to_store(store: &dyn Store, call: &Call) -> Observed {
    match call.clone() {
        Call::Claim(req) => Observed::Claimed(observe(store.claim(req).await, |c| Box::new(Claimed::from(c)))),
        Call::Heartbeat(task, lease) => Observed::Lease(observe(store.heartbeat(&task, lease).await, |l| l)),
        Call::Finish(items) => match store.finish(items).await {
            Ok(report) => Observed::Finished(
                report.results.into_iter().map(|r| r.map_err(kind)).collect(),
                report.changes,
            ),
            Err(e) => Observed::Finished(vec![Err(kind(e))], Changes::default()),
        },
        Call::Release(task) => Observed::Changed(observe(store.release(&task).await, |c| c)),
        Call::Stop(id, reason) => Observed::Stopped(observe(store.stop_execution(id, reason).await, |s| {
            (s.status, s.running, s.changes)
        })),
        Call::Retry(id) => Observed::Changed(observe(store.retry_execution(id).await, |c| c)),
        Call::RetryFrom(id, task) => Observed::Changed(observe(store.retry_from(id, &task).await, |c| c)),
        Call::Recover(max) => Observed::Changed(observe(store.recover_expired(max, SCAN_LIMIT).await, |c| c)),
        Call::TakeStale(older_than) => {
            Observed::Changed(observe(store.take_stale(older_than, SCAN_LIMIT).await, |c| c))
        }
        Call::Overdue => Observed::Overdue(observe(store.overdue_executions(SCAN_LIMIT).await, |v| v)),
        Call::Wake(task) => Observed::Changed(observe(store.wake(&task).await, |c| c)),
        Call::WakeDue => Observed::Changed(observe(store.wake_due(SCAN_LIMIT).await, |c| c)),
        Call::Signal(id, name, payload) => Observed::Signalled(observe(store.signal(id, &name, payload).await, |s| {
            (s.delivered_to, s.changes)
        })),
        Call::StartDelayed(id) => Observed::Changed(observe(store.start_delayed(id).await, |c| c)),
        Call::ChildEnded(task, status) => Observed::Changed(observe(end_child(store, &task, status).await, |c| c)),
    }
}

/// The trace context of the executions scenarios create.
pub fn traceparent() -> TraceParent {
    TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").expect("a valid traceparent")
}

/// The execution a scenario creates, with params `{"n": 1}` and [`traceparent`].
pub fn new_execution(definition: &Arc<StoredDefinition>) -> NewExecution {
    let mut new = NewExecution::new(definition, json!({ "n": 1 }));
    new.traceparent = Some(traceparent());
    new
}

/// The trace context of every task reference and claim in `observed`, in order: what
/// [`TaskRef`]'s equality leaves out, for two stores to be compared on.
pub fn trace_contexts(observed: &Observed) -> Vec<Option<TraceParent>> {
    fn of(changes: &Changes) -> impl Iterator<Item = Option<TraceParent>> + '_ {
        let ready = changes.ready.iter().map(|t| t.traceparent);
        let waiting = changes.waiting.iter().map(|(t, _)| t.traceparent);
        ready
            .chain(changes.delayed.iter().map(|(t, _)| t.traceparent))
            .chain(waiting)
    }
    match observed {
        Observed::Claimed(Ok(c)) => std::iter::once(c.traceparent).chain(of(&c.changes)).collect(),
        Observed::Finished(_, changes) | Observed::Changed(Ok(changes)) | Observed::Signalled(Ok((_, changes))) => {
            of(changes).collect()
        }
        Observed::Stopped(Ok((_, running, changes))) => {
            running.iter().map(|t| t.traceparent).chain(of(changes)).collect()
        }
        _ => Vec::new(),
    }
}
