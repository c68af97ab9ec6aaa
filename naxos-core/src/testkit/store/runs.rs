//! Store checks of a task's run: claim, heartbeat, finish (complete, retry, fail), release.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{LeaseState, Store};
use crate::clock::ManualClock;
use crate::model::{ExecutionStatus, TaskBuilder, TaskStatus};
use crate::testkit::fixtures::{
    claim, claim_request, create, described, done, failed, new_diamond, run_ok, secs, task, unique_id,
};

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
