//! Store checks of stopping, retrying and recovering executions: cancel and timeout, retry of
//! the failed part, expired leases, lost publishes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{LeaseState, StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{AttemptOutcome, ExecutionStatus, TaskStatus};
use crate::testkit::fixtures::{
    claim, claim_request, create, described, diamond, done, failed, new_diamond, run_ok, secs, task,
};

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

/// A COMPLETED diamond restarted from `b`: `b` and `d` run again (next attempt), `a` and `c`
/// keep their outputs and feed the re-run; refused while the execution runs, and for a task
/// that does not exist.
pub async fn retry_from_reruns_the_task_and_below_only(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let id = new_diamond(&*store).await;
    let running = store.retry_from(id, "b").await.unwrap_err();
    assert!(running.is_conflict(), "a PENDING execution: {running}");
    for t in ["a", "b", "c", "d"] {
        run_ok(&*store, id, t).await;
    }
    assert_eq!(
        store.get_execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
    let unknown = store.retry_from(id, "nope").await.unwrap_err();
    assert!(unknown.is_not_found(), "{unknown}");
    let changes = store.retry_from(id, "b").await.unwrap();
    assert_eq!(
        described(&changes, now),
        ["execution RUNNING", "task b#2 QUEUED", "task d#2 PENDING", "ready b#2"],
        "b starts over, d waits for it; a and c stay done"
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        (exec.task("a").unwrap().status, exec.task("c").unwrap().output.clone()),
        (TaskStatus::Completed, Some(json!({"from": "c"}))),
        "the outputs above and beside are kept"
    );
    assert_eq!(exec.task("d").unwrap().output, None);
    let b2 = task(id, "b", 2);
    let claimed = claim(&*store, &b2).await;
    assert_eq!(
        claimed.upstream["a"].as_ref(),
        &json!({"from": "a"}),
        "b reads a's kept output"
    );
    let report = store.finish(vec![done(&b2, json!("again"))]).await.unwrap();
    assert_eq!(report.changes.ready, vec![task(id, "d", 2)]);
    let d2 = task(id, "d", 2);
    let claimed = claim(&*store, &d2).await;
    assert_eq!(
        (claimed.upstream["b"].as_ref(), claimed.upstream["c"].as_ref()),
        (&json!("again"), &json!({"from": "c"}))
    );
    store.finish(vec![done(&d2, json!(4))]).await.unwrap();
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Completed);
    assert_eq!(exec.task("a").unwrap().attempts, 1, "a never ran again");
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

/// A retried execution gets a fresh deadline: one that timed out is not stopped again by the
/// next sweep.
pub async fn a_retried_execution_gets_a_fresh_deadline(store: Arc<dyn Store>, clock: ManualClock) {
    let mut def = diamond();
    def.timeout_ms = Some(5_000);
    let id = create(&*store, &def, None).await.execution_id;
    let created = clock.now();
    clock.advance(Duration::from_secs(6));
    assert_eq!(store.overdue_executions(100).await.unwrap(), vec![id]);
    let stopped = store.stop_execution(id, StopReason::TimedOut).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Failed);
    store.retry_execution(id).await.unwrap();
    let retried = store.get_execution(id).await.unwrap();
    assert_eq!(
        retried.deadline,
        Some(clock.now() + secs(5)),
        "the timeout counts again from the retry (created at {created})"
    );
    assert!(!store.overdue_executions(100).await.unwrap().contains(&id));
    clock.advance(Duration::from_secs(6));
    assert!(store.overdue_executions(100).await.unwrap().contains(&id));
    // A second retry counts the definition's timeout again, not the time since the first.
    store.stop_execution(id, StopReason::TimedOut).await.unwrap();
    clock.advance(Duration::from_secs(60));
    store.retry_execution(id).await.unwrap();
    let again = store.get_execution(id).await.unwrap();
    assert_eq!(
        again.deadline,
        Some(clock.now() + secs(5)),
        "the second retry's deadline"
    );
    store.stop_execution(id, StopReason::Cancelled).await.unwrap();
    store.retry_from(id, "a").await.unwrap();
    let from = store.get_execution(id).await.unwrap();
    assert_eq!(from.deadline, Some(clock.now() + secs(5)), "a restart's deadline");
}

/// A QUEUED task nobody claims (lost, or waiting behind a backlog) is republished ever more
/// rarely — each time after twice the wait of the time before — so a backlog does not multiply
/// its messages; a lost one is still found at the first sweep past the age.
pub async fn a_waiting_task_is_republished_ever_more_rarely(store: Arc<dyn Store>, clock: ManualClock) {
    let id = new_diamond(&*store).await;
    let age = Duration::from_secs(10);
    let mut taken_at = Vec::new();
    for second in 1..=600 {
        clock.advance(Duration::from_secs(1));
        let stale = store.take_stale(age, 100).await.unwrap();
        if stale.ready.contains(&task(id, "a", 1)) {
            taken_at.push(second);
        }
    }
    // Sweeping every second for ten minutes: taken at 11 s, then 21 s later, then 41 s, …
    assert_eq!(taken_at, vec![11, 32, 73, 154, 315], "republished at");
    // Once claimed, the count starts over for the task's next wait.
    claim(&*store, &task(id, "a", 1)).await;
    let run = store.get_execution(id).await.unwrap();
    assert_eq!(run.task("a").unwrap().status, TaskStatus::Running);
}
