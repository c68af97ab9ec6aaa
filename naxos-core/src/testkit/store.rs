//! Store conformance checks. Each takes a fresh backend and panics on a broken rule.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::fixtures::{
    claim, claim_request, create, described, diamond, done, failed, new_diamond, run_ok, secs, task, unique_id,
};
use crate::backend::{ExecutionQuery, LeaseState, StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{AttemptOutcome, ExecutionStatus, NodeInfo, TaskBuilder, TaskStatus};

/// Identical content keeps its version; changed content gets the next; versions stay readable.
pub async fn definitions_are_versioned(store: Arc<dyn Store>, _clock: ManualClock) {
    let mut def = diamond();
    let first = store.put_definition(def.clone()).await.unwrap();
    assert!(first.created);
    assert_eq!(first.definition.version, 1);
    let again = store.put_definition(def.clone()).await.unwrap();
    assert!(!again.created, "identical content must not make a new version");
    assert_eq!(again.definition.version, 1);
    def.name = "Changed".into();
    let second = store.put_definition(def.clone()).await.unwrap();
    assert!(second.created);
    assert_eq!(second.definition.version, 2);
    assert_eq!(
        store.get_definition(&def.id, None).await.unwrap().definition.name,
        "Changed"
    );
    assert_eq!(
        store.get_definition(&def.id, Some(1)).await.unwrap().definition.name,
        "Diamond"
    );
    assert!(store.get_definition(&def.id, Some(3)).await.unwrap_err().is_not_found());
    assert!(store
        .get_definition("no-such-definition", None)
        .await
        .unwrap_err()
        .is_not_found());
    let versions = store.definition_versions(&def.id).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    let listed = store.list_definitions().await.unwrap();
    let mine = listed.iter().find(|d| d.id == def.id).expect("listed");
    assert_eq!(
        (mine.latest_version, mine.task_count, mine.name.as_str()),
        (2, 4, "Changed")
    );
}

/// A new execution is PENDING; its roots are QUEUED and returned ready, the rest PENDING.
pub async fn create_queues_the_roots(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let def = diamond();
    let created = create(&*store, &def, None).await;
    assert!(created.created);
    let id = created.execution_id;
    assert_eq!(created.changes.ready, vec![task(id, "a", 1)]);
    assert_eq!(
        described(&created.changes, now),
        ["execution PENDING", "task a#1 QUEUED", "ready a#1"]
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Pending);
    assert_eq!(exec.definition_id, def.id);
    assert_eq!(exec.data, json!({"n": 1}));
    let statuses: Vec<_> = exec.tasks.iter().map(|t| (t.task_id.as_str(), t.status)).collect();
    assert_eq!(
        statuses,
        vec![
            ("a", TaskStatus::Queued),
            ("b", TaskStatus::Pending),
            ("c", TaskStatus::Pending),
            ("d", TaskStatus::Pending)
        ]
    );
    assert_eq!(exec.task("d").unwrap().remaining_dependencies, 2);
    assert_eq!(exec.task("d").unwrap().dependencies, vec!["b", "c"]);
    assert!(store
        .get_execution(uuid::Uuid::now_v7())
        .await
        .unwrap_err()
        .is_not_found());
}

/// A repeated idempotency key for the same definition returns the first execution.
pub async fn idempotency_key_returns_the_first_execution(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = diamond();
    let first = create(&*store, &def, Some("key-1")).await;
    let again = create(&*store, &def, Some("key-1")).await;
    assert!(!again.created);
    assert_eq!(again.execution_id, first.execution_id);
    assert!(again.changes.ready.is_empty(), "a duplicate must not queue anything");
    let other = create(&*store, &def, Some("key-2")).await;
    assert!(other.created);
    assert_ne!(other.execution_id, first.execution_id);
}

/// Only one claim of an attempt wins; stale attempts and unknown tasks are refused.
pub async fn claim_is_guarded(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    let a = task(id, "a", 1);
    let claimed = claim(&*store, &a).await;
    assert_eq!((claimed.attempts, claimed.failures), (1, 0));
    assert_eq!(
        described(&claimed.changes, now),
        ["execution RUNNING", "task a#1 RUNNING", "attempt a#1 started on node-a"]
    );
    assert_eq!(*claimed.params, json!({"n": 1}));
    assert!(claimed.upstream.is_empty());
    let lease = Duration::from_secs(30);
    let twice = store.claim(claim_request(&a, "node-b", lease)).await;
    assert!(twice.unwrap_err().is_conflict(), "a second claim must fail");
    let wrong = store.claim(claim_request(&task(id, "a", 2), "node-b", lease)).await;
    assert!(wrong.unwrap_err().is_conflict(), "a claim of another attempt must fail");
    let pending = store.claim(claim_request(&task(id, "b", 1), "node-b", lease)).await;
    assert!(pending.unwrap_err().is_conflict(), "a PENDING task is not claimable");
    let unknown = store
        .claim(claim_request(&task(uuid::Uuid::now_v7(), "a", 1), "n", lease))
        .await;
    assert!(unknown.unwrap_err().is_not_found());
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Running);
    assert!(exec.start_time.is_some());
    let a_run = exec.task("a").unwrap();
    assert_eq!(a_run.status, TaskStatus::Running);
    assert_eq!(a_run.lease.as_ref().unwrap().owner, "node-a");
}

