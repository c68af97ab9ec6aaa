//! Batch submission in the engine (`execute_many`, `submit_many`), on the in-memory store and
//! queue: every item runs with its own params and the answers come in order; a bad item, an
//! empty or oversized batch, an unknown definition refuse the whole batch and create nothing;
//! admission takes or refuses a batch whole; idempotency keys deduplicate items; requests of
//! several definitions and versions go in one batch.

mod common;

use std::time::Duration;

use common::{diamond, engine};
use naxos_core::backend::ExecutionQuery;
use naxos_core::model::{ExecutionStatus, JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EngineConfig, Error, ExecuteRequest, MAX_BATCH};

/// A started engine with the diamond `d` of a function that returns its params' `n`.
async fn started() -> Engine {
    let engine = engine();
    engine.register("n", |ctx| async move { Ok(json!(ctx.param::<u64>("n"))) });
    engine.register_definition(diamond("d", "n")).await.unwrap();
    engine.start().unwrap();
    engine
}

async fn executions_of(engine: &Engine, definition: &str) -> usize {
    let query = ExecutionQuery {
        definition_id: Some(definition.into()),
        ..Default::default()
    };
    engine.executions(&query).await.unwrap().executions.len()
}

#[tokio::test]
async fn every_item_runs_with_its_params_and_the_answers_keep_the_order() {
    let engine = started().await;
    let submitted = engine
        .execute_many("d", (0..200).map(|n| json!({ "n": n })))
        .await
        .unwrap();
    assert_eq!(submitted.len(), 200);
    for (n, s) in submitted.iter().enumerate() {
        assert!(s.created);
        let done = engine
            .wait_for_timeout(s.execution_id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert_eq!(
            done.task("d").unwrap().output,
            Some(json!(n)),
            "item {n} ran with its params"
        );
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn a_bad_batch_is_refused_whole_and_creates_nothing() {
    let engine = started().await;
    let bad = engine
        .execute_many("d", [json!({ "n": 1 }), json!({ "n": 2 }), json!([3])])
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, Error::InvalidInput(m) if m.starts_with("item 2: params must be a JSON object")),
        "{bad}"
    );
    let requests = vec![
        ExecuteRequest::new("d", json!({})),
        ExecuteRequest::new("d", json!({})).idempotency_key(""),
    ];
    let bad = engine.submit_many(requests).await.unwrap_err();
    assert!(
        matches!(&bad, Error::InvalidInput(m) if m.starts_with("item 1: the idempotency key")),
        "{bad}"
    );
    for n in [0, MAX_BATCH + 1] {
        let bad = engine.execute_many("d", vec![json!({}); n]).await.unwrap_err();
        assert!(
            matches!(&bad, Error::InvalidInput(m) if m.contains(&format!("1 to {MAX_BATCH} executions, not {n}"))),
            "{bad}"
        );
    }
    let unknown = engine.execute_many("nope", [json!({})]).await.unwrap_err();
    assert!(unknown.is_not_found(), "{unknown}");
    let pinned = vec![
        ExecuteRequest::new("d", json!({})),
        ExecuteRequest::new("d", json!({})).version(2),
    ];
    assert!(engine.submit_many(pinned).await.unwrap_err().is_not_found());
    assert_eq!(
        executions_of(&engine, "d").await,
        0,
        "nothing of a refused batch exists"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn admission_takes_or_refuses_a_batch_whole() {
    let engine = Engine::builder()
        .config(EngineConfig {
            workers: false,
            max_pending_executions: Some(5),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    engine.register("f", |_ctx| async move { Ok(json!(1)) });
    let def = JobDefinition::builder("held").task(TaskBuilder::new("a", "f")).build();
    engine.register_definition(def).await.unwrap();
    let refused = engine.execute_many("held", vec![json!({}); 6]).await.unwrap_err();
    let Error::Overloaded { message, .. } = &refused else {
        panic!("not refused as overloaded: {refused}");
    };
    assert!(message.contains("this batch adds 6"), "{message}");
    assert_eq!(executions_of(&engine, "held").await, 0);
    assert_eq!(engine.execute_many("held", vec![json!({}); 5]).await.unwrap().len(), 5);
    assert!(matches!(
        engine.execute("held", json!({})).await,
        Err(Error::Overloaded { .. })
    ));
}

#[tokio::test]
async fn keys_deduplicate_items_and_one_batch_holds_several_definitions() {
    let engine = started().await;
    let single = JobDefinition::builder("one").task(TaskBuilder::new("a", "n")).build();
    engine.register_definition(single.clone()).await.unwrap();
    let mut changed = single;
    changed.name = "One, second version".into();
    engine.register_definition(changed).await.unwrap();
    let requests = || {
        vec![
            ExecuteRequest::new("d", json!({ "n": 1 })).idempotency_key("k-1"),
            ExecuteRequest::new("one", json!({ "n": 2 })).idempotency_key("k-1"),
            ExecuteRequest::new("one", json!({ "n": 3 })).version(1),
            ExecuteRequest::new("d", json!({ "n": 4 })).idempotency_key("k-1"),
        ]
    };
    let first = engine.submit_many(requests()).await.unwrap();
    let created: Vec<bool> = first.iter().map(|s| s.created).collect();
    assert_eq!(created, [true, true, true, false], "a key is per definition");
    assert_eq!(first[3].execution_id, first[0].execution_id);
    let versions: Vec<u32> = versions_of(&engine, &first).await;
    assert_eq!(versions, [1, 2, 1, 1], "the latest unless pinned");
    let again = engine.submit_many(requests()).await.unwrap();
    let created: Vec<bool> = again.iter().map(|s| s.created).collect();
    assert_eq!(
        created,
        [false, false, true, false],
        "keyed items are not created twice"
    );
    assert_eq!(again[0].execution_id, first[0].execution_id);
    assert_eq!(again[1].execution_id, first[1].execution_id);
    engine.shutdown().await;
}

/// The definition version of each submitted execution.
async fn versions_of(engine: &Engine, submitted: &[naxos_core::Submitted]) -> Vec<u32> {
    let mut versions = Vec::new();
    for s in submitted {
        versions.push(engine.execution(s.execution_id).await.unwrap().definition_version);
    }
    versions
}
