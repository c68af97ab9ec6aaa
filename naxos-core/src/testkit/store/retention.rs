//! Store checks of retention: a definition keeps its own, and pruning follows it, else the
//! server's default, by end state, in batches no larger than asked.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{ExecutionId, ExecutionStatus, JobDefinition, Retention, RetentionDefaults, TaskBuilder};
use crate::testkit::fixtures::{claim, create, done, failed, task, unique_id};

/// A one-task job under a fresh id, with `retention` if given.
fn job(retention: Option<Retention>) -> JobDefinition {
    let mut builder = JobDefinition::builder(unique_id("kept")).task(TaskBuilder::new("only", "f"));
    if let Some(r) = retention {
        builder = builder.retention(r);
    }
    builder.build()
}

/// Creates an execution of `def` and ends it in `status` (now, by the store's clock).
async fn ended(store: &dyn Store, def: &JobDefinition, status: ExecutionStatus) -> ExecutionId {
    let id = create(store, def, None).await.execution_id;
    let only = task(id, "only", 1);
    match status {
        ExecutionStatus::Completed => {
            claim(store, &only).await;
            store.finish(vec![done(&only, json!(1))]).await.unwrap();
        }
        ExecutionStatus::Failed => {
            claim(store, &only).await;
            store.finish(vec![failed(&only, "boom", None)]).await.unwrap();
        }
        ExecutionStatus::Cancelled => {
            store.stop_execution(id, StopReason::Cancelled).await.unwrap();
        }
        other => panic!("not an end state: {other}"),
    }
    let summary = store.get_execution(id).await.unwrap().summary;
    assert_eq!(summary.status, status);
    id
}

