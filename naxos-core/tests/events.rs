//! A node's one event feed: watchers of an execution get its events and nothing else, however
//! many watch there is one Queue subscription, and a watcher that falls behind is ended.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::queue::TestQueue;
use common::{diamond, fast_config, DEADLINE};
use naxos_core::model::{EventKind, JobDefinition, StatusEvent, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Engine, EventStream, ExecutionStatus};

/// Reads a stream until it has seen the execution's terminal event and `completions` task
/// completions (events of parallel branches may arrive in either order), or its end.
async fn collect(mut stream: EventStream, completions: usize) -> Vec<StatusEvent> {
    let mut events = Vec::new();
    let done = |events: &[StatusEvent]| {
        let ended = events
            .iter()
            .any(|e| e.execution_status().is_some_and(|s| s.is_terminal()));
        let completed = events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Task {
                        status: naxos_core::TaskStatus::Completed,
                        ..
                    }
                )
            })
            .count();
        ended && completed == completions
    };
    while let Ok(Some(e)) = tokio::time::timeout(DEADLINE, stream.next()).await {
        events.push(e);
        if done(&events) {
            break;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_get_their_execution_only_through_one_subscription() {
    let queue = Arc::new(TestQueue::default());
    let engine = Engine::builder()
        .queue(queue.clone())
        .config(fast_config())
        .build()
        .unwrap();
    engine.register("noop", |_ctx| async { Ok(json!(null)) });
    engine.register_definition(diamond("watched", "noop")).await.unwrap();
    let a = engine.execute("watched", json!({})).await.unwrap().execution_id;
    let b = engine.execute("watched", json!({})).await.unwrap().execution_id;
    let (a1, a2, b1) = (
        engine.watch(a).await.unwrap(),
        engine.watch(a).await.unwrap(),
        engine.watch(b).await.unwrap(),
    );
    engine.start().unwrap();
    let (a1, a2, b1) = tokio::join!(collect(a1, 4), collect(a2, 4), collect(b1, 4));
    for (events, id) in [(&a1, a), (&a2, a), (&b1, b)] {
        assert!(
            events.iter().all(|e| e.execution_id == id),
            "only its own execution's events"
        );
        let completed: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Task {
                    task_id,
                    status: naxos_core::TaskStatus::Completed,
                    ..
                } => Some(task_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(completed.len(), 4, "every task's completion: {events:#?}");
        assert!(
            events
                .iter()
                .any(|e| e.execution_status() == Some(ExecutionStatus::Completed)),
            "the execution's end"
        );
    }
    assert_eq!(a1, a2, "two watchers of one execution see the same events");
    engine.wait_for(a).await.unwrap();
    engine.wait_for(b).await.unwrap();
    assert_eq!(
        queue.subscriptions.load(Ordering::SeqCst),
        1,
        "one Queue subscription feeds every watcher and waiter of the node"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_ended() {
    let engine = Engine::builder().config(fast_config()).build().unwrap();
    engine.register("noop", |_ctx| async { Ok(json!(null)) });
    let mut wide = JobDefinition::builder("wide").task(TaskBuilder::new("root", "noop"));
    for i in 0..200 {
        wide = wide.task(TaskBuilder::new(format!("t{i:03}"), "noop").after(["root"]));
    }
    engine.register_definition(wide.build()).await.unwrap();
    let id = engine.execute("wide", json!({})).await.unwrap().execution_id;
    let mut lagging = engine.watch(id).await.unwrap();
    engine.start().unwrap();
    engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    // 200 tasks make well over a buffer of events; the unread watcher was dropped on the way.
    let mut read = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), lagging.next()).await {
        read += 1;
    }
    assert!(read > 0 && read < 600, "the stream ended after its buffer: read {read}");
    engine.shutdown().await;
}

/// Publishing a claim's events never holds up the task it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_starts_while_its_events_are_still_being_published() {
    let queue = Arc::new(TestQueue::default());
    let engine = Engine::builder()
        .queue(queue.clone())
        .config(fast_config())
        .build()
        .unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    engine.register("f", move |_ctx| {
        let started = s.clone();
        async move {
            started.notify_one();
            Ok(json!(null))
        }
    });
    let job = JobDefinition::builder("stuck")
        .task(TaskBuilder::new("only", "f"))
        .build();
    engine.register_definition(job).await.unwrap();
    let id = engine.execute("stuck", json!({})).await.unwrap().execution_id;
    queue.stuck.store(true, Ordering::SeqCst);
    engine.start().unwrap();
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the task started while its RUNNING event waited for the broker");
    queue.stuck.store(false, Ordering::SeqCst);
    queue.released.notify_waiters();
    let done = engine.wait_for_timeout(id, DEADLINE).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    engine.shutdown().await;
}
