//! The engine end to end on the in-memory backends.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{diamond, engine, fast_config, quick_backoff, DEADLINE};
use naxos_core::backend::{ClaimRequest, NewExecution};
use naxos_core::model::{JobDefinition, Problem, TaskBuilder};
use naxos_core::serde_json::{json, Value};
use naxos_core::{Engine, Error, ExecuteRequest, ExecutionStatus, TaskError, TaskStatus};
use tokio::sync::{Barrier, Notify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_runs_in_order_and_branches_overlap() {
    let engine = engine();
    let log: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(2));
    let (l, b) = (log.clone(), barrier.clone());
    engine.register("step", move |ctx| {
        let (log, barrier) = (l.clone(), b.clone());
        async move {
            let start = Instant::now();
            if matches!(ctx.task_id(), "b" | "c") {
                // Both branches must be running at once to pass this point.
                tokio::time::timeout(Duration::from_secs(5), barrier.wait())
                    .await
                    .map_err(|_| TaskError::fatal("the parallel branch never ran alongside"))?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            log.lock()
                .unwrap()
                .insert(ctx.task_id().to_string(), (start, Instant::now()));
            Ok(json!(null))
        }
    });
    engine.register_definition(diamond("order", "step")).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("order", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    engine.shutdown().await;
    let log = log.lock().unwrap().clone();
    assert!(
        log["a"].1 <= log["b"].0 && log["a"].1 <= log["c"].0,
        "b and c start after a ends"
    );
    assert!(
        log["d"].0 >= log["b"].1 && log["d"].0 >= log["c"].1,
        "d starts after b and c end"
    );
    assert!(log["b"].0 < log["c"].1 && log["c"].0 < log["b"].1, "b and c overlap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_params_reach_dependents() {
    let engine = engine();
    engine.register("echo", |ctx| async move {
        let upstream: serde_json::Map<String, Value> =
            ctx.upstream_all().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Ok(json!({ "task": ctx.task_id(), "params": ctx.params(), "upstream": upstream }))
    });
    engine.register_definition(diamond("echoes", "echo")).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("echoes", json!({"x": 7})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.data, json!({"x": 7}));
    let d = done.task("d").unwrap().output.clone().unwrap();
    assert_eq!(d["params"], json!({"x": 7}));
    assert_eq!(d["upstream"]["b"]["task"], "b");
    assert_eq!(d["upstream"]["c"]["upstream"]["a"]["task"], "a");
    assert_eq!(d["upstream"].as_object().unwrap().len(), 2, "direct dependencies only");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_counted_per_attempt() {
    let engine = engine();
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let s = seen.clone();
    engine.register("flaky", move |ctx| {
        let seen = s.clone();
        async move {
            seen.lock().unwrap().push(ctx.attempt());
            if ctx.attempt() <= 2 {
                return Err(TaskError::retryable(format!("failure {}", ctx.attempt())));
            }
            Ok(json!("finally"))
        }
    });
    let def = JobDefinition::builder("flaky-job")
        .task(TaskBuilder::new("t", "flaky").max_retry(3).backoff(quick_backoff()))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("flaky-job", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    let t = done.task("t").unwrap();
    assert_eq!((t.attempts, t.failures), (3, 2));
    assert_eq!(t.output, Some(json!("finally")));
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn backoff_follows_the_policy_on_a_paused_clock() {
    let mut config = fast_config();
    config.clock = naxos_core::Clock::tokio();
    let engine = Engine::builder().config(config).build().unwrap();
    let starts: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let s = starts.clone();
    engine.register("always-flaky", move |_ctx| {
        let starts = s.clone();
        async move {
            starts.lock().unwrap().push(tokio::time::Instant::now());
            Err::<Value, _>(TaskError::retryable("still failing"))
        }
    });
    let backoff = naxos_core::model::BackoffPolicy {
        initial_ms: 1_000,
        max_ms: 3_000,
        multiplier: 2.0,
        jitter: 0.0,
    };
    let def = JobDefinition::builder("backoff")
        .task(TaskBuilder::new("t", "always-flaky").max_retry(3).backoff(backoff))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("backoff", json!({})).await.unwrap();
    let done = engine.wait_for(run.execution_id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.task("t").unwrap().attempts, 4);
    engine.shutdown().await;
    let starts = starts.lock().unwrap().clone();
    let gaps: Vec<u128> = starts.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(gaps.len(), 3);
    for (gap, expected) in gaps.iter().zip([1_000u128, 2_000, 3_000]) {
        assert!(
            *gap >= expected && *gap < expected + 50,
            "gaps {gaps:?} should be 1000, 2000, 3000 ms (capped)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_task_skip_dependents_and_fail_the_execution() {
    let engine = engine();
    engine.register("ok", |_ctx| async move { Ok(json!(1)) });
    engine.register(
        "bad",
        |_ctx| async move { Err::<Value, _>(TaskError::retryable("always")) },
    );
    let def = JobDefinition::builder("exhaust")
        .task(TaskBuilder::new("a", "ok"))
        .task(
            TaskBuilder::new("b", "bad")
                .after(["a"])
                .max_retry(1)
                .backoff(quick_backoff()),
        )
        .task(TaskBuilder::new("c", "ok").after(["a"]))
        .task(TaskBuilder::new("d", "ok").after(["b", "c"]))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("exhaust", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert!(done.error.as_deref().unwrap().contains("`b`"), "{:?}", done.error);
    let b = done.task("b").unwrap();
    assert_eq!((b.status, b.attempts, b.failures), (TaskStatus::Failed, 2, 2));
    assert_eq!(b.error.as_deref(), Some("always"));
    assert_eq!(done.task("c").unwrap().status, TaskStatus::Completed);
    assert_eq!(done.task("d").unwrap().status, TaskStatus::Skipped);
    assert_eq!(done.task("d").unwrap().attempts, 0, "a skipped task never starts");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_error_is_not_retried() {
    let engine = engine();
    engine.register(
        "fatal",
        |_ctx| async move { Err::<Value, _>(TaskError::fatal("bad input")) },
    );
    let def = JobDefinition::builder("fatal-job")
        .task(TaskBuilder::new("t", "fatal").max_retry(5))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("fatal-job", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.task("t").unwrap().attempts, 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_retried_then_fails() {
    let engine = engine();
    engine.register("slow", |_ctx| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(json!(null))
    });
    let def = JobDefinition::builder("slow-job")
        .task(
            TaskBuilder::new("t", "slow")
                .timeout(Duration::from_millis(50))
                .max_retry(1)
                .backoff(quick_backoff()),
        )
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("slow-job", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    let t = done.task("t").unwrap();
    assert_eq!((t.attempts, t.failures), (2, 2));
    assert!(
        t.error.as_deref().unwrap().contains("timed out after 50 ms"),
        "{:?}",
        t.error
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_fires_the_token_and_queued_tasks_never_start() {
    let engine = engine();
    let started = Arc::new(Notify::new());
    let saw_cancel = Arc::new(Notify::new());
    let later_runs = Arc::new(AtomicU32::new(0));
    let (st, sc) = (started.clone(), saw_cancel.clone());
    engine.register("wait", move |ctx| {
        let (started, saw_cancel) = (st.clone(), sc.clone());
        async move {
            started.notify_one();
            ctx.cancelled().await;
            saw_cancel.notify_one();
            Err::<Value, _>(TaskError::fatal("cancelled"))
        }
    });
    let lr = later_runs.clone();
    engine.register("later", move |_ctx| {
        let later_runs = lr.clone();
        async move {
            later_runs.fetch_add(1, Ordering::SeqCst);
            Ok(json!(null))
        }
    });
    let def = JobDefinition::builder("cancel-me")
        .task(TaskBuilder::new("a", "wait"))
        .task(TaskBuilder::new("b", "later").after(["a"]))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("cancel-me", json!({})).await.unwrap();
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .expect("a starts");
    assert_eq!(
        engine.cancel(run.execution_id).await.unwrap(),
        ExecutionStatus::Cancelled
    );
    tokio::time::timeout(DEADLINE, saw_cancel.notified())
        .await
        .expect("the running task sees its token fire");
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Cancelled);
    assert_eq!(done.task("a").unwrap().status, TaskStatus::Cancelled);
    assert_eq!(done.task("b").unwrap().status, TaskStatus::Cancelled);
    assert!(engine.cancel(run.execution_id).await.unwrap_err().is_conflict());
    engine.shutdown().await;
    assert_eq!(later_runs.load(Ordering::SeqCst), 0, "b never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_execution() {
    let engine = engine();
    engine.register("f", |_ctx| async move { Ok(json!(null)) });
    engine.register_definition(diamond("idem", "f")).await.unwrap();
    let request = ExecuteRequest::new("idem", json!({"order": 1})).idempotency_key("order-1");
    let first = engine.submit(request.clone()).await.unwrap();
    let again = engine.submit(request).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.execution_id, again.execution_id);
    let other = engine.execute("idem", json!({})).await.unwrap();
    assert_ne!(other.execution_id, first.execution_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_diamonds_all_complete() {
    let engine = Engine::builder().config(fast_config()).concurrency(32).build().unwrap();
    engine.register("noop", |_ctx| async move { Ok(json!(null)) });
    engine.register_definition(diamond("many", "noop")).await.unwrap();
    engine.start().unwrap();
    let mut waits = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        let engine = engine.clone();
        waits.spawn(async move {
            let run = engine.execute("many", json!({ "i": i })).await.unwrap();
            engine
                .wait_for_timeout(run.execution_id, Duration::from_secs(60))
                .await
                .unwrap()
        });
    }
    let mut completed = 0;
    while let Some(done) = waits.join_next().await {
        let done = done.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert!(done
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.attempts == 1));
        completed += 1;
    }
    assert_eq!(completed, 1_000);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_with_the_panic_message() {
    let engine = engine();
    engine.register("panics", |_ctx| async move {
        if true {
            panic!("kaboom");
        }
        Ok(json!(null))
    });
    let def = JobDefinition::builder("panic-job")
        .task(TaskBuilder::new("t", "panics"))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("panic-job", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    let error = done.task("t").unwrap().error.clone().unwrap();
    assert!(error.contains("panicked") && error.contains("kaboom"), "{error}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_output_fails_the_task() {
    let mut config = fast_config();
    config.max_output_bytes = 100;
    let engine = Engine::builder().config(config).build().unwrap();
    engine.register("big", |_ctx| async move { Ok(json!("x".repeat(1_000))) });
    let def = JobDefinition::builder("big-job")
        .task(TaskBuilder::new("t", "big").max_retry(3))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("big-job", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    let t = done.task("t").unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Failed, 1));
    assert!(t.error.as_deref().unwrap().contains("1002 bytes"), "{:?}", t.error);
    assert_eq!(t.output, None);
    engine.shutdown().await;
}

#[tokio::test]
async fn bad_definitions_and_requests_get_named_errors() {
    let engine = engine();
    engine.register("known", |_ctx| async move { Ok(json!(null)) });
    let def = JobDefinition::builder("bad")
        .task(TaskBuilder::new("a", "unknown-fn"))
        .task(TaskBuilder::new("b", "known").after(["a", "ghost"]))
        .build();
    match engine.register_definition(def).await.unwrap_err() {
        Error::InvalidDefinition { id, problems } => {
            assert_eq!(id, "bad");
            assert_eq!(
                problems,
                vec![
                    Problem::UnregisteredFunction {
                        task: "a".into(),
                        function: "unknown-fn".into()
                    },
                    Problem::UnknownDependency {
                        task: "b".into(),
                        dependency: "ghost".into()
                    },
                ]
            );
        }
        other => panic!("expected InvalidDefinition, got {other}"),
    }
    assert!(engine.execute("bad", json!({})).await.unwrap_err().is_not_found());
    engine.register_definition(diamond("good", "known")).await.unwrap();
    let err = engine.execute("good", json!([1, 2])).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("not an array"), "{err}");
    let again = engine.register_definition(diamond("good", "known")).await.unwrap();
    assert!(!again.created, "identical content is a no-op");
    let changed = engine
        .register_definition(
            JobDefinition::builder("good")
                .task(TaskBuilder::new("z", "known"))
                .build(),
        )
        .await
        .unwrap();
    assert_eq!((changed.created, changed.definition.version), (true, 2));
}

/// Creates an execution straight in the Store, as if the node died before publishing.
async fn create_unpublished(engine: &Engine, definition: &str) -> naxos_core::ExecutionId {
    let stored = engine.definition(definition, None).await.unwrap();
    let new = NewExecution::new(&stored, json!({}));
    let created = engine.store().create_execution(new).await.unwrap();
    created.execution_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publish_is_republished_by_the_sweeper() {
    let engine = engine();
    engine.register("f", |_ctx| async move { Ok(json!(null)) });
    engine.register_definition(diamond("lost", "f")).await.unwrap();
    let id = create_unpublished(&engine, "lost").await;
    engine.start().unwrap();
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_task_is_recovered_after_its_lease_expires() {
    let engine = engine();
    engine.register("f", |_ctx| async move { Ok(json!("done")) });
    engine.register_definition(diamond("orphan", "f")).await.unwrap();
    let id = create_unpublished(&engine, "orphan").await;
    engine
        .store()
        .claim(ClaimRequest {
            task: naxos_core::model::TaskRef::new(id, "a", 1),
            owner: "dead-node".into(),
            lease: Duration::from_millis(300),
        })
        .await
        .unwrap();
    engine.start().unwrap();
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    let a = done.task("a").unwrap();
    assert_eq!((a.attempts, a.lease_expiries, a.failures), (2, 1, 0));
    assert_eq!(a.output, Some(json!("done")));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_tasks_finish() {
    let engine = engine();
    let started = Arc::new(Notify::new());
    let st = started.clone();
    engine.register("slow", move |_ctx| {
        let started = st.clone();
        async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(json!("finished"))
        }
    });
    let def = JobDefinition::builder("drain")
        .task(TaskBuilder::new("a", "slow"))
        .task(TaskBuilder::new("b", "slow").after(["a"]))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("drain", json!({})).await.unwrap();
    tokio::time::timeout(DEADLINE, started.notified()).await.unwrap();
    engine.shutdown().await;
    assert_eq!(engine.running_tasks(), 0);
    let exec = engine.execution(run.execution_id).await.unwrap();
    assert_eq!(exec.task("a").unwrap().status, TaskStatus::Completed);
    assert_eq!(exec.task("a").unwrap().output, Some(json!("finished")));
    assert_eq!(
        exec.task("b").unwrap().status,
        TaskStatus::Queued,
        "b waits for another node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_its_grace_hands_tasks_back_to_another_node() {
    let store: Arc<dyn naxos_core::backend::Store> = Arc::new(naxos_core::memory::MemoryStore::new());
    let queue: Arc<dyn naxos_core::backend::Queue> = Arc::new(naxos_core::memory::MemoryQueue::new());
    let node = |name: &str, grace: Duration| {
        let mut config = fast_config();
        config.shutdown_grace = grace;
        config.node_id = name.into();
        Engine::builder()
            .store(store.clone())
            .queue(queue.clone())
            .config(config)
            .build()
            .unwrap()
    };
    let first = node("first", Duration::from_millis(100));
    let started = Arc::new(Notify::new());
    let st = started.clone();
    first.register("stubborn", move |ctx| {
        let started = st.clone();
        async move {
            started.notify_one();
            ctx.cancelled().await;
            Err::<Value, _>(TaskError::retryable("interrupted"))
        }
    });
    let def = JobDefinition::builder("handback")
        .task(TaskBuilder::new("t", "stubborn"))
        .build();
    first.register_definition(def).await.unwrap();
    first.start().unwrap();
    let run = first.execute("handback", json!({})).await.unwrap();
    tokio::time::timeout(DEADLINE, started.notified()).await.unwrap();
    first.shutdown().await;
    let t = first
        .execution(run.execution_id)
        .await
        .unwrap()
        .task("t")
        .unwrap()
        .clone();
    assert_eq!(
        (t.status, t.attempt, t.failures),
        (TaskStatus::Queued, 2, 0),
        "handed back, budget intact"
    );

    let second = node("second", Duration::from_secs(5));
    second.register("stubborn", |_ctx| async move { Ok(json!("second node")) });
    second.start().unwrap();
    let done = second.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.task("t").unwrap().output, Some(json!("second node")));
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_fails() {
    let engine = engine();
    engine.register("forever", |ctx| async move {
        ctx.cancelled().await;
        Ok(json!(null))
    });
    let def = JobDefinition::builder("deadline")
        .timeout(Duration::from_millis(200))
        .task(TaskBuilder::new("t", "forever"))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("deadline", json!({})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert!(done.error.as_deref().unwrap().contains("timeoutMs"), "{:?}", done.error);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reruns_a_failed_execution() {
    let engine = engine();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let b = broken.clone();
    engine.register("switch", move |_ctx| {
        let broken = b.clone();
        async move {
            if broken.load(Ordering::SeqCst) {
                return Err(TaskError::fatal("switched off"));
            }
            Ok(json!("on"))
        }
    });
    engine.register("ok", |_ctx| async move { Ok(json!(1)) });
    let def = JobDefinition::builder("retry-me")
        .task(TaskBuilder::new("a", "ok"))
        .task(TaskBuilder::new("b", "switch").after(["a"]))
        .task(TaskBuilder::new("c", "ok").after(["b"]))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("retry-me", json!({})).await.unwrap();
    let failed = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert!(engine.retry(uuid_nil()).await.unwrap_err().is_not_found());
    broken.store(false, Ordering::SeqCst);
    engine.retry(run.execution_id).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.task("a").unwrap().attempts, 1, "completed tasks are not re-run");
    assert_eq!(done.task("b").unwrap().attempts, 2);
    assert!(engine.retry(run.execution_id).await.unwrap_err().is_conflict());
    engine.shutdown().await;
}

fn uuid_nil() -> naxos_core::ExecutionId {
    naxos_core::uuid::Uuid::nil()
}

#[derive(serde::Deserialize)]
struct Order {
    quantity: u32,
    price: f64,
}

#[derive(serde::Serialize)]
struct Total {
    total: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_tasks_deserialize_params_and_name_mismatches() {
    let engine = engine();
    engine.register_typed("total", |_ctx, order: Order| async move {
        Ok(Total {
            total: f64::from(order.quantity) * order.price,
        })
    });
    let def = JobDefinition::builder("typed")
        .task(TaskBuilder::new("t", "total").max_retry(2))
        .build();
    engine.register_definition(def).await.unwrap();
    engine.start().unwrap();
    let good = engine
        .execute("typed", json!({"quantity": 3, "price": 2.5}))
        .await
        .unwrap();
    let done = engine.wait_for_timeout(good.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.task("t").unwrap().output, Some(json!({"total": 7.5})));
    let bad = engine.execute("typed", json!({"quantity": "three"})).await.unwrap();
    let failed = engine.wait_for_timeout(bad.execution_id, DEADLINE).await.unwrap();
    let t = failed.task("t").unwrap();
    assert_eq!(
        (t.status, t.attempts),
        (TaskStatus::Failed, 1),
        "a params mismatch is fatal"
    );
    assert!(t.error.as_deref().unwrap().contains("quantity"), "{:?}", t.error);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_waits_for_work_done_by_a_worker_node() {
    let store: Arc<dyn naxos_core::backend::Store> = Arc::new(naxos_core::memory::MemoryStore::new());
    let queue: Arc<dyn naxos_core::backend::Queue> = Arc::new(naxos_core::memory::MemoryQueue::new());
    let build = || {
        Engine::builder()
            .store(store.clone())
            .queue(queue.clone())
            .config(fast_config())
            .build()
            .unwrap()
    };
    let (api, worker) = (build(), build());
    for node in [&api, &worker] {
        node.register("f", |_ctx| async move { Ok(json!(null)) });
    }
    api.register_definition(diamond("split", "f")).await.unwrap();
    worker.start().unwrap();
    let run = api.execute("split", json!({})).await.unwrap();
    let done = api.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(api.running_tasks(), 0);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sweep_prunes_beyond_a_batch_to_keep_the_count_limit() {
    let store = Arc::new(naxos_core::memory::MemoryStore::new().with_max_finished(10));
    let config = naxos_core::EngineConfig {
        sweep_interval: Duration::from_secs(3_600),
        ..fast_config()
    };
    let engine = Engine::builder()
        .config(config)
        .store(store)
        .concurrency(32)
        .build()
        .unwrap();
    engine.register("noop", |_ctx| async move { Ok(json!(null)) });
    let one = JobDefinition::builder("one")
        .task(TaskBuilder::new("a", "noop"))
        .build();
    engine.register_definition(one).await.unwrap();
    engine.start().unwrap();
    for _ in 0..2_500 {
        engine.execute("one", json!({})).await.unwrap();
    }
    // Finished ones may be pruned already (the sweeper's first sweep runs at start): wait until
    // none is left unfinished.
    let started = Instant::now();
    loop {
        let counts = engine.counts().await.unwrap();
        let unfinished: u64 = [ExecutionStatus::Pending, ExecutionStatus::Running]
            .iter()
            .filter_map(|s| counts.executions.get(s))
            .sum();
        if unfinished == 0 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "still unfinished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A node that finishes more than one prune batch (1,000) between sweeps keeps its bound
    // after one sweep (2,490 to prune, if the first sweep came before any finished).
    engine.sweep_once().await.unwrap();
    let counts = engine.counts().await.unwrap();
    assert_eq!(
        counts.executions.get(&ExecutionStatus::Completed),
        Some(&10),
        "{counts:?}"
    );
    assert_eq!(counts.executions.values().sum::<u64>(), 10, "{counts:?}");
    engine.shutdown().await;
}

/// Conditions through the engine: an execution whose roots' conditions leave nothing to run
/// ends at creation, and `wait_for` sees it; a branch calls only the side taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_decide_what_runs_through_the_engine() {
    use naxos_core::model::Trigger;
    let engine = engine();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let c = calls.clone();
    engine.register("step", move |ctx| {
        let calls = c.clone();
        async move {
            calls.lock().unwrap().push(ctx.task_id().to_string());
            Ok(json!({ "x": ctx.param::<i64>("x") }))
        }
    });
    let nothing = JobDefinition::builder("nothing")
        .task(TaskBuilder::new("only", "step").when("params.x > 100"))
        .build();
    let branch = JobDefinition::builder("branch")
        .task(TaskBuilder::new("a", "step"))
        .task(TaskBuilder::new("big", "step").after(["a"]).when("upstream.a.x > 1"))
        .task(TaskBuilder::new("small", "step").after(["a"]).when("upstream.a.x <= 1"))
        .task(
            TaskBuilder::new("join", "step")
                .after(["big", "small"])
                .trigger(Trigger::NoneFailed),
        )
        .build();
    engine.register_definition(nothing).await.unwrap();
    engine.register_definition(branch).await.unwrap();
    engine.start().unwrap();
    let run = engine.execute("nothing", json!({"x": 1})).await.unwrap();
    assert_eq!(run.status, ExecutionStatus::Completed, "decided at creation");
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.task("only").unwrap().status, TaskStatus::Skipped);
    let run = engine.execute("branch", json!({"x": 5})).await.unwrap();
    let done = engine.wait_for_timeout(run.execution_id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    engine.shutdown().await;
    assert_eq!(*calls.lock().unwrap(), ["a", "big", "join"]);
}
