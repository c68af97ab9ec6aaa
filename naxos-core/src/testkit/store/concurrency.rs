//! Store checks of concurrency limits: claims over the limit blocked, never taken by the stale
//! sweep, admitted the highest priority then the oldest first as slots free — by a finish, a stop, a release or a lease's
//! expiry —, and limits counted per key.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{NewExecution, Store};
use crate::clock::ManualClock;
use crate::model::{BlockedBy, JobDefinition, Priority, TaskBuilder, TaskRef, TaskStatus};
use crate::testkit::fixtures::{claim, claim_request, create_each, done, run_of, task, unique_id};

/// One task `a` of function `f` under `limit`, keyed by `key` when given.
fn limited(limit: u32, key: Option<&str>) -> JobDefinition {
    let mut a = TaskBuilder::new("a", "f").concurrency(limit);
    if let Some(key) = key {
        a = a.concurrency_key(key);
    }
    JobDefinition::builder(unique_id("limited")).task(a).build()
}

/// The claim of `t` is refused and leaves it QUEUED, blocked for concurrency.
async fn refused(store: &dyn Store, t: &TaskRef) {
    let e = store
        .claim(claim_request(t, "node-b", Duration::from_secs(30)))
        .await
        .expect_err("no slot is free");
    assert!(e.is_conflict(), "{e}");
    let run = run_of(store, t.execution_id, "a").await;
    assert_eq!(
        (run.status, run.blocked_by, run.holds_slot),
        (TaskStatus::Queued, Some(BlockedBy::Concurrency), false),
        "{run:?}"
    );
    assert!(run.slot.is_some() && run.lease.is_none(), "no attempt started: {run:?}");
    assert_eq!(run.history.len() as u32, run.attempts, "{run:?}");
}

/// Limit 1, three executions: the first claim takes the slot, the next two wait (not
/// republished by the stale sweep, not admitted while the slot is held). The finish of the
/// holder admits the oldest waiting run (QUEUED anew, holding the slot, published) and only
/// it; a duplicate claim of the other stays refused; cancelling the admitted run's execution
/// admits the last; its release frees its slot (the run claims again); and when its lease
/// expires the slot comes back with it.
pub async fn a_concurrency_limit_blocks_claims_and_admits_in_order(store: Arc<dyn Store>, clock: ManualClock) {
    let def = limited(1, None);
    let ids = create_each(&*store, &def, &[json!({}), json!({}), json!({})]).await;
    let [a1, a2, a3] = [0, 1, 2].map(|i| task(ids[i], "a", 1));

    claim(&*store, &a1).await;
    clock.advance(Duration::from_millis(1));
    refused(&*store, &a2).await;
    clock.advance(Duration::from_millis(1));
    refused(&*store, &a3).await;

    clock.advance(Duration::from_secs(600));
    let stale = store.take_stale(Duration::from_secs(1), 100).await.expect("take_stale");
    assert!(
        stale.ready.is_empty(),
        "a waiting run is never republished: {:?}",
        stale.ready
    );
    let early = store.admit_blocked(100).await.expect("admit_blocked");
    assert!(early.ready.is_empty(), "no slot is free: {:?}", early.ready);

    let finished = store.finish(vec![done(&a1, json!(1))]).await.expect("finish");
    assert_eq!(
        finished.changes.ready,
        std::slice::from_ref(&a2),
        "the oldest waiting run is admitted"
    );
    let run = run_of(&*store, ids[1], "a").await;
    assert_eq!(
        (run.status, run.blocked_by, run.holds_slot),
        (TaskStatus::Queued, None, true)
    );
    refused(&*store, &a3).await;
    assert!(
        store.admit_blocked(100).await.expect("admit").ready.is_empty(),
        "admitted once"
    );

    claim(&*store, &a2).await;
    let stopped = store
        .stop_execution(ids[1], crate::backend::StopReason::Cancelled)
        .await
        .expect("stop");
    assert_eq!(
        stopped.changes.ready,
        std::slice::from_ref(&a3),
        "a stop frees the slot"
    );

    claim(&*store, &a3).await;
    let released = store.release(&a3).await.expect("release");
    let again = task(ids[2], "a", 2);
    assert_eq!(
        released.ready,
        std::slice::from_ref(&again),
        "the released run is queued anew"
    );
    claim(&*store, &again).await;

    // A fourth run waits behind it; the holder's node dies: its slot comes back with its lease.
    let later = create_each(&*store, &def, &[json!({})]).await;
    let a4 = task(later[0], "a", 1);
    refused(&*store, &a4).await;
    clock.advance(Duration::from_secs(3_600));
    let recovered = store.recover_expired(10, 100).await.expect("recover_expired");
    assert!(
        recovered.ready.contains(&a4) && recovered.ready.contains(&task(ids[2], "a", 3)),
        "the expired holder is queued again and the waiting run admitted: {:?}",
        recovered.ready
    );
    claim(&*store, &a4).await;
    refused(&*store, &task(ids[2], "a", 3)).await;
}

/// A keyed limit counts per key: with limit 1 per tenant, a second run of one tenant waits
/// while another tenant's runs; a key that does not evaluate FAILS the task naming
/// `concurrency.key`.
pub async fn a_concurrency_key_limits_per_key(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = limited(1, Some("params.tenant"));
    let ids = create_each(
        &*store,
        &def,
        &[
            json!({"tenant": "x"}),
            json!({"tenant": "x"}),
            json!({"tenant": "y"}),
            json!({}),
        ],
    )
    .await;
    claim(&*store, &task(ids[0], "a", 1)).await;
    refused(&*store, &task(ids[1], "a", 1)).await;
    claim(&*store, &task(ids[2], "a", 1)).await;

    let broken = store.get_execution(ids[3]).await.expect("get");
    let run = broken.task("a").expect("a");
    assert_eq!(run.status, TaskStatus::Failed, "{run:?}");
    assert!(
        run.error.as_deref().is_some_and(|e| e.contains("concurrency.key")),
        "{:?}",
        run.error
    );
}

