//! Properties of the state machine over random operation sequences on random DAGs, half of
//! them with random `when` conditions and triggers (proptest): the rules every Store inherits
//! from naxos-core's state module.
//!
//! `NAXOS_PROPTEST_CASES` sets the number of cases (default 256).

use std::collections::BTreeSet;

use naxos_core::backend::Changes;
use naxos_core::chrono::{DateTime, Utc};
use naxos_core::model::StoredDefinition;
use naxos_core::model::{EventKind, Execution, ExecutionStatus, TaskRun, TaskStatus, Trigger};
use naxos_core::serde_json;
use naxos_core::state::rules::{self, Outcome};
use naxos_core::state::{ExecutionState, Graph};
use naxos_core::testkit::scenario::{
    apply_to_state, cases, clock, config, drain_step, epoch, resolve, scenario, Call, Fence, Observed, Op, Scenario,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

proptest! {
    #![proptest_config(config(cases(256)))]

    #[test]
    fn every_rule_holds_after_every_step(s in scenario(40)) {
        run(&s)?;
    }
}

/// What the events of one execution said so far.
#[derive(Default)]
struct Seen {
    /// (task, attempt) pairs that COMPLETED.
    completed: BTreeSet<(String, u32)>,
    /// Terminal execution events since the last RUNNING one.
    ended: usize,
}

fn run(s: &Scenario) -> Result<(), TestCaseError> {
    let def = s.definition();
    let stored = std::sync::Arc::new(StoredDefinition::new(1, epoch(), def));
    let (mut state, created) = ExecutionState::create(s.execution(&stored), epoch()).map_err(fail)?;
    let mut seen = Seen::default();
    check_changes(&state, &created, &mut seen)?;
    check_state(&state)?;
    let time = clock();
    let timeout = s.timeout_secs.map(|t| std::time::Duration::from_secs(u64::from(t)));
    for op in &s.ops {
        let Some(call) = resolve(op, &state.snapshot(), &time) else {
            continue;
        };
        step(&mut state, &call, timeout, time.now(), fenced_off(op), &mut seen)?;
    }
    // However the operations left it, the execution can be driven to its end.
    for _ in 0..4 * naxos_core::testkit::scenario::MAX_TASKS {
        let Some(call) = drain_step(&state.snapshot(), &time) else {
            break;
        };
        step(&mut state, &call, timeout, time.now(), false, &mut seen)?;
    }
    prop_assert!(state.is_finished(), "the execution is stuck: {:#?}", state.snapshot());
    prop_assert_eq!(seen.ended, 1, "a finished execution ended exactly once");
    Ok(())
}

/// True when every task the operation names carries an attempt that is not the current one.
fn fenced_off(op: &Op) -> bool {
    let stale = |f: &Fence| *f != Fence::Current;
    match op {
        Op::Claim { fence, .. }
        | Op::Heartbeat { fence, .. }
        | Op::Release { fence, .. }
        | Op::Wake { fence, .. }
        | Op::ChildEnds { fence, .. } => stale(fence),
        Op::Finish { outcomes } => outcomes.iter().all(|(_, f, _)| stale(f)),
        _ => false,
    }
}

fn step(
    state: &mut ExecutionState,
    call: &Call,
    timeout: Option<std::time::Duration>,
    now: DateTime<Utc>,
    fenced_off: bool,
    seen: &mut Seen,
) -> Result<(), TestCaseError> {
    let before = state.clone();
    let observed = apply_to_state(state, call, timeout, now);
    let (changes, failed) = match observed {
        Observed::Claimed(r) => match r {
            Ok(c) => {
                // A task starts only when its trigger holds, with the outputs of the
                // dependencies that COMPLETED.
                let mut i = state.index_of(&c.task.task_id).expect("claimed task exists");
                let exec = state.snapshot();
                // An instance reads its fan-out's upstream, and carries its item.
                if let Some(x) = &exec.tasks[i].plan.instance {
                    prop_assert_eq!(c.instance.as_ref().map(|(index, _)| *index), Some(x.index));
                    i = state.index_of(&x.of).expect("the fan-out exists");
                }
                prop_assert!(trigger(&exec, state.graph(), i).0, "claimed {} early", c.task);
                let completed = state
                    .graph()
                    .dependencies(i)
                    .iter()
                    .filter(|&&d| exec.tasks[d].status == TaskStatus::Completed)
                    .count();
                prop_assert_eq!(c.upstream.len(), completed);
                (c.changes, false)
            }
            Err(_) => (Changes::default(), true),
        },
        Observed::Lease(r) => (Changes::default(), r.is_err()),
        Observed::Finished(results, changes) => {
            let all_failed = results.iter().all(|r| r.is_err());
            (changes, all_failed)
        }
        Observed::Changed(r) => match r {
            Ok(c) => (c, false),
            Err(_) => (Changes::default(), true),
        },
        Observed::Stopped(r) => match r {
            Ok((_, _, c)) => (c, false),
            Err(_) => (Changes::default(), true),
        },
        Observed::Signalled(r) => match r {
            Ok((delivered_to, c)) => {
                // A signal taken now completed a task that waits for it.
                if let Some(task_id) = delivered_to {
                    let t = &state.tasks()[state.index_of(&task_id).expect("the task exists")];
                    prop_assert_eq!(t.status, TaskStatus::Completed);
                    prop_assert!(t.plan.wait_for.is_some(), "{} took a signal", task_id);
                }
                (c, false)
            }
            Err(_) => (Changes::default(), true),
        },
        Observed::Overdue(r) => {
            // Overdue means unfinished and past a deadline.
            let overdue = !r.expect("a pure state answers").is_empty();
            let s = state.summary();
            prop_assert_eq!(
                overdue,
                !s.status.is_terminal() && !s.is_delayed() && s.deadline.is_some_and(|d| d < now)
            );
            (Changes::default(), false)
        }
    };
    if fenced_off {
        prop_assert!(failed, "an operation on a stale attempt was accepted: {call:?}");
    }
    if failed {
        // An operation that fails changes nothing at all.
        prop_assert_eq!(&before, &*state, "a failed operation changed the state: {:?}", call);
    }
    check_changes(state, &changes, seen)?;
    check_state(state)
}

/// What a transition reports agrees with the state it left.
fn check_changes(state: &ExecutionState, changes: &Changes, seen: &mut Seen) -> Result<(), TestCaseError> {
    let id = state.summary().id;
    for r in &changes.ready {
        let t = &state.tasks()[state.index_of(&r.task_id).expect("ready task exists")];
        prop_assert_eq!(r.execution_id, id);
        prop_assert_eq!(
            (t.status, t.attempt),
            (TaskStatus::Queued, r.attempt),
            "ready {} is not QUEUED",
            r
        );
    }
    for (r, due) in &changes.delayed {
        let t = &state.tasks()[state.index_of(&r.task_id).expect("delayed task exists")];
        prop_assert_eq!(
            (t.status, t.attempt, t.due_at),
            (TaskStatus::Retrying, r.attempt, Some(*due))
        );
    }
    for (execution, at) in &changes.scheduled {
        // A delayed execution listed for its timer waits for that time.
        let s = state.summary();
        prop_assert_eq!(*execution, id);
        prop_assert!(s.is_delayed(), "scheduled, but not waiting to start");
        prop_assert_eq!(s.scheduled_for, Some(*at));
    }
    for (r, due) in &changes.waiting {
        // A wait listed for its timer is WAITING until then (it was not completed at once).
        let t = &state.tasks()[state.index_of(&r.task_id).expect("waiting task exists")];
        prop_assert_eq!(
            (t.status, t.attempt, t.due_at),
            (TaskStatus::Waiting, r.attempt, Some(*due))
        );
    }
    for e in &changes.events {
        prop_assert_eq!(e.execution_id, id);
        match &e.kind {
            EventKind::Task {
                task_id,
                attempt,
                status: TaskStatus::Completed,
            } => {
                // A task completes at most once per attempt.
                prop_assert!(
                    seen.completed.insert((task_id.clone(), *attempt)),
                    "{task_id} completed twice at attempt {attempt}"
                );
            }
            EventKind::Execution { status } if status.is_terminal() => {
                seen.ended += 1;
                prop_assert_eq!(seen.ended, 1, "the execution ended twice");
            }
            EventKind::Execution {
                status: ExecutionStatus::Running,
            } => seen.ended = 0,
            _ => {}
        }
    }
    Ok(())
}

/// Invariants of one state.
fn check_state(state: &ExecutionState) -> Result<(), TestCaseError> {
    let exec: Execution = state.snapshot();
    let graph = state.graph();
    let failed: BTreeSet<usize> = (0..exec.tasks.len())
        .filter(|&i| exec.tasks[i].status == TaskStatus::Failed)
        .collect();
    // What a SKIPPED task may be skipped below: a FAILED task, or a CANCELLED one (a task
    // restarted below a cancelled one).
    let stopped: BTreeSet<usize> = (0..exec.tasks.len())
        .filter(|&i| matches!(exec.tasks[i].status, TaskStatus::Failed | TaskStatus::Cancelled))
        .collect();
    for (i, t) in exec.tasks.iter().enumerate() {
        if t.plan.instance.is_some() || t.plan.for_each.is_some() {
            check_fan_out(&exec, i)?;
        }
        if t.plan.sub_job.is_some() {
            check_sub_job(&exec, i)?;
        }
        let deps = graph.dependencies(i);
        let not_done = deps
            .iter()
            .filter(|&&d| exec.tasks[d].status != TaskStatus::Completed)
            .count() as u32;
        let (holds, never) = trigger(&exec, graph, i);
        match t.status {
            TaskStatus::Pending => {
                prop_assert_eq!(t.remaining_dependencies, not_done, "{}: the fan-in count", &t.task_id);
                prop_assert!(
                    !(holds || never) || exec.status.is_terminal() || exec.summary.is_delayed(),
                    "{} waits though its trigger is decided",
                    &t.task_id
                );
            }
            TaskStatus::Queued
            | TaskStatus::Running
            | TaskStatus::Retrying
            | TaskStatus::Waiting
            | TaskStatus::Completed => {
                prop_assert!(
                    holds,
                    "{} is {} though its trigger {} does not hold",
                    &t.task_id,
                    t.status,
                    t.plan.trigger
                );
            }
            TaskStatus::Skipped if t.plan.instance.is_some() => {
                prop_assert_eq!(t.error.as_deref(), Some(rules::NOT_IN_LIST), "{}", &t.task_id);
                prop_assert!(t.lease.is_none());
            }
            TaskStatus::Skipped => {
                // SKIPPED by its condition when its trigger held, or by its trigger when it
                // could no longer hold: below a FAILED task (named), or with nothing failed above.
                let error = t.error.clone().unwrap_or_default();
                let above = ancestors(graph, i);
                if error == rules::CONDITION_FALSE {
                    prop_assert!(holds && t.plan.when.is_some(), "{}: condition false", &t.task_id);
                } else if error == rules::trigger_unmet(t.plan.trigger) {
                    // Decided when a dependency was skipped and none had failed (one may have
                    // failed or been cancelled since: the decision was made at once).
                    prop_assert!(never, "{}: {error}", &t.task_id);
                    prop_assert!(
                        matches!(t.plan.trigger, Trigger::AllSuccess | Trigger::AnySuccess),
                        "{}: {error}",
                        &t.task_id
                    );
                    prop_assert!(
                        deps.iter()
                            .any(|&d| rules::outcome(&exec.tasks[d]) == Some(Outcome::Skipped)),
                        "{}: {error} with no dependency skipped",
                        &t.task_id
                    );
                } else {
                    prop_assert!(never, "{}: {error}", &t.task_id);
                    prop_assert!(
                        above
                            .iter()
                            .any(|&a| stopped.contains(&a) && error == rules::skipped_below(&exec.tasks[a].task_id)),
                        "{} SKIPPED ({error}) with no failed task above it",
                        &t.task_id
                    );
                }
                // Skipped in this attempt: no worker holds it, and every earlier run (before a
                // restart from a task above) has ended.
                prop_assert!(t.lease.is_none(), "{}: a skipped task is not leased", &t.task_id);
                prop_assert!(
                    t.history.iter().all(|a| a.ended_at.is_some() && a.attempt < t.attempt),
                    "{}: a skipped task does not run in this attempt",
                    &t.task_id
                );
            }
            TaskStatus::Failed if t.plan.wait_for.is_some() => {
                // A wait fails only for its timeout, or for its condition.
                let error = t.error.clone().unwrap_or_default();
                let timed_out = t
                    .plan
                    .wait_for
                    .as_ref()
                    .is_some_and(|w| error == rules::signal_timed_out(&w.signal));
                prop_assert!(
                    holds && (timed_out || error.starts_with("`when`")),
                    "{}: {error}",
                    &t.task_id
                );
                prop_assert_eq!(t.attempts, 0, "{}: no worker runs a wait", &t.task_id);
            }
            TaskStatus::Failed if t.plan.for_each.is_some() => {
                // A fan-out fails for an instance, its list, or its condition.
                let error = t.error.clone().unwrap_or_default();
                prop_assert!(
                    ["instance ", "forEach gave ", "`forEach`", "`when`"]
                        .iter()
                        .any(|p| error.starts_with(p)),
                    "{}: {error}",
                    &t.task_id
                );
            }
            TaskStatus::Failed if t.plan.sub_job.is_some() => {
                // A sub-job fails for its child (failed beyond its retries, or cancelled), its
                // params, or its condition.
                let error = t.error.clone().unwrap_or_default();
                prop_assert!(
                    ["sub-job ", "`subJob.params`", "`when`"]
                        .iter()
                        .any(|p| error.starts_with(p)),
                    "{}: {error}",
                    &t.task_id
                );
                prop_assert_eq!(
                    t.attempts == 0,
                    !error.starts_with("sub-job "),
                    "{}: {}",
                    &t.task_id,
                    error
                );
            }
            TaskStatus::Failed if t.attempts == 0 => {
                // Failed without running: its condition did not evaluate.
                prop_assert!(holds && t.plan.when.is_some(), "{} FAILED without running", &t.task_id);
                prop_assert!(t.error.as_deref().is_some_and(|e| e.starts_with("`when`")));
            }
            TaskStatus::Failed | TaskStatus::Cancelled => {}
        }
        // The counters and the attempt history agree with each other.
        prop_assert_eq!(
            t.attempts as usize,
            t.history.len(),
            "{}: attempts vs history",
            &t.task_id
        );
        let open: Vec<_> = t.history.iter().filter(|r| r.ended_at.is_none()).collect();
        if t.plan.for_each.is_some() {
            prop_assert_eq!(t.attempts, 0, "{}: no worker runs a fan-out", &t.task_id);
            prop_assert!(t.lease.is_none(), "{}: a fan-out holds no lease", &t.task_id);
        } else if t.status == TaskStatus::Running {
            // A sub-job holds no lease (its child runs), and has its attempt open all the same.
            prop_assert_eq!(
                t.lease.is_some(),
                t.plan.sub_job.is_none(),
                "{} RUNNING, its lease: {:?}",
                &t.task_id,
                &t.lease
            );
            prop_assert_eq!(open.len(), 1);
            prop_assert_eq!(open[0].attempt, t.attempt, "the open record is the current attempt's");
        } else {
            prop_assert!(
                open.is_empty(),
                "{} is {} with an attempt still open",
                &t.task_id,
                t.status
            );
        }
        prop_assert_eq!(
            t.output.is_some(),
            t.status == TaskStatus::Completed,
            "{}: output",
            &t.task_id
        );
        let failures = t
            .history
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    Some(naxos_core::model::AttemptOutcome::Failed | naxos_core::model::AttemptOutcome::Retrying)
                )
            })
            .count();
        prop_assert!(
            t.failures as usize <= failures,
            "{}: more failures than failed attempts",
            &t.task_id
        );
    }
    // A delayed execution waiting for its time has started nothing.
    if exec.summary.is_delayed() {
        prop_assert!(
            exec.tasks
                .iter()
                .all(|t| t.status == TaskStatus::Pending && t.history.is_empty()),
            "a delayed execution started a task before its time"
        );
    }
    // How the execution stands agrees with its tasks.
    let all_terminal = exec.tasks.iter().all(|t| t.status.is_terminal());
    match exec.status {
        ExecutionStatus::Pending | ExecutionStatus::Running => {
            prop_assert!(
                !all_terminal,
                "every task is finished but the execution is {}",
                exec.status
            );
            prop_assert_eq!(exec.end_time, None);
        }
        status => {
            prop_assert!(all_terminal, "the execution is {} with a task unfinished", status);
            prop_assert!(exec.end_time.is_some());
            let verdict = rules::verdict(&exec.tasks);
            if exec.error.as_deref() != Some(rules::TIMED_OUT) && status != ExecutionStatus::Cancelled {
                prop_assert_eq!(verdict, Some((status, exec.error.clone())), "the verdict");
            }
            prop_assert_eq!(
                status == ExecutionStatus::Completed,
                exec.tasks
                    .iter()
                    .all(|t| matches!(t.status, TaskStatus::Completed | TaskStatus::Skipped))
                    && failed.is_empty(),
                "COMPLETED: every task completed or skipped, none failed"
            );
            if !failed.is_empty() {
                prop_assert_eq!(status, ExecutionStatus::Failed, "an execution with a FAILED task FAILS");
            }
        }
    }
    Ok(())
}

