//! Store checks of delayed executions (`delayMs`, `runAt`): PENDING with nothing to claim until
//! their time, started then exactly once (by `start_delayed` or `wake_due`) with the timeout
//! counted from that start, never started once cancelled, refused beyond the longest delay.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{Created, ExecutionQuery, NewExecution, StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{Delay, ExecutionId, ExecutionStatus, JobDefinition, StoredDefinition, TaskBuilder, TaskStatus};
use crate::testkit::fixtures::{claim_request, described, run_ok, secs, task, unique_id};
use crate::Error;

/// `a → b`, with a 10 s job timeout.
async fn chain(store: &dyn Store) -> Arc<StoredDefinition> {
    let mut def = JobDefinition::builder(unique_id("delayed"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]))
        .build();
    def.timeout_ms = Some(10_000);
    store.put_definition(def).await.expect("put_definition").definition
}

/// Creates an execution of `def` with `delay` (and `key`, if given).
async fn create(store: &dyn Store, def: &Arc<StoredDefinition>, delay: Delay, key: Option<&str>) -> Created {
    let mut new = NewExecution::new(def, json!({}));
    new.delay = Some(delay);
    new.idempotency_key = key.map(str::to_string);
    store.create_execution(new).await.expect("create_execution")
}

/// Asserts that claiming the root `a` of `id` at attempt 1 is refused with `Conflict`.
async fn nothing_to_claim(store: &dyn Store, id: ExecutionId) {
    let lease = Duration::from_secs(30);
    let refused = store
        .claim(claim_request(&task(id, "a", 1), "node-a", lease))
        .await
        .expect_err("a delayed execution has nothing to claim");
    assert!(refused.is_conflict(), "{refused}");
}

/// Delayed 60 s: created PENDING with `scheduled_for`, every task PENDING and listed nowhere —
/// nothing to claim, take over or wake, not overdue even past its time plus its timeout (it has
/// not started), not startable early. At its time `start_delayed` queues the root once; its
/// deadline is its 10 s timeout from that start; it then runs to its end. An idempotency key
/// returns it as usual.
pub async fn a_delayed_execution_starts_at_its_time_once(store: Arc<dyn Store>, clock: ManualClock) {
    let def = chain(&*store).await;
    let t0 = clock.now();
    let key = unique_id("key");
    let created = create(&*store, &def, Delay::For(Duration::from_secs(60)), Some(&key)).await;
    let id = created.execution_id;
    assert_eq!(created.status, ExecutionStatus::Pending);
    assert_eq!(
        described(&created.changes, t0),
        ["execution PENDING", "scheduled for +60s"],
        "no task queued: only the execution's time, for a timer"
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        (exec.status, exec.scheduled_for, exec.start_time, exec.deadline),
        (ExecutionStatus::Pending, Some(t0 + secs(60)), None, Some(t0 + secs(70)))
    );
    assert!(exec.summary.is_delayed());
    assert!(exec.tasks.iter().all(|t| t.status == TaskStatus::Pending));
    let again = create(&*store, &def, Delay::For(Duration::from_secs(60)), Some(&key)).await;
    assert_eq!(
        (again.execution_id, again.created, again.status),
        (id, false, ExecutionStatus::Pending)
    );
    assert!(again.changes.is_empty());

    clock.advance(Duration::from_secs(30));
    nothing_to_claim(&*store, id).await;
    assert!(store.take_stale(Duration::ZERO, 100).await.unwrap().is_empty());
    assert!(store.wake_due(100).await.unwrap().is_empty(), "not due yet");
    let early = store.start_delayed(id).await.expect_err("not due yet");
    assert!(early.is_conflict(), "{early}");

    // Every node was down past its time and its timeout: it has not started, so it is not late.
    clock.advance(Duration::from_secs(45));
    assert!(!store.overdue_executions(100).await.unwrap().contains(&id));
    let started = store.start_delayed(id).await.unwrap();
    assert_eq!(described(&started, clock.now()), ["task a#1 QUEUED", "ready a#1"]);
    let twice = store.start_delayed(id).await.expect_err("started already");
    assert!(twice.is_conflict(), "{twice}");
    assert!(store.wake_due(100).await.unwrap().is_empty(), "started once");
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(
        (exec.status, exec.start_time, exec.deadline, exec.scheduled_for),
        (
            ExecutionStatus::Pending,
            Some(clock.now()),
            Some(clock.now() + secs(10)),
            Some(t0 + secs(60))
        ),
        "started now, its timeout counted from now, its time kept"
    );
    assert!(!exec.summary.is_delayed());
    assert!(!store.overdue_executions(100).await.unwrap().contains(&id));
    run_ok(&*store, id, "a").await;
    run_ok(&*store, id, "b").await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Completed);
    assert_eq!(exec.task("a").unwrap().attempts, 1);
}

