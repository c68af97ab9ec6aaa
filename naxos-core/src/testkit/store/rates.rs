//! Store checks of rate limits: a burst starts at once, the rest wait QUEUED with their turns
//! booked one interval apart (the claim answers `Deferred` with how long), start on their
//! turns, never early; a lost booked message is published by the stale sweep once its turn is
//! long past; keys count apart.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::Store;
use crate::clock::{after, ManualClock};
use crate::model::{BlockedBy, JobDefinition, TaskBuilder, TaskRef, TaskStatus};
use crate::testkit::fixtures::{claim, claim_request, create_each, run_of, task, unique_id};

/// One task `a` of function `f` under a rate limit, keyed by `key` when given.
fn limited(per_second: f64, burst: u32, key: Option<&str>) -> JobDefinition {
    let mut a = TaskBuilder::new("a", "f").rate_limit(per_second, burst);
    if let Some(key) = key {
        a = a.rate_limit_key(key);
    }
    JobDefinition::builder(unique_id("rated")).task(a).build()
}

/// The claim of `t` is deferred for `wait`, and leaves it QUEUED, waiting for its turn then.
async fn deferred(store: &dyn Store, clock: &ManualClock, t: &TaskRef, wait: Duration) {
    let e = store
        .claim(claim_request(t, "node-b", Duration::from_secs(30)))
        .await
        .expect_err("its turn has not come");
    assert_eq!(e.deferred_for(), Some(wait), "{e}");
    let run = run_of(store, t.execution_id, "a").await;
    assert_eq!(
        (run.status, run.blocked_by, run.due_at),
        (
            TaskStatus::Queued,
            Some(BlockedBy::RateLimit),
            Some(after(clock.now(), wait))
        ),
        "{run:?}"
    );
    assert!(run.rate.is_some() && run.lease.is_none(), "{run:?}");
}

/// 10 a second, burst 2: two claims at once start, the next three are deferred 200, 300 and
/// 400 ms (their turns, one interval apart); an early duplicate keeps its turn; at each turn
/// its run starts. A booked run whose message is lost is published by the stale sweep only
/// once its turn is long past.
pub async fn a_rate_limit_starts_a_burst_then_books_turns(store: Arc<dyn Store>, clock: ManualClock) {
    let def = limited(10.0, 2, None);
    let ids = create_each(&*store, &def, &vec![json!({}); 6]).await;
    let runs: Vec<TaskRef> = ids.iter().map(|&id| task(id, "a", 1)).collect();
    claim(&*store, &runs[0]).await;
    claim(&*store, &runs[1]).await;
    for (k, wait) in [(2, 200), (3, 300), (4, 400)] {
        deferred(&*store, &clock, &runs[k], Duration::from_millis(wait)).await;
    }
    clock.advance(Duration::from_millis(150));
    deferred(&*store, &clock, &runs[2], Duration::from_millis(50)).await;
    let stale = store.take_stale(Duration::from_secs(1), 100).await.expect("take_stale");
    assert!(
        stale.ready.is_empty(),
        "a booked run is not republished: {:?}",
        stale.ready
    );
    clock.advance(Duration::from_millis(50));
    claim(&*store, &runs[2]).await;
    clock.advance(Duration::from_millis(100));
    claim(&*store, &runs[3]).await;
    // The sixth comes after the booked ones, even when a start would fit now.
    deferred(&*store, &clock, &runs[5], Duration::from_millis(200)).await;

    // The fifth's message is lost: long after its turn, the stale sweep publishes it.
    clock.advance(Duration::from_secs(5));
    let stale = store.take_stale(Duration::from_secs(1), 100).await.expect("take_stale");
    assert!(stale.ready.contains(&runs[4]), "{:?}", stale.ready);
    let run = run_of(&*store, ids[4], "a").await;
    assert_eq!((run.status, run.blocked_by), (TaskStatus::Queued, None), "{run:?}");
    claim(&*store, &runs[4]).await;
}

/// A keyed limit counts per key: one a second per tenant, burst 1 — a second run of a tenant
/// waits while another tenant's starts.
pub async fn a_rate_limit_counts_per_key(store: Arc<dyn Store>, clock: ManualClock) {
    let def = limited(1.0, 1, Some("params.tenant"));
    let ids = create_each(
        &*store,
        &def,
        &[json!({"tenant": "x"}), json!({"tenant": "x"}), json!({"tenant": "y"})],
    )
    .await;
    claim(&*store, &task(ids[0], "a", 1)).await;
    deferred(&*store, &clock, &task(ids[1], "a", 1), Duration::from_secs(1)).await;
    claim(&*store, &task(ids[2], "a", 1)).await;
}

/// Turns booked by runs that no longer wait for them are given back: one a second, a run
/// booked a turn and cancelled, five times — each next run gets the same first turn, none
/// being ahead of it — and two seconds later a new run starts at once.
pub async fn cancelled_runs_give_their_turns_back(store: Arc<dyn Store>, clock: ManualClock) {
    let def = limited(1.0, 1, None);
    let ids = create_each(store.as_ref(), &def, &vec![json!({}); 6]).await;
    claim(&*store, &task(ids[0], "a", 1)).await;
    for &id in &ids[1..] {
        deferred(store.as_ref(), &clock, &task(id, "a", 1), Duration::from_secs(1)).await;
        store
            .stop_execution(id, crate::backend::StopReason::Cancelled)
            .await
            .expect("stop");
    }
    clock.advance(Duration::from_secs(2));
    let later = create_each(store.as_ref(), &def, &[json!({})]).await;
    claim(&*store, &task(later[0], "a", 1)).await;
}
