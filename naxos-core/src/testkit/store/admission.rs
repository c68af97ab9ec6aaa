//! Store checks of admission: a paused definition's tasks blocked at their claim, never taken
//! by the stale sweep, and admitted once the definition is resumed.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Store;
use crate::clock::ManualClock;
use crate::model::{BlockedBy, TaskStatus};
use crate::testkit::fixtures::{claim, claim_request, create, diamond, task};

/// Pause: the claim of a QUEUED task blocks it (`Conflict`, the task QUEUED with `blockedBy`),
/// the stale sweep leaves it, nothing is admitted while paused; resume: admitted once, QUEUED
/// anew (published), then claimed. The listing says whether a definition is paused; an unknown
/// definition is `NotFound`.
pub async fn a_paused_definition_blocks_its_claims_until_resumed(store: Arc<dyn Store>, clock: ManualClock) {
    let def = diamond();
    let id = create(&*store, &def, None).await.execution_id;
    store.set_definition_paused(&def.id, true).await.expect("pause");
    let listed = store.list_definitions().await.expect("list");
    assert!(listed.iter().any(|d| d.id == def.id && d.paused), "{listed:?}");

    let a = task(id, "a", 1);
    let refused = store
        .claim(claim_request(&a, "node-a", Duration::from_secs(30)))
        .await
        .expect_err("a paused definition's task is not claimed");
    assert!(refused.is_conflict(), "{refused}");
    let exec = store.get_execution(id).await.expect("get");
    let run = exec.task("a").expect("a");
    assert_eq!(
        (run.status, run.blocked_by),
        (TaskStatus::Queued, Some(BlockedBy::Paused))
    );
    assert!(run.lease.is_none() && run.history.is_empty(), "{run:?}");

    clock.advance(Duration::from_secs(600));
    let stale = store.take_stale(Duration::from_secs(1), 100).await.expect("take_stale");
    assert!(
        stale.ready.is_empty(),
        "a blocked task is never republished: {:?}",
        stale.ready
    );
    let early = store.admit_blocked(100).await.expect("admit_blocked");
    assert!(early.ready.is_empty(), "nothing is admitted while paused");

    store.set_definition_paused(&def.id, false).await.expect("resume");
    let admitted = store.admit_blocked(100).await.expect("admit_blocked");
    assert_eq!(admitted.ready, std::slice::from_ref(&a));
    let again = store.admit_blocked(100).await.expect("admit_blocked");
    assert!(again.ready.is_empty(), "admitted once");
    let exec = store.get_execution(id).await.expect("get");
    let run = exec.task("a").expect("a");
    assert_eq!(
        (run.status, run.blocked_by, run.queued_at),
        (TaskStatus::Queued, None, Some(clock.now()))
    );
    claim(&*store, &a).await;
    assert!(!store.list_definitions().await.expect("list").iter().any(|d| d.paused));

    let unknown = store
        .set_definition_paused("no-such-definition", true)
        .await
        .unwrap_err();
    assert!(unknown.is_not_found(), "{unknown}");
}