/// The sweepers' path: `wake_due` starts each delayed execution whose time has come (`delayMs`
/// and `runAt` alike), one per unit of its limit, once; a `runAt` already past starts at once.
pub async fn wake_due_starts_due_delayed_executions_once(store: Arc<dyn Store>, clock: ManualClock) {
    let def = chain(&*store).await;
    let t0 = clock.now();
    let past = create(&*store, &def, Delay::Until(t0 - secs(5)), None).await;
    assert_eq!(
        described(&past.changes, t0),
        ["execution PENDING", "task a#1 QUEUED", "ready a#1"],
        "a time already past starts it at once"
    );
    let exec = store.get_execution(past.execution_id).await.unwrap();
    assert_eq!(exec.scheduled_for, None);
    assert!(!exec.summary.is_delayed());

    let first = create(&*store, &def, Delay::For(Duration::from_secs(10)), None)
        .await
        .execution_id;
    let second = create(&*store, &def, Delay::Until(t0 + secs(10)), None)
        .await
        .execution_id;
    let later = create(&*store, &def, Delay::Until(t0 + secs(20)), None)
        .await
        .execution_id;
    clock.advance(Duration::from_secs(10));
    let one = store.wake_due(1).await.unwrap();
    assert_eq!(
        described(&one, clock.now()),
        ["task a#1 QUEUED", "ready a#1"],
        "its limit: one"
    );
    let other = store.wake_due(100).await.unwrap();
    assert_eq!(described(&other, clock.now()), ["task a#1 QUEUED", "ready a#1"]);
    let mut started: Vec<ExecutionId> = [one, other].iter().map(|c| c.ready[0].execution_id).collect();
    started.sort();
    let mut due = vec![first, second];
    due.sort();
    assert_eq!(started, due, "both due, each started once");
    assert!(store.wake_due(100).await.unwrap().is_empty());
    assert!(store.get_execution(later).await.unwrap().summary.is_delayed());
    clock.advance(Duration::from_secs(10));
    let last = store.wake_due(100).await.unwrap();
    assert_eq!(last.ready, [task(later, "a", 1)]);
    assert!(store.wake_due(100).await.unwrap().is_empty());
}

/// Cancelled before its time: CANCELLED with every task CANCELLED and none run; past its time
/// nothing starts it (`wake_due`, `start_delayed`) and nothing can be claimed.
pub async fn a_delayed_execution_cancelled_before_its_time_never_starts(store: Arc<dyn Store>, clock: ManualClock) {
    let def = chain(&*store).await;
    let id = create(&*store, &def, Delay::For(Duration::from_secs(60)), None)
        .await
        .execution_id;
    let stopped = store.stop_execution(id, StopReason::Cancelled).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Cancelled);
    assert!(stopped.running.is_empty());
    clock.advance(Duration::from_secs(120));
    assert!(
        store.wake_due(100).await.unwrap().is_empty(),
        "a cancelled one never starts"
    );
    let refused = store.start_delayed(id).await.expect_err("cancelled");
    assert!(refused.is_conflict(), "{refused}");
    nothing_to_claim(&*store, id).await;
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Cancelled);
    assert!(exec
        .tasks
        .iter()
        .all(|t| t.status == TaskStatus::Cancelled && t.attempts == 0 && t.history.is_empty()));
    assert!(exec.scheduled_for.is_some(), "its time is kept");
    assert_eq!(exec.start_time, None, "it never started");
}

/// A delay beyond [`Delay::MAX`] is `InvalidInput` naming its parameter (`delayMs`, `runAt`),
/// and creates nothing; the longest delay is taken.
pub async fn a_delay_too_far_ahead_is_refused(store: Arc<dyn Store>, clock: ManualClock) {
    let def = chain(&*store).await;
    let far = [
        Delay::For(Delay::MAX + Duration::from_millis(1)),
        Delay::Until(crate::clock::after(clock.now(), Delay::MAX) + secs(1)),
    ];
    for delay in far {
        let mut new = NewExecution::new(&def, json!({}));
        new.delay = Some(delay);
        let refused = store.create_execution(new).await.expect_err("too far ahead");
        assert!(
            matches!(&refused, Error::InvalidInput(m) if m.starts_with(delay.parameter())),
            "{refused}"
        );
    }
    let query = ExecutionQuery {
        definition_id: Some(def.definition.id.clone()),
        ..ExecutionQuery::default()
    };
    assert!(store.list_executions(&query).await.unwrap().executions.is_empty());
    let longest = create(&*store, &def, Delay::For(Delay::MAX), None).await;
    assert!(longest.created);
    let exec = store.get_execution(longest.execution_id).await.unwrap();
    assert_eq!(exec.scheduled_for, Some(crate::clock::after(clock.now(), Delay::MAX)));
}
