//! Store checks of batch creation ([`Store::create_executions`]): each item created as one
//! creation would be, in order, deduplicated by idempotency key within and across batches; on
//! a durable Store, a failed batch creates nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{ExecutionQuery, NewExecution, Store};
use crate::clock::ManualClock;
use crate::model::{Delay, ExecutionStatus, JobDefinition, Priority, StoredDefinition, TaskBuilder, TaskStatus};
use crate::testkit::fixtures::{claim, diamond, done, task, unique_id};

/// Six items: a key an earlier creation used (its execution returned), a new key twice (one
/// execution, returned for both), one without a key, one delayed, one at priority 5. Each
/// created one has its own params and its roots queued (the delayed one none), can be claimed
/// and finished, and is listed.
pub async fn a_batch_creates_each_in_order_and_dedups_by_key(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = store
        .put_definition(diamond())
        .await
        .expect("put_definition")
        .definition;
    let item = |n: i32, key: Option<&str>| {
        let mut new = NewExecution::new(&def, json!({ "n": n }));
        new.idempotency_key = key.map(str::to_string);
        new
    };
    let earlier = store
        .create_execution(item(0, Some("k-0")))
        .await
        .expect("create")
        .execution_id;
    let mut delayed = item(4, None);
    delayed.delay = Some(Delay::For(Duration::from_secs(60)));
    let mut urgent = item(5, None);
    urgent.priority = Priority::new(5).expect("a priority");
    let batch = vec![
        item(0, Some("k-0")),
        item(1, Some("k-1")),
        item(2, Some("k-1")),
        item(3, None),
        delayed,
        urgent,
    ];
    let asked: Vec<_> = batch.iter().map(|e| e.id).collect();
    let created = store.create_executions(batch).await.expect("create_executions");
    assert_eq!(created.len(), 6, "one answer per item");
    let flags: Vec<bool> = created.iter().map(|c| c.created).collect();
    assert_eq!(flags, [false, true, false, true, true, true]);
    assert_eq!(
        created[0].execution_id, earlier,
        "a used key returns the earlier execution"
    );
    assert_eq!(
        created[2].execution_id, asked[1],
        "a key repeated in the batch returns its first item's"
    );
    for i in [1, 3, 4, 5] {
        assert_eq!(created[i].execution_id, asked[i], "item {i} keeps its id");
        assert_eq!(created[i].status, ExecutionStatus::Pending);
    }
    assert!(created[0].changes.is_empty() && created[2].changes.is_empty());
    for i in [1, 3, 5] {
        let id = asked[i];
        assert_eq!(
            created[i].changes.ready,
            vec![task(id, "a", 1)],
            "item {i}'s root is ready"
        );
        let execution = store.get_execution(id).await.expect("get_execution");
        assert_eq!(execution.data, json!({ "n": i }), "item {i}'s params");
        assert_eq!(execution.task("a").map(|t| t.status), Some(TaskStatus::Queued));
        assert_eq!(execution.task("d").map(|t| t.remaining_dependencies), Some(2));
    }
    assert!(created[4].changes.ready.is_empty(), "the delayed item queues nothing");
    assert_eq!(
        created[4].changes.scheduled.len(),
        1,
        "the delayed item waits for its time"
    );
    let delayed = store.get_execution(asked[4]).await.expect("get_execution");
    assert!(delayed.scheduled_for.is_some());
    assert_eq!(delayed.task("a").map(|t| t.status), Some(TaskStatus::Pending));
    let urgent = store.get_execution(asked[5]).await.expect("get_execution");
    assert_eq!(urgent.priority.get(), 5);
    // The rows a batch wrote run like any other.
    let a = task(asked[3], "a", 1);
    claim(&*store, &a).await;
    let report = store.finish(vec![done(&a, json!(1))]).await.expect("finish");
    assert_eq!(report.changes.ready.len(), 2, "b and c follow a");
    assert_eq!(
        listed(&*store, &def).await,
        5,
        "the earlier one and the four the batch created"
    );
}