/// Heartbeats extend the lease of the current attempt only.
pub async fn heartbeat_extends_and_is_fenced(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    let a = task(id, "a", 1);
    claim(&*store, &a).await;
    clock.advance(Duration::from_secs(10));
    let until = now + secs(310);
    assert_eq!(
        store.heartbeat(&a, Duration::from_secs(300)).await.unwrap(),
        LeaseState::Active
    );
    let lease = store
        .get_execution(id)
        .await
        .unwrap()
        .task("a")
        .unwrap()
        .lease
        .clone()
        .unwrap();
    assert_eq!(lease.expires_at, until, "the lease runs 300 s from the Store's now");
    let lease = Duration::from_secs(300);
    assert!(store
        .heartbeat(&task(id, "a", 2), lease)
        .await
        .unwrap_err()
        .is_conflict());
    assert!(store
        .heartbeat(&task(id, "b", 1), lease)
        .await
        .unwrap_err()
        .is_conflict());
}

/// Completing passes outputs on and makes a dependent ready only when all its dependencies are done.
pub async fn completion_unlocks_dependents_once(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    let a = task(id, "a", 1);
    claim(&*store, &a).await;
    let report = store.finish(vec![done(&a, json!({"from": "a"}))]).await.unwrap();
    assert!(report.results[0].is_ok());
    assert_eq!(
        described(&report.changes, now),
        [
            "task a#1 COMPLETED",
            "task b#1 QUEUED",
            "task c#1 QUEUED",
            "ready b#1",
            "ready c#1",
            "attempt a#1 COMPLETED on node-a"
        ]
    );
    assert!(run_ok(&*store, id, "b").await.is_empty(), "d still waits for c");
    assert_eq!(run_ok(&*store, id, "c").await, vec![task(id, "d", 1)]);
    let d = claim(&*store, &task(id, "d", 1)).await;
    assert_eq!(d.upstream.len(), 2);
    assert_eq!(*d.upstream["b"], json!({"from": "b"}));
    assert_eq!(*d.upstream["c"], json!({"from": "c"}));
    let report = store.finish(vec![done(&task(id, "d", 1), json!("end"))]).await.unwrap();
    assert!(report.results[0].is_ok());
    assert_eq!(
        described(&report.changes, now),
        [
            "task d#1 COMPLETED",
            "execution COMPLETED",
            "attempt d#1 COMPLETED on node-a"
        ]
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Completed);
    assert!(exec.end_time.is_some());
    assert_eq!(exec.task("d").unwrap().output, Some(json!("end")));
    assert!(exec.tasks.iter().all(|t| t.status == TaskStatus::Completed));
    let finished = report
        .changes
        .events
        .iter()
        .filter(|e| e.execution_status() == Some(ExecutionStatus::Completed))
        .count();
    assert_eq!(finished, 1, "one COMPLETED event for the execution");
}

