//! Store check of the W3C trace context an execution carries from its submission to its tasks.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{Changes, ExecutionQuery, NewExecution, StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{ExecutionId, TaskRef, TraceParent};
use crate::testkit::fixtures::{claim, claim_request, diamond, done, failed, new_diamond, task};

/// The task references of `id` in `changes` (ready, then delayed), with their trace contexts.
fn traced(changes: &Changes, id: ExecutionId) -> Vec<(String, Option<TraceParent>)> {
    let refs = changes.ready.iter().chain(changes.delayed.iter().map(|(t, _)| t));
    refs.filter(|t| t.execution_id == id)
        .map(|t| (format!("{}#{}", t.task_id, t.attempt), t.traceparent))
        .collect()
}

fn names(refs: &[(String, Option<TraceParent>)]) -> Vec<&str> {
    refs.iter().map(|(name, _)| name.as_str()).collect()
}

/// An execution's trace context is stored with it and read back (alone and in listings),
/// returned by every claim of its tasks, and set on every task reference a transition returns
/// — creation, completion, retry, hand-back, lease recovery, stale take-over, stop. An
/// execution without one has none anywhere.
pub async fn the_trace_context_travels_with_the_execution(store: Arc<dyn Store>, clock: ManualClock) {
    let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let def = diamond();
    let put = store.put_definition(def.clone()).await.unwrap();
    let mut new = NewExecution::new(&put.definition, json!({"n": 1}));
    new.traceparent = Some(tp);
    let created = store.create_execution(new).await.unwrap();
    let id = created.execution_id;
    assert_eq!(traced(&created.changes, id), [("a#1".to_string(), Some(tp))]);
    assert_eq!(store.get_execution(id).await.unwrap().traceparent, Some(tp));
    let query = ExecutionQuery {
        definition_id: Some(def.id.clone()),
        ..ExecutionQuery::default()
    };
    let listed = store.list_executions(&query).await.unwrap();
    assert_eq!(listed.executions[0].traceparent, Some(tp), "listings carry it too");

    let every_one_traced = |refs: &[(String, Option<TraceParent>)], what: &str| {
        assert!(!refs.is_empty(), "{what}: no task reference");
        for (name, carried) in refs {
            assert_eq!(*carried, Some(tp), "{what}: {name}");
        }
    };
    let a = task(id, "a", 1);
    assert_eq!(claim(&*store, &a).await.traceparent, Some(tp), "the claim returns it");
    let report = store.finish(vec![done(&a, json!(1))]).await.unwrap();
    let unlocked = traced(&report.changes, id);
    assert_eq!(names(&unlocked), ["b#1", "c#1"]);
    every_one_traced(&unlocked, "completion");

    let b = task(id, "b", 1);
    assert_eq!(claim(&*store, &b).await.traceparent, Some(tp));
    let retry = store
        .finish(vec![failed(&b, "once more", Some(Duration::from_secs(5)))])
        .await
        .unwrap();
    let delayed = traced(&retry.changes, id);
    assert_eq!(names(&delayed), ["b#2"]);
    every_one_traced(&delayed, "retryable failure");

    let c = task(id, "c", 1);
    claim(&*store, &c).await;
    let released = traced(&store.release(&c).await.unwrap(), id);
    assert_eq!(names(&released), ["c#2"]);
    every_one_traced(&released, "hand-back");

    let c2 = task(id, "c", 2);
    let lease = Duration::from_secs(2);
    let claimed = store.claim(claim_request(&c2, "dead-node", lease)).await.unwrap();
    assert_eq!(claimed.traceparent, Some(tp));
    clock.advance(Duration::from_secs(10));
    let recovered = traced(&store.recover_expired(3, 100).await.unwrap(), id);
    assert_eq!(names(&recovered), ["c#3"]);
    every_one_traced(&recovered, "lease recovery");

    clock.advance(Duration::from_secs(5));
    let stale = traced(&store.take_stale(Duration::from_secs(1), 100).await.unwrap(), id);
    assert_eq!(names(&stale), ["b#2", "c#3"]);
    every_one_traced(&stale, "stale take-over");

    claim(&*store, &task(id, "b", 2)).await;
    let stopped = store.stop_execution(id, StopReason::Cancelled).await.unwrap();
    let running: Vec<&TaskRef> = stopped.running.iter().filter(|t| t.execution_id == id).collect();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].traceparent, Some(tp), "the running tasks of a stop");
    assert_eq!(store.get_execution(id).await.unwrap().traceparent, Some(tp));

    let plain = new_diamond(&*store).await;
    assert_eq!(store.get_execution(plain).await.unwrap().traceparent, None);
    let a = task(plain, "a", 1);
    assert_eq!(claim(&*store, &a).await.traceparent, None);
    let report = store.finish(vec![done(&a, json!(1))]).await.unwrap();
    let unlocked = traced(&report.changes, plain);
    assert_eq!(names(&unlocked), ["b#1", "c#1"]);
    assert!(unlocked.iter().all(|(_, t)| t.is_none()), "{unlocked:?}");
}