/// For a Store that creates a batch in one transaction (not part of the generic suite, which
/// the one-by-one default passes too): a batch whose third item the Store refuses (a delay
/// beyond the longest) fails whole, and none of its items exists, nor any key it carried.
pub async fn a_failed_batch_creates_nothing(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = store
        .put_definition(diamond())
        .await
        .expect("put_definition")
        .definition;
    let mut batch = keyed(&def, 4);
    batch[2].delay = Some(Delay::For(Delay::MAX + Duration::from_secs(1)));
    let ids: Vec<_> = batch.iter().map(|e| e.id).collect();
    let refused = store
        .create_executions(batch)
        .await
        .expect_err("a delay beyond the longest");
    assert!(matches!(refused, crate::Error::InvalidInput(_)), "{refused}");
    for id in ids {
        assert!(store.get_execution(id).await.expect_err("not created").is_not_found());
    }
    assert_eq!(listed(&*store, &def).await, 0, "nothing of a failed batch is left");
    // The keys are free: the same batch, repaired, creates every item.
    let again = keyed(&def, 4);
    let created = store.create_executions(again).await.expect("create_executions");
    assert!(created.iter().all(|c| c.created));
}

/// A batch whose items start sub-jobs at their creation (a root `subJob`) creates each item's
/// child with it, linked to its parent task, beside a plain item.
pub async fn a_batch_starts_the_sub_jobs_of_its_roots(store: Arc<dyn Store>, _clock: ManualClock) {
    let child = JobDefinition::builder(unique_id("child"))
        .task(TaskBuilder::new("c", "f"))
        .build();
    let parent = JobDefinition::builder(unique_id("parent"))
        .task(TaskBuilder::sub_job("call", child.id.clone()))
        .build();
    store.put_definition(child).await.expect("put child");
    let parent = store.put_definition(parent).await.expect("put parent").definition;
    let plain = store
        .put_definition(diamond())
        .await
        .expect("put_definition")
        .definition;
    let batch = vec![
        NewExecution::new(&parent, json!({})),
        NewExecution::new(&plain, json!({})),
        NewExecution::new(&parent, json!({})),
    ];
    let created = store.create_executions(batch).await.expect("create_executions");
    assert!(created.iter().all(|c| c.created));
    for i in [0, 2] {
        let execution = store
            .get_execution(created[i].execution_id)
            .await
            .expect("get_execution");
        let call = execution.task("call").expect("call");
        assert_eq!(call.status, TaskStatus::Running, "item {i}: the sub-job started");
        let child = call.plan.child.expect("the task names its child");
        let child = store.get_execution(child).await.expect("the child exists");
        assert_eq!(
            child.parent.as_ref().map(|p| p.execution_id),
            Some(created[i].execution_id)
        );
        assert_eq!(child.task("c").map(|t| t.status), Some(TaskStatus::Queued));
    }
    let root = task(created[1].execution_id, "a", 1);
    assert!(
        created[1].changes.ready.contains(&root),
        "the plain item's root is ready"
    );
}

/// `n` executions of `def`, item i with params `{"n": i}` and idempotency key `k-<i>`.
fn keyed(def: &StoredDefinition, n: i32) -> Vec<NewExecution> {
    (0..n)
        .map(|i| {
            let mut new = NewExecution::new(def, json!({ "n": i }));
            new.idempotency_key = Some(format!("k-{i}"));
            new
        })
        .collect()
}

/// How many executions of `def` the store lists.
async fn listed(store: &dyn Store, def: &StoredDefinition) -> usize {
    let query = ExecutionQuery {
        definition_id: Some(def.definition.id.clone()),
        ..Default::default()
    };
    store
        .list_executions(&query)
        .await
        .expect("list_executions")
        .executions
        .len()
}