/// When the last two dependencies complete at the same moment, the join is queued exactly once.
pub async fn racing_completions_unlock_the_join_exactly_once(store: Arc<dyn Store>, _clock: ManualClock) {
    for _ in 0..20 {
        let id = new_diamond(&*store).await;
        run_ok(&*store, id, "a").await;
        let (b, c) = (task(id, "b", 1), task(id, "c", 1));
        claim(&*store, &b).await;
        claim(&*store, &c).await;
        let (s1, s2) = (store.clone(), store.clone());
        let (fb, fc) = (done(&b, json!(1)), done(&c, json!(2)));
        let h1 = tokio::spawn(async move { s1.finish(vec![fb]).await });
        let h2 = tokio::spawn(async move { s2.finish(vec![fc]).await });
        let (r1, r2) = (h1.await.unwrap().unwrap(), h2.await.unwrap().unwrap());
        assert!(r1.results[0].is_ok() && r2.results[0].is_ok());
        let mut ready = r1.changes.ready;
        ready.extend(r2.changes.ready);
        assert_eq!(ready, vec![task(id, "d", 1)], "the join must be queued exactly once");
        let d = store.get_execution(id).await.unwrap();
        assert_eq!(d.task("d").unwrap().status, TaskStatus::Queued);
        assert_eq!(d.task("d").unwrap().remaining_dependencies, 0);
    }
}

/// Several tasks with no dependent finish at the same moment: whichever finishes last ends the
/// execution, exactly once — COMPLETED when all completed, FAILED naming the task when one
/// failed (a failure is never counted as success, however the finishes interleave).
pub async fn racing_finishes_end_the_execution_exactly_once(store: Arc<dyn Store>, _clock: ManualClock) {
    const SINKS: usize = 6;
    let mut builder = crate::model::JobDefinition::builder(unique_id("sinks")).task(TaskBuilder::new("root", "f"));
    for i in 0..SINKS {
        builder = builder.task(TaskBuilder::new(format!("s{i}"), "f").after(["root"]));
    }
    let def = builder.build();
    for round in 0..20 {
        let id = create(&*store, &def, None).await.execution_id;
        run_ok(&*store, id, "root").await;
        let mut finishing = tokio::task::JoinSet::new();
        let barrier = Arc::new(tokio::sync::Barrier::new(SINKS));
        for i in 0..SINKS {
            let sink = task(id, &format!("s{i}"), 1);
            claim(&*store, &sink).await;
            let finish = if round % 2 == 1 && i == 2 {
                failed(&sink, "boom", None)
            } else {
                done(&sink, json!(i))
            };
            let (store, barrier) = (store.clone(), barrier.clone());
            finishing.spawn(async move {
                barrier.wait().await;
                store.finish(vec![finish]).await
            });
        }
        let mut ended = Vec::new();
        while let Some(report) = finishing.join_next().await {
            let report = report.expect("finish task").expect("no error reaches the caller");
            assert!(report.results[0].is_ok(), "{:?}", report.results[0]);
            ended.extend(report.changes.events.iter().filter_map(|e| e.execution_status()));
        }
        let exec = store.get_execution(id).await.unwrap();
        let expected = if round % 2 == 1 {
            ExecutionStatus::Failed
        } else {
            ExecutionStatus::Completed
        };
        assert_eq!(
            ended,
            vec![expected],
            "round {round}: one terminal event for the execution"
        );
        assert_eq!(exec.status, expected, "round {round}");
        if expected == ExecutionStatus::Failed {
            let error = exec.error.clone().unwrap_or_default();
            assert!(error.contains("`s2`") && error.contains("boom"), "{error}");
        }
    }
}

/// A finish for a stale attempt, or a second finish, changes nothing.
pub async fn stale_or_double_finish_is_rejected(store: Arc<dyn Store>, _clock: ManualClock) {
    let id = new_diamond(&*store).await;
    let a = task(id, "a", 1);
    let not_running = store.finish(vec![done(&a, json!(0))]).await.unwrap();
    assert!(not_running.results[0].as_ref().unwrap_err().is_conflict());
    claim(&*store, &a).await;
    let wrong = store.finish(vec![done(&task(id, "a", 2), json!(0))]).await.unwrap();
    assert!(wrong.results[0].as_ref().unwrap_err().is_conflict());
    let first = store.finish(vec![done(&a, json!(1))]).await.unwrap();
    assert!(first.results[0].is_ok());
    let second = store.finish(vec![done(&a, json!(2))]).await.unwrap();
    assert!(second.results[0].as_ref().unwrap_err().is_conflict());
    assert!(second.changes.ready.is_empty());
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        exec.task("a").unwrap().output,
        Some(json!(1)),
        "the first result stands"
    );
}