/// The rules of a fan-out (DESIGN.md §8), for the fan-out or the instance at `i`.
/// A sub-job: RUNNING without a lease and naming its child, one attempt record per child it
/// started (each with the node `subJob`), its failures within its `maxRetry` (a child that
/// failed beyond it, or was cancelled, ended it FAILED), and COMPLETED with an object (the
/// child's outputs by task id).
fn check_sub_job(exec: &Execution, i: usize) -> Result<(), TestCaseError> {
    let t = &exec.tasks[i];
    let id = &t.task_id;
    prop_assert!(t.lease.is_none(), "{id}: a worker holds a sub-job");
    if t.status == TaskStatus::Running {
        prop_assert!(t.plan.child.is_some(), "{id} runs no child");
        prop_assert!(t.attempts >= 1, "{id} runs a child with no attempt counted");
        prop_assert!(
            t.failures <= t.plan.max_retry,
            "{id}: {} failures, maxRetry {}",
            t.failures,
            t.plan.max_retry
        );
    }
    prop_assert!(
        t.history.iter().all(|a| &*a.node == naxos_core::state::SUB_JOB_NODE),
        "{id}: a sub-job's attempts are no worker's"
    );
    if t.status == TaskStatus::Completed {
        prop_assert!(
            t.output.as_ref().is_some_and(serde_json::Value::is_object),
            "{id}: completed with {:?}",
            t.output
        );
    }
    Ok(())
}