/// A fan-out under a limit of 1 whose first instance fails for good: the instance waiting for
/// the slot is cancelled with the others and stops waiting — a later run of the task takes the
/// slot at once, not blocked behind a cancelled run.
pub async fn a_cancelled_waiting_run_no_longer_waits(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = JobDefinition::builder(unique_id("limited-fan"))
        .task(TaskBuilder::new("each", "f").for_each("params.items").concurrency(1))
        .build();
    let ids = create_each(store.as_ref(), &def, &[json!({"items": [1, 2, 3]})]).await;
    let first = task(ids[0], "each[0]", 1);
    claim(&*store, &first).await;
    let second = task(ids[0], "each[1]", 1);
    let e = store
        .claim(claim_request(&second, "node-b", Duration::from_secs(30)))
        .await
        .expect_err("no slot is free");
    assert!(e.is_conflict(), "{e}");
    let failed = crate::testkit::fixtures::failed(&first, "boom", None);
    store.finish(vec![failed]).await.expect("finish");
    let run = run_of(store.as_ref(), ids[0], "each[1]").await;
    assert_eq!((run.status, run.blocked_by), (TaskStatus::Cancelled, None), "{run:?}");

    let later = create_each(store.as_ref(), &def, &[json!({"items": [4]})]).await;
    claim(&*store, &task(later[0], "each[0]", 1)).await;
}

/// A run admitted to a slot that a pause then blocks keeps its slot (and its place): the
/// claim admits no other run, whose message would go nowhere; after the resume it starts.
pub async fn a_paused_admitted_run_keeps_its_slot(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = limited(1, None);
    let ids = create_each(store.as_ref(), &def, &[json!({}), json!({}), json!({})]).await;
    let [a, b, c] = [0, 1, 2].map(|i| task(ids[i], "a", 1));
    claim(&*store, &a).await;
    refused(store.as_ref(), &b).await;
    refused(store.as_ref(), &c).await;
    let finished = store.finish(vec![done(&a, json!(1))]).await.expect("finish");
    assert_eq!(finished.changes.ready, std::slice::from_ref(&b));

    store.set_definition_paused(&def.id, true).await.expect("pause");
    let e = store
        .claim(claim_request(&b, "node-b", Duration::from_secs(30)))
        .await
        .expect_err("paused");
    assert!(e.is_conflict(), "{e}");
    let run = run_of(store.as_ref(), ids[1], "a").await;
    assert_eq!(
        (run.blocked_by, run.holds_slot),
        (Some(BlockedBy::Paused), true),
        "{run:?}"
    );
    let waiting = run_of(store.as_ref(), ids[2], "a").await;
    assert_eq!(
        waiting.blocked_by,
        Some(BlockedBy::Concurrency),
        "not admitted: {waiting:?}"
    );

    store.set_definition_paused(&def.id, false).await.expect("resume");
    let admitted = store.admit_blocked(100).await.expect("admit_blocked");
    assert_eq!(
        admitted.ready,
        std::slice::from_ref(&b),
        "only the paused run, its slot kept"
    );
    claim(&*store, &b).await;
}

/// An execution's priority is kept (in its summary, on the references of its tasks), and the
/// runs waiting for a slot are admitted the highest priority first, then the oldest: with limit
/// 1 held, runs of priority 0 (the oldest), 9 and 5 wait, and each finish admits the next of
/// 9, 5, 0.
pub async fn waiting_runs_are_admitted_highest_priority_first(store: Arc<dyn Store>, clock: ManualClock) {
    let def = limited(1, None);
    let put = store.put_definition(def.clone()).await.expect("put_definition");
    let mut ids = Vec::new();
    for level in [0, 0, 9, 5] {
        let new = NewExecution {
            priority: Priority::new(level).unwrap(),
            ..NewExecution::new(&put.definition, json!({}))
        };
        let created = store.create_execution(new).await.expect("create_execution");
        let queued: Vec<Priority> = created.changes.ready.iter().map(|t| t.priority).collect();
        assert_eq!(
            queued,
            [Priority::new(level).unwrap()],
            "the message carries the priority"
        );
        ids.push(created.execution_id);
        clock.advance(Duration::from_millis(1));
    }
    let summary = store.get_execution(ids[2]).await.expect("get_execution").summary;
    assert_eq!(summary.priority, Priority::HIGHEST, "the summary keeps it");
    let runs: Vec<TaskRef> = ids.iter().map(|id| task(*id, "a", 1)).collect();
    claim(&*store, &runs[0]).await;
    for t in &runs[1..] {
        clock.advance(Duration::from_millis(1));
        refused(&*store, t).await;
    }
    let mut holder = runs[0].clone();
    for (next, level) in [(2, 9), (3, 5), (1, 0)] {
        let finished = store.finish(vec![done(&holder, json!(1))]).await.expect("finish");
        assert_eq!(
            finished.changes.ready,
            std::slice::from_ref(&runs[next]),
            "priority {level} is admitted next"
        );
        assert_eq!(finished.changes.ready[0].priority.get(), level);
        claim(&*store, &runs[next]).await;
        holder = runs[next].clone();
    }
}