/// A retryable failure makes the task RETRYING with the next attempt, due later; the old
/// attempt is fenced off and the new one runs.
pub async fn retryable_failure_waits_then_runs_again(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    let a1 = task(id, "a", 1);
    claim(&*store, &a1).await;
    let due = now + secs(5);
    let report = store
        .finish(vec![failed(&a1, "flaky", Some(Duration::from_secs(5)))])
        .await
        .unwrap();
    assert!(report.results[0].is_ok());
    assert_eq!(
        described(&report.changes, now),
        [
            "task a#2 RETRYING: flaky",
            "delayed a#2 at +5s",
            "attempt a#1 RETRYING on node-a: flaky"
        ]
    );
    let a2 = task(id, "a", 2);
    assert_eq!(report.changes.delayed.len(), 1);
    assert_eq!(report.changes.delayed[0].0, a2);
    assert_eq!(report.changes.delayed[0].1, due);
    let run = store.get_execution(id).await.unwrap().task("a").unwrap().clone();
    assert_eq!((run.status, run.attempt, run.failures), (TaskStatus::Retrying, 2, 1));
    assert_eq!(run.error.as_deref(), Some("flaky"));
    assert!(store
        .claim(claim_request(&a1, "n", Duration::from_secs(30)))
        .await
        .unwrap_err()
        .is_conflict());
    clock.advance(Duration::from_secs(5));
    let claimed = claim(&*store, &a2).await;
    assert_eq!((claimed.attempts, claimed.failures), (2, 1));
    let ok = store.finish(vec![done(&a2, json!("ok"))]).await.unwrap();
    assert!(ok.results[0].is_ok());
    assert_eq!(ok.changes.ready.len(), 2);
    let run = store.get_execution(id).await.unwrap().task("a").unwrap().clone();
    assert_eq!((run.status, run.attempts, run.failures), (TaskStatus::Completed, 2, 1));
}

/// A final failure FAILS the task, SKIPS its transitive dependents, and FAILS the execution
/// once the other branches are done.
pub async fn final_failure_skips_dependents_and_fails_the_execution(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    run_ok(&*store, id, "a").await;
    let b = task(id, "b", 1);
    claim(&*store, &b).await;
    let report = store.finish(vec![failed(&b, "boom", None)]).await.unwrap();
    assert!(report.results[0].is_ok());
    assert_eq!(
        described(&report.changes, now),
        [
            "task b#1 FAILED: boom",
            "task d#1 SKIPPED: skipped: upstream task `b` failed",
            "attempt b#1 FAILED on node-a: boom"
        ]
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.task("b").unwrap().status, TaskStatus::Failed);
    assert_eq!(exec.task("d").unwrap().status, TaskStatus::Skipped);
    assert_eq!(
        exec.task("c").unwrap().status,
        TaskStatus::Queued,
        "independent branches go on"
    );
    assert_eq!(exec.status, ExecutionStatus::Running);
    assert!(run_ok(&*store, id, "c").await.is_empty());
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        exec.status,
        ExecutionStatus::Failed,
        "never COMPLETED with a failed task"
    );
    let error = exec.error.clone().unwrap();
    assert!(error.contains("`b`") && error.contains("boom"), "{error}");
}

/// One finish call with several outcomes applies each under its own guard.
pub async fn finish_batch_applies_each_item(store: Arc<dyn Store>, _clock: ManualClock) {
    let x = new_diamond(&*store).await;
    let y = new_diamond(&*store).await;
    let (ax, ay) = (task(x, "a", 1), task(y, "a", 1));
    claim(&*store, &ax).await;
    claim(&*store, &ay).await;
    let report = store
        .finish(vec![
            done(&ax, json!("x")),
            done(&task(y, "a", 7), json!("stale")),
            failed(&ay, "nope", None),
        ])
        .await
        .unwrap();
    assert!(report.results[0].is_ok());
    assert!(report.results[1].as_ref().unwrap_err().is_conflict());
    assert!(report.results[2].is_ok());
    assert_eq!(report.changes.ready, vec![task(x, "b", 1), task(x, "c", 1)]);
    assert_eq!(store.get_execution(y).await.unwrap().status, ExecutionStatus::Failed);
}