fn check_fan_out(exec: &Execution, i: usize) -> Result<(), TestCaseError> {
    let t = &exec.tasks[i];
    let find = |id: &str| exec.tasks.iter().find(|t| t.task_id == id);
    if let Some(x) = &t.plan.instance {
        let of = find(&x.of).expect("an instance's fan-out exists");
        prop_assert_eq!(&t.task_id, &format!("{}[{}]", x.of, x.index));
        prop_assert!(
            t.status != TaskStatus::Pending,
            "{}: an instance is never PENDING",
            &t.task_id
        );
        let running = of.status == TaskStatus::Running;
        match t.status {
            // Queued again only while its fan-out runs.
            TaskStatus::Queued | TaskStatus::Retrying => {
                prop_assert!(running, "{} is {} under a {} fan-out", &t.task_id, t.status, of.status)
            }
            // One that was running when its fan-out failed may finish.
            TaskStatus::Running => prop_assert!(running || of.status == TaskStatus::Failed),
            _ => {}
        }
        return Ok(());
    }
    // The fan-out: its live instances (not past the end of its list), in index order.
    let mut live: Vec<&TaskRun> = exec
        .tasks
        .iter()
        .filter(|r| r.plan.instance.as_ref().is_some_and(|x| x.of == t.task_id) && r.status != TaskStatus::Skipped)
        .collect();
    live.sort_by_key(|r| r.plan.instance.as_ref().map(|x| x.index));
    let indices: Vec<u32> = live
        .iter()
        .filter_map(|r| r.plan.instance.as_ref().map(|x| x.index))
        .collect();
    prop_assert_eq!(
        indices,
        (0..live.len() as u32).collect::<Vec<_>>(),
        "{}: instances 0..n",
        &t.task_id
    );
    match t.status {
        TaskStatus::Running => {
            prop_assert!(
                !live.is_empty() && !live.iter().all(|r| r.status == TaskStatus::Completed),
                "{}: RUNNING though every instance completed (the fan-in was missed)",
                &t.task_id
            );
            prop_assert!(
                !live.iter().any(|r| r.status == TaskStatus::Failed),
                "{}: RUNNING though an instance FAILED",
                &t.task_id
            );
        }
        TaskStatus::Completed => {
            let outputs: Vec<_> = live.iter().map(|r| r.output.clone().unwrap_or_default()).collect();
            prop_assert!(live.iter().all(|r| r.status == TaskStatus::Completed));
            prop_assert_eq!(
                t.output.clone(),
                Some(serde_json::Value::Array(outputs)),
                "{}: the outputs in order",
                &t.task_id
            );
        }
        TaskStatus::Failed if t.error.as_deref().is_some_and(|e| e.starts_with("instance ")) => {
            prop_assert!(
                live.iter().any(|r| r.status == TaskStatus::Failed),
                "{}: failed for an instance that did not",
                &t.task_id
            );
        }
        _ => {}
    }
    Ok(())
}

