//! Engine settings: what depends on the lease is derived from it, and settings the engine
//! cannot run with are refused when it is built, naming the setting.

mod common;

use std::time::Duration;

use common::DEADLINE;
use naxos_core::model::{JobDefinition, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EngineConfig, ExecutionStatus};

fn refused(config: EngineConfig) -> String {
    match Engine::builder().config(config).build() {
        Ok(_) => panic!("the settings were accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn impossible_settings_are_refused_naming_the_setting() {
    let zero = EngineConfig {
        sweep_interval: Duration::ZERO,
        ..EngineConfig::default()
    };
    assert!(refused(zero).contains("sweep_interval"));
    let slow_heartbeat = EngineConfig {
        lease_ttl: Duration::from_secs(2),
        heartbeat_interval: Some(Duration::from_secs(10)),
        ..EngineConfig::default()
    };
    let error = refused(slow_heartbeat);
    assert!(
        error.contains("heartbeat_interval") && error.contains("lease_ttl"),
        "{error}"
    );
    let nameless = EngineConfig {
        node_id: " ".into(),
        ..EngineConfig::default()
    };
    assert!(refused(nameless).contains("node_id"));
}

/// Setting only the lease derives the heartbeat from it: a healthy task that runs for longer
/// than its lease keeps it, and runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lease_alone_is_enough() {
    let config = EngineConfig {
        lease_ttl: Duration::from_millis(600),
        sweep_interval: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let engine = Engine::builder().config(config).build().unwrap();
    assert_eq!(engine.config().heartbeat_interval(), Duration::from_millis(200));
    engine.register("slow", |_ctx| async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        Ok(json!("done"))
    });
    let job = JobDefinition::builder("slow")
        .task(TaskBuilder::new("only", "slow"))
        .build();
    engine.register_definition(job).await.unwrap();
    engine.start().unwrap();
    let id = engine.execute("slow", json!({})).await.unwrap().execution_id;
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let only = done.task("only").unwrap();
    assert_eq!((only.attempts, only.lease_expiries), (1, 0), "the lease was kept");
    engine.shutdown().await;
}

/// Validation stays linear however a body repeats itself: a task listing one dependency
/// 100,000 times (well within a body limit) gets that problem once, at once.
#[test]
fn a_dependency_listed_a_hundred_thousand_times_is_one_problem() {
    use naxos_core::model::{validate, Limits, Problem};
    let mut def = JobDefinition::builder("repeats")
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f"))
        .build();
    def.graph.insert("b".into(), vec!["a".to_string(); 100_000]);
    def.graph.get_mut("b").unwrap().push("ghost".into());
    def.graph.get_mut("b").unwrap().push("ghost".into());
    let err = validate(&def, &Limits::default(), &|_| true).unwrap_err();
    let naxos_core::Error::InvalidDefinition { problems, .. } = err else {
        panic!("expected InvalidDefinition");
    };
    assert_eq!(
        problems,
        vec![
            Problem::DuplicateDependency {
                task: "b".into(),
                dependency: "a".into()
            },
            Problem::UnknownDependency {
                task: "b".into(),
                dependency: "ghost".into()
            },
        ]
    );
}

/// U+0000, which PostgreSQL cannot keep, is refused where it enters: in params (naming where),
/// and in a definition's text fields (naming the field).
#[tokio::test]
async fn a_nul_character_is_refused_where_it_enters() {
    let engine = Engine::in_memory();
    engine.register("f", |_ctx| async { Ok(json!(null)) });
    let mut job = JobDefinition::builder("nul").task(TaskBuilder::new("t", "f")).build();
    job.name = "a\u{0}b".into();
    let err = engine.register_definition(job.clone()).await.unwrap_err();
    assert!(err.to_string().contains("`name` holds the character U+0000"), "{err}");
    job.name = "fine".into();
    engine.register_definition(job).await.unwrap();
    let err = engine.execute("nul", json!({"a": {"b\u{0}": 1}})).await.unwrap_err();
    assert!(matches!(err, naxos_core::Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("$.a.b\\u0000"), "{err}");
}

/// Past `max_pending_executions` unstarted executions a submit is refused (never queued without
/// bound), and admitted again once work has started or ended.
#[tokio::test]
async fn submits_over_the_pending_limit_are_refused_until_work_drains() {
    let clock = naxos_core::testkit::test_clock();
    let engine = Engine::builder()
        .config(EngineConfig {
            workers: false,
            max_pending_executions: Some(3),
            clock: naxos_core::Clock::Manual(clock.clone()),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    engine.register("f", |_ctx| async move { Ok(json!(1)) });
    let def = JobDefinition::builder("held").task(TaskBuilder::new("a", "f")).build();
    engine.register_definition(def).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(engine.execute("held", json!({})).await.unwrap().execution_id);
    }
    let refused = engine.execute("held", json!({})).await.unwrap_err();
    let naxos_core::Error::Overloaded { message, retry_after } = &refused else {
        panic!("not refused as overloaded: {refused}");
    };
    assert!(message.contains("max_pending_executions"), "{message}");
    assert!(*retry_after >= Duration::from_secs(1));
    assert_eq!(engine.counts().await.unwrap().executions[&ExecutionStatus::Pending], 3);

    // Two of them end; at the next reading of the count there is room for two more.
    for id in &ids[..2] {
        engine.cancel(*id).await.unwrap();
    }
    clock.advance(EngineConfig::default().sweep_interval);
    for _ in 0..2 {
        engine.execute("held", json!({})).await.unwrap();
    }
    assert!(matches!(
        engine.execute("held", json!({})).await,
        Err(naxos_core::Error::Overloaded { .. })
    ));
}