/// Stopping cancels unfinished tasks; the running worker learns it from its heartbeat, and
/// its result is refused. A finished execution cannot be stopped.
pub async fn stop_cancels_and_tells_the_running_worker(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    run_ok(&*store, id, "a").await;
    let b = task(id, "b", 1);
    claim(&*store, &b).await;
    let stopped = store.stop_execution(id, StopReason::Cancelled).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Cancelled);
    assert_eq!(stopped.running, vec![b.clone()]);
    assert_eq!(
        described(&stopped.changes, now),
        [
            "task b#1 CANCELLED",
            "task c#1 CANCELLED",
            "task d#1 CANCELLED",
            "execution CANCELLED",
            "attempt b#1 CANCELLED on node-a"
        ]
    );
    assert_eq!(
        store.heartbeat(&b, Duration::from_secs(30)).await.unwrap(),
        LeaseState::Cancelled
    );
    let late = store.finish(vec![done(&b, json!(1))]).await.unwrap();
    assert!(late.results[0].as_ref().unwrap_err().is_conflict());
    let c = store
        .claim(claim_request(&task(id, "c", 1), "n", Duration::from_secs(30)))
        .await;
    assert!(
        c.unwrap_err().is_conflict(),
        "a queued task of a cancelled execution never starts"
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Cancelled);
    for t in ["b", "c", "d"] {
        assert_eq!(exec.task(t).unwrap().status, TaskStatus::Cancelled, "task {t}");
    }
    assert_eq!(exec.task("a").unwrap().status, TaskStatus::Completed);
    let again = store.stop_execution(id, StopReason::Cancelled).await;
    assert!(again.unwrap_err().is_conflict());
    let timed = new_diamond(&*store).await;
    let out = store.stop_execution(timed, StopReason::TimedOut).await.unwrap();
    assert_eq!(out.status, ExecutionStatus::Failed);
    assert!(store.get_execution(timed).await.unwrap().error.is_some());
}

/// A lease that ran out is recovered by exactly one of two racing sweepers, with a new
/// attempt; the presumed-dead worker's result is then refused.
pub async fn expired_lease_is_recovered_once(store: Arc<dyn Store>, clock: ManualClock) {
    let id = new_diamond(&*store).await;
    let a = task(id, "a", 1);
    store
        .claim(claim_request(&a, "dead-node", Duration::from_secs(10)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let early = store.recover_expired(3, 100).await.unwrap();
    assert!(
        !early.ready.iter().any(|t| t.execution_id == id),
        "a live lease is left alone"
    );
    clock.advance(Duration::from_secs(6));
    let (s1, s2) = (store.clone(), store.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { s1.recover_expired(3, 100).await }),
        tokio::spawn(async move { s2.recover_expired(3, 100).await })
    );
    let mut ready = r1.unwrap().unwrap().ready;
    ready.extend(r2.unwrap().unwrap().ready);
    ready.retain(|t| t.execution_id == id);
    assert_eq!(ready, vec![task(id, "a", 2)], "recovered exactly once");
    let history = store
        .get_execution(id)
        .await
        .unwrap()
        .task("a")
        .unwrap()
        .history
        .clone();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].outcome, &*history[0].node, history[0].error.as_deref()),
        (Some(AttemptOutcome::Expired), "dead-node", Some("the lease expired"))
    );
    let run = store.get_execution(id).await.unwrap().task("a").unwrap().clone();
    assert_eq!(
        (run.status, run.attempt, run.lease_expiries),
        (TaskStatus::Queued, 2, 1)
    );
    let zombie = store.finish(vec![done(&a, json!("late"))]).await.unwrap();
    assert!(
        zombie.results[0].as_ref().unwrap_err().is_conflict(),
        "the old attempt is fenced"
    );
    claim(&*store, &task(id, "a", 2)).await;
}