/// What task `i`'s trigger says of its dependencies as they stand: (holds, can no longer hold).
/// Written from the rules of DESIGN.md §8, apart from the state module's own code.
fn trigger(exec: &Execution, graph: &Graph, i: usize) -> (bool, bool) {
    let deps = graph.dependencies(i);
    if deps.is_empty() {
        return (true, false);
    }
    let count = |o: Option<Outcome>| deps.iter().filter(|&&d| rules::outcome(&exec.tasks[d]) == o).count();
    let (completed, failed, open) = (
        count(Some(Outcome::Completed)),
        count(Some(Outcome::Failed)),
        count(None),
    );
    let all = deps.len();
    match exec.tasks[i].plan.trigger {
        Trigger::AllSuccess => (completed == all, completed + open < all),
        Trigger::AllDone => (open == 0, false),
        Trigger::NoneFailed => (open == 0 && failed == 0, failed > 0),
        Trigger::AnySuccess => (completed > 0, completed == 0 && open == 0),
    }
}

/// Every task above `i`.
fn ancestors(graph: &naxos_core::state::Graph, i: usize) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    let mut stack = graph.dependencies(i).to_vec();
    while let Some(d) = stack.pop() {
        if found.insert(d) {
            stack.extend_from_slice(graph.dependencies(d));
        }
    }
    found
}

fn fail(e: naxos_core::Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}
