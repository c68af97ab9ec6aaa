//! Store checks of durable waits: a sleep woken at its due time (not before, once), a signal
//! taken by the waiting task or kept for the one that will wait, and a wait that times out.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{NewExecution, Store};
use crate::clock::ManualClock;
use crate::model::{ExecutionId, ExecutionStatus, JobDefinition, TaskBuilder, TaskStatus};
use crate::testkit::fixtures::{described, run_ok, secs, task, unique_id};
use crate::Error;

/// Registers `def` and creates an execution of it; returns its id and the creation's changes
/// as [`described`] lines.
async fn start(store: &dyn Store, def: JobDefinition, clock: &ManualClock) -> (ExecutionId, Vec<String>) {
    let put = store.put_definition(def).await.expect("put_definition");
    let created = store
        .create_execution(NewExecution::new(&put.definition, json!({})))
        .await
        .expect("create_execution");
    (created.execution_id, described(&created.changes, clock.now()))
}

/// `nap` (a 60 s sleep) → `b`: WAITING with its due time; neither `wake` nor `wake_due` ends it
/// early; at its time `wake_due` COMPLETES it (output `null`) and queues `b`, once; a second wake
/// is a stale `Conflict`.
pub async fn a_sleep_waits_until_due_then_completes_once(store: Arc<dyn Store>, clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("nap"))
        .task(TaskBuilder::sleep("nap", Duration::from_secs(60)))
        .task(TaskBuilder::new("b", "f").after(["nap"]))
        .build();
    let (id, created) = start(&*store, def, &clock).await;
    assert_eq!(
        created,
        [
            "execution PENDING",
            "execution RUNNING",
            "task nap#1 WAITING",
            "waiting nap#1 until +60s"
        ],
        "a sleep is WAITING, not QUEUED, with its due time, and the execution has started"
    );
    let exec = store.get_execution(id).await.unwrap();
    let nap = exec.task("nap").unwrap();
    assert_eq!(
        (nap.status, nap.due_at),
        (TaskStatus::Waiting, Some(clock.now() + secs(60)))
    );

    let nap = task(id, "nap", 1);
    let early = store.wake(&nap).await.expect_err("not due yet");
    assert!(early.is_conflict(), "{early}");
    assert!(store.wake_due(100).await.unwrap().is_empty(), "nothing due yet");

    clock.advance(Duration::from_secs(60));
    let woken = store.wake_due(100).await.unwrap();
    assert_eq!(
        described(&woken, clock.now()),
        ["task nap#1 COMPLETED", "task b#1 QUEUED", "ready b#1"]
    );
    assert!(store.wake_due(100).await.unwrap().is_empty(), "woken once");
    let again = store.wake(&nap).await.expect_err("already woken");
    assert!(again.is_conflict(), "{again}");
    let exec = store.get_execution(id).await.unwrap();
    let nap = exec.task("nap").unwrap();
    assert_eq!(
        (nap.status, nap.output.clone(), nap.attempts),
        (TaskStatus::Completed, Some(json!(null)), 0)
    );
    run_ok(&*store, id, "b").await;
    assert_eq!(
        store.get_execution(id).await.unwrap().summary.status,
        ExecutionStatus::Completed
    );
}

/// `a → w (waitFor approve) → b`. Sent while `a` runs, the signal is kept (durably) and `w`
/// takes it the moment it waits; sent while `w` waits, `w` COMPLETES with it at once. A name no
/// task waits for is `InvalidInput`; a finished execution refuses signals with `Conflict`.
pub async fn a_signal_completes_the_waiting_task_or_is_kept_for_it(store: Arc<dyn Store>, clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("approval"))
        .task(TaskBuilder::new("a", "f"))
        .task(
            TaskBuilder::wait_for("w", "approve")
                .signal_timeout(Duration::from_secs(60))
                .after(["a"]),
        )
        .task(TaskBuilder::new("b", "f").after(["w"]))
        .build();
    let (early, _) = start(&*store, def.clone(), &clock).await;
    let kept = store.signal(early, "approve", json!({"by": "ann"})).await.unwrap();
    assert_eq!(kept.delivered_to, None, "no task waits yet: kept");
    assert!(kept.changes.events.is_empty());
    let refused = store
        .signal(early, "reject", json!(1))
        .await
        .expect_err("nobody waits for it");
    assert!(
        matches!(&refused, Error::InvalidInput(m) if m.contains("`reject`")),
        "{refused}"
    );
    let ready = run_ok(&*store, early, "a").await;
    assert_eq!(ready, [task(early, "b", 1)], "w took the kept signal at once");
    let exec = store.get_execution(early).await.unwrap();
    let w = exec.task("w").unwrap();
    assert_eq!(
        (w.status, w.output.clone()),
        (TaskStatus::Completed, Some(json!({"by": "ann"})))
    );

    let (late, _) = start(&*store, def, &clock).await;
    run_ok(&*store, late, "a").await;
    let exec = store.get_execution(late).await.unwrap();
    assert_eq!(exec.task("w").unwrap().status, TaskStatus::Waiting);
    let taken = store.signal(late, "approve", json!("yes")).await.unwrap();
    assert_eq!(taken.delivered_to.as_deref(), Some("w"));
    assert_eq!(
        described(&taken.changes, clock.now()),
        ["task w#1 COMPLETED", "task b#1 QUEUED", "ready b#1"]
    );
    run_ok(&*store, late, "b").await;
    let finished = store
        .signal(late, "approve", json!("again"))
        .await
        .expect_err("finished");
    assert!(finished.is_conflict(), "{finished}");
    let unknown = store
        .signal(ExecutionId::now_v7(), "approve", json!(1))
        .await
        .expect_err("no such execution");
    assert!(unknown.is_not_found(), "{unknown}");
}

/// A `waitFor` with a 30 s timeout and no signal: at its time `wake_due` FAILS it with
/// `signal approve timed out`, skips what follows and fails the execution — once.
pub async fn a_wait_past_its_timeout_fails_once(store: Arc<dyn Store>, clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("timeout"))
        .task(TaskBuilder::wait_for("w", "approve").signal_timeout(Duration::from_secs(30)))
        .task(TaskBuilder::new("b", "f").after(["w"]))
        .build();
    let (id, created) = start(&*store, def, &clock).await;
    assert_eq!(
        created,
        [
            "execution PENDING",
            "execution RUNNING",
            "task w#1 WAITING",
            "waiting w#1 until +30s"
        ]
    );
    clock.advance(Duration::from_secs(31));
    let woken = store.wake_due(100).await.unwrap();
    assert_eq!(
        described(&woken, clock.now()),
        [
            "task w#1 FAILED: signal approve timed out",
            "task b#1 SKIPPED: skipped: upstream task `w` failed",
            "execution FAILED: task `w` failed: signal approve timed out",
        ]
    );
    assert!(store.wake_due(100).await.unwrap().is_empty(), "woken once");
    assert_eq!(
        store.get_execution(id).await.unwrap().summary.status,
        ExecutionStatus::Failed
    );
}