/// A task whose lease keeps expiring FAILS instead of looping forever.
pub async fn lease_expiries_are_bounded(store: Arc<dyn Store>, clock: ManualClock) {
    let id = new_diamond(&*store).await;
    for attempt in 1..=2 {
        store
            .claim(claim_request(&task(id, "a", attempt), "n", Duration::from_secs(1)))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2));
        store.recover_expired(1, 100).await.unwrap();
    }
    let exec = store.get_execution(id).await.unwrap();
    let a = exec.task("a").unwrap();
    assert_eq!(a.status, TaskStatus::Failed);
    assert!(
        a.error.as_deref().unwrap_or_default().contains("lease"),
        "{:?}",
        a.error
    );
    assert_eq!(exec.status, ExecutionStatus::Failed);
}

/// A QUEUED task whose message was lost is handed to one sweeper for republishing, and a
/// RETRYING task long past due is queued again.
pub async fn stale_queued_tasks_are_taken_once(store: Arc<dyn Store>, clock: ManualClock) {
    let id = new_diamond(&*store).await;
    let ten = Duration::from_secs(10);
    let fresh = store.take_stale(ten, 100).await.unwrap();
    assert!(!fresh.ready.iter().any(|t| t.execution_id == id));
    clock.advance(Duration::from_secs(60));
    let taken = store.take_stale(ten, 100).await.unwrap();
    assert!(taken.ready.contains(&task(id, "a", 1)));
    let again = store.take_stale(ten, 100).await.unwrap();
    assert!(
        !again.ready.iter().any(|t| t.execution_id == id),
        "stamped, so taken once"
    );
    let a1 = task(id, "a", 1);
    claim(&*store, &a1).await;
    store
        .finish(vec![failed(&a1, "flaky", Some(Duration::from_secs(1)))])
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let due = store.take_stale(ten, 100).await.unwrap();
    assert!(due.ready.contains(&task(id, "a", 2)));
    let run = store.get_execution(id).await.unwrap().task("a").unwrap().clone();
    assert_eq!(run.status, TaskStatus::Queued);
}

/// Handing a task back makes it QUEUED with a new attempt.
pub async fn release_requeues_with_a_new_attempt(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    let a = task(id, "a", 1);
    claim(&*store, &a).await;
    let changes = store.release(&a).await.unwrap();
    assert_eq!(
        described(&changes, now),
        ["task a#2 QUEUED", "ready a#2", "attempt a#1 RELEASED on node-a"]
    );
    assert!(store.release(&a).await.unwrap_err().is_conflict());
    let claimed = claim(&*store, &task(id, "a", 2)).await;
    assert_eq!((claimed.attempts, claimed.failures), (2, 0));
}