/// Prunes in batches until a batch finds nothing; returns how many in all.
async fn prune_all(store: &dyn Store, defaults: RetentionDefaults) -> u64 {
    let mut total = 0;
    loop {
        let n = store.prune(defaults, 1_000).await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// The ones of `ids` still in the store, by label.
async fn kept(store: &dyn Store, ids: &[(&'static str, ExecutionId)]) -> Vec<&'static str> {
    let mut kept = Vec::new();
    for (label, id) in ids {
        match store.get_execution(*id).await {
            Ok(_) => kept.push(*label),
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("get {label}: {e}"),
        }
    }
    kept
}

/// A definition's `retention` is part of its content: stored with its version, read back from
/// every read, and a changed retention is a new version.
pub async fn a_definition_keeps_its_retention(store: Arc<dyn Store>, _clock: ManualClock) {
    let retention = Retention {
        completed_ms: Some(60_000),
        failed_ms: None,
    };
    let mut def = job(Some(retention));
    let first = store.put_definition(def.clone()).await.unwrap();
    assert_eq!(first.definition.definition.retention, Some(retention));
    let latest = store.get_definition(&def.id, None).await.unwrap();
    assert_eq!(latest.definition, def, "the retention is read back");
    assert!(!store.put_definition(def.clone()).await.unwrap().created);
    def.retention = Some(Retention {
        completed_ms: Some(60_000),
        failed_ms: Some(5_000),
    });
    let second = store.put_definition(def.clone()).await.unwrap();
    assert!(second.created, "a changed retention is a new version");
    let versions = store.definition_versions(&def.id).await.unwrap();
    let read: Vec<_> = versions.iter().map(|v| v.definition.retention).collect();
    assert_eq!(read, vec![Some(retention), def.retention]);
}

/// Each finished execution is pruned once its end time is older than its definition's
/// retention for its end state, else the default for that state; CANCELLED follows the
/// failed period; unfinished executions stay.
pub async fn pruning_follows_the_definition_then_the_default_by_end_state(store: Arc<dyn Store>, clock: ManualClock) {
    let defaults = RetentionDefaults {
        completed: Duration::from_secs(100),
        failed: Duration::from_secs(1_000),
    };
    // Its own completed period (shorter than the default), the failed one left to the default.
    let own = job(Some(Retention {
        completed_ms: Some(10_000),
        failed_ms: None,
    }));
    // Both its own: completed longer than the default, failed shorter.
    let both = job(Some(Retention::new(
        Duration::from_secs(2_000),
        Duration::from_secs(20),
    )));
    let plain = job(None);
    use ExecutionStatus::{Cancelled, Completed, Failed};
    let ids = [
        ("own completed", ended(&*store, &own, Completed).await),
        ("own failed", ended(&*store, &own, Failed).await),
        ("own cancelled", ended(&*store, &own, Cancelled).await),
        ("both completed", ended(&*store, &both, Completed).await),
        ("both failed", ended(&*store, &both, Failed).await),
        ("both cancelled", ended(&*store, &both, Cancelled).await),
        ("plain completed", ended(&*store, &plain, Completed).await),
        ("plain failed", ended(&*store, &plain, Failed).await),
        ("plain cancelled", ended(&*store, &plain, Cancelled).await),
        ("plain running", create(&*store, &plain, None).await.execution_id),
    ];
    let all: Vec<_> = ids.iter().map(|(label, _)| *label).collect();
    let mut gone = 0;
    // (seconds after they ended, what is pruned by then)
    let steps: [(u64, &[&str]); 8] = [
        (9, &[]),
        (11, &["own completed"]),
        (19, &[]),
        (21, &["both failed", "both cancelled"]),
        (99, &[]),
        (101, &["plain completed"]),
        (
            1_001,
            &["own failed", "own cancelled", "plain failed", "plain cancelled"],
        ),
        (2_001, &["both completed"]),
    ];
    let mut elapsed = 0;
    let mut expected = all.clone();
    for (at, pruned) in steps {
        clock.advance(Duration::from_secs(at - elapsed));
        elapsed = at;
        gone += pruned.len() as u64;
        expected.retain(|label| !pruned.contains(label));
        let n = prune_all(&*store, defaults).await;
        assert_eq!(n, pruned.len() as u64, "{at} s after: pruned {n}, expected {pruned:?}");
        assert_eq!(kept(&*store, &ids).await, expected, "{at} s after they ended");
    }
    assert_eq!(gone, 9);
    assert_eq!(expected, ["plain running"], "an unfinished execution is never pruned");
}

/// One prune deletes at most `limit` executions, across definitions and classes; the next
/// ones take the rest.
pub async fn a_prune_deletes_at_most_its_limit(store: Arc<dyn Store>, clock: ManualClock) {
    let own = job(Some(Retention {
        completed_ms: Some(1_000),
        failed_ms: Some(1_000),
    }));
    let plain = job(None);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(ended(&*store, &own, ExecutionStatus::Completed).await);
    }
    ids.push(ended(&*store, &own, ExecutionStatus::Failed).await);
    for status in [
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
    ] {
        ids.push(ended(&*store, &plain, status).await);
    }
    clock.advance(Duration::from_secs(2));
    let defaults = RetentionDefaults::uniform(Duration::from_secs(1));
    let mut batches = Vec::new();
    loop {
        let n = store.prune(defaults, 3).await.unwrap();
        batches.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(batches, [3, 3, 2, 0]);
    for id in ids {
        assert!(store.get_execution(id).await.unwrap_err().is_not_found());
    }
}

/// An execution made RUNNING again by a retry is not pruned however long ago it first ended;
/// once it ends again, its retention counts from the new end.
pub async fn a_retried_execution_counts_from_its_new_end(store: Arc<dyn Store>, clock: ManualClock) {
    let def = job(Some(Retention {
        completed_ms: Some(10_000),
        failed_ms: Some(10_000),
    }));
    let defaults = RetentionDefaults::uniform(Duration::from_secs(10));
    let id = ended(&*store, &def, ExecutionStatus::Failed).await;
    clock.advance(Duration::from_secs(20));
    store.retry_execution(id).await.unwrap();
    assert_eq!(prune_all(&*store, defaults).await, 0, "running again: kept");
    let again = task(id, "only", 2);
    claim(&*store, &again).await;
    store.finish(vec![done(&again, json!(2))]).await.unwrap();
    clock.advance(Duration::from_secs(9));
    assert_eq!(prune_all(&*store, defaults).await, 0, "9 s after its new end: kept");
    assert!(store.get_execution(id).await.is_ok());
    clock.advance(Duration::from_secs(2));
    assert_eq!(prune_all(&*store, defaults).await, 1);
    assert!(store.get_execution(id).await.unwrap_err().is_not_found());
}
