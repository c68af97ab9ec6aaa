//! Task plans on PostgreSQL: stored with the execution (migration 0006), and the hand-written
//! hot paths (the one-statement claim and settle) kept to plain executions — an execution with a
//! `when` or a trigger goes through the state module.

mod common;

use naxos_core::backend::{NewExecution, Store, TaskFinish, TaskOutcome};
use naxos_core::model::{JobDefinition, TaskBuilder, TaskRef, TaskStatus, Trigger};
use naxos_core::serde_json::{json, Value};
use naxos_core::state::rules;
use naxos_core::testkit::unique_id;
use naxos_postgres::{sqlx, PgStore};

async fn create(store: &PgStore, def: JobDefinition) -> naxos_core::ExecutionId {
    let put = store.put_definition(def).await.unwrap();
    store
        .create_execution(NewExecution::new(&put.definition, json!({"x": 2})))
        .await
        .unwrap()
        .execution_id
}

async fn plain(store: &PgStore, id: naxos_core::ExecutionId) -> bool {
    sqlx::query_scalar("SELECT plain FROM naxos_executions WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn plan_column(store: &PgStore, id: naxos_core::ExecutionId, task: &str) -> Option<Value> {
    sqlx::query_scalar("SELECT plan FROM naxos_tasks WHERE execution_id = $1 AND task_id = $2")
        .bind(id)
        .bind(task)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_stored_and_only_plain_executions_take_the_hot_paths() {
    let Some(store) = common::store().await else { return };
    let plain_def = JobDefinition::builder(unique_id("plain"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]))
        .build();
    let plain_id = create(&store, plain_def).await;
    assert!(
        plain(&store, plain_id).await,
        "no task has a plan: the hot paths serve it"
    );
    assert_eq!(plan_column(&store, plain_id, "b").await, None);

    let branch = JobDefinition::builder(unique_id("branch"))
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]).when("params.x > 5"))
        .task(TaskBuilder::new("join", "f").after(["b"]).trigger(Trigger::NoneFailed))
        .build();
    let id = create(&store, branch).await;
    assert!(!plain(&store, id).await, "tasks with plans: the state module serves it");
    assert_eq!(plan_column(&store, id, "a").await, None);
    assert_eq!(
        plan_column(&store, id, "b").await,
        Some(json!({"when": "params.x > 5"}))
    );
    assert_eq!(
        plan_column(&store, id, "join").await,
        Some(json!({"trigger": "noneFailed"}))
    );
    let read = store.get_execution(id).await.unwrap();
    assert_eq!(read.task("b").unwrap().plan.when.as_deref(), Some("params.x > 5"));
    assert_eq!(read.task("join").unwrap().plan.trigger, Trigger::NoneFailed);

    // The completion of `a` would make `b` QUEUED in the one-statement settle (its fan-in count
    // reaches zero); the state module evaluates its condition and skips it instead.
    let a = TaskRef::new(id, "a", 1);
    let claimed = store
        .claim(naxos_core::backend::ClaimRequest {
            task: a.clone(),
            owner: "node".into(),
            lease: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(claimed.attempts, 1);
    let report = store
        .finish(vec![TaskFinish {
            task: a,
            outcome: TaskOutcome::Completed(json!(1)),
        }])
        .await
        .unwrap();
    assert!(report.results[0].is_ok());
    assert_eq!(
        report.changes.ready,
        vec![TaskRef::new(id, "join", 1)],
        "b is skipped, the noneFailed join queued"
    );
    let exec = store.get_execution(id).await.unwrap();
    let b = exec.task("b").unwrap();
    assert_eq!(
        (b.status, b.error.as_deref()),
        (TaskStatus::Skipped, Some(rules::CONDITION_FALSE))
    );
}