/// Retrying a FAILED execution re-runs the failed and skipped tasks only, with a fresh budget.
pub async fn retry_execution_reruns_the_failed_part(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    assert!(store.retry_execution(id).await.unwrap_err().is_conflict());
    run_ok(&*store, id, "a").await;
    run_ok(&*store, id, "c").await;
    let b = task(id, "b", 1);
    claim(&*store, &b).await;
    store.finish(vec![failed(&b, "boom", None)]).await.unwrap();
    assert_eq!(store.get_execution(id).await.unwrap().status, ExecutionStatus::Failed);
    let changes = store.retry_execution(id).await.unwrap();
    assert_eq!(
        described(&changes, now),
        ["execution RUNNING", "task b#2 QUEUED", "task d#2 PENDING", "ready b#2"],
        "only b is ready; a and c stay done"
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Running);
    assert_eq!(exec.error, None);
    let d = exec.task("d").unwrap();
    assert_eq!((d.status, d.remaining_dependencies), (TaskStatus::Pending, 1));
    let b2 = task(id, "b", 2);
    let claimed = claim(&*store, &b2).await;
    assert_eq!(claimed.failures, 0, "a fresh retry budget");
    let report = store.finish(vec![done(&b2, json!(2))]).await.unwrap();
    assert_eq!(report.changes.ready, vec![task(id, "d", 2)]);
    let d2 = task(id, "d", 2);
    claim(&*store, &d2).await;
    store.finish(vec![done(&d2, json!(4))]).await.unwrap();
    assert_eq!(
        store.get_execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
}

/// Listing is newest first, filters by status and definition, and pages with a cursor that
/// visits every execution once.
pub async fn listing_pages_and_filters(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = diamond();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(create(&*store, &def, None).await.execution_id);
    }
    let stopped = ids[2];
    store.stop_execution(stopped, StopReason::Cancelled).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_executions(&ExecutionQuery {
                definition_id: Some(def.id.clone()),
                limit: 3,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.executions.len() <= 3);
        seen.extend(page.executions.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let cancelled = store
        .list_executions(&ExecutionQuery {
            definition_id: Some(def.id.clone()),
            status: Some(ExecutionStatus::Cancelled),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cancelled.executions.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![stopped]
    );
    assert_eq!(cancelled.next_cursor, None);
    let none = store
        .list_executions(&ExecutionQuery {
            definition_id: Some(unique_id("nothing")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.executions.is_empty());
}

/// Deadlines are reported once passed; finished executions are pruned after retention only.
pub async fn overdue_executions_and_pruning(store: Arc<dyn Store>, clock: ManualClock) {
    let def = diamond();
    store.put_definition(def.clone()).await.unwrap();
    let plain = create(&*store, &def, None).await.execution_id;
    let mut deadline_exec = crate::backend::NewExecution {
        id: uuid::Uuid::now_v7(),
        definition_id: def.id.clone(),
        definition_version: 1,
        params: json!({}),
        idempotency_key: None,
        timeout: Some(Duration::from_secs(5)),
        tasks: [crate::backend::NewTask {
            task_id: "only".into(),
            name: "only".into(),
            function_name: "f".into(),
            dependencies: vec![],
            dependents: vec![],
        }]
        .into(),
    };
    let timed = store
        .create_execution(deadline_exec.clone())
        .await
        .unwrap()
        .execution_id;
    clock.advance(Duration::from_secs(1));
    let overdue = store.overdue_executions(100).await.unwrap();
    assert!(!overdue.contains(&timed));
    clock.advance(Duration::from_secs(5));
    let overdue = store.overdue_executions(100).await.unwrap();
    assert!(overdue.contains(&timed) && !overdue.contains(&plain));

    deadline_exec.id = uuid::Uuid::now_v7();
    deadline_exec.timeout = None;
    let done_id = store.create_execution(deadline_exec).await.unwrap().execution_id;
    let t = task(done_id, "only", 1);
    claim(&*store, &t).await;
    store.finish(vec![done(&t, json!(1))]).await.unwrap();
    let second = Duration::from_secs(1);
    store.prune(second, 1_000).await.unwrap();
    assert!(store.get_execution(done_id).await.is_ok(), "too recent to prune");
    clock.advance(Duration::from_secs(2));
    let pruned = store.prune(second, 1_000).await.unwrap();
    assert!(pruned >= 1);
    assert!(store.get_execution(done_id).await.unwrap_err().is_not_found());
    assert!(
        store.get_execution(plain).await.is_ok(),
        "unfinished executions are kept"
    );
}

/// Counts reflect queued and running tasks; nodes are recorded by id.
pub async fn counts_and_nodes(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let before = store.counts().await.unwrap();
    let id = new_diamond(&*store).await;
    run_ok(&*store, id, "a").await;
    claim(&*store, &task(id, "b", 1)).await;
    let after = store.counts().await.unwrap();
    assert!(after.queued_tasks > before.queued_tasks, "c is queued");
    assert!(after.running_tasks > before.running_tasks, "b is running");
    assert!(
        after.executions.get(&ExecutionStatus::Running).copied().unwrap_or(0)
            > before.executions.get(&ExecutionStatus::Running).copied().unwrap_or(0)
    );
    let node_id = unique_id("node");
    let mut node = NodeInfo {
        id: node_id.clone(),
        role: "worker".into(),
        concurrency: 4,
        running: 1,
        started_at: now,
        last_seen: now,
    };
    store.put_node(node.clone()).await.unwrap();
    node.running = 3;
    node.last_seen = now + secs(1);
    store.put_node(node.clone()).await.unwrap();
    let nodes = store.list_nodes().await.unwrap();
    let mine: Vec<_> = nodes.iter().filter(|n| n.id == node_id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].running, 3);
    store.ping().await.unwrap();
}
