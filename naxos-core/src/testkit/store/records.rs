//! Store checks of definitions and executions as records: versions, creation, idempotency,
//! listing, deadlines, pruning, counts and nodes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backend::{ExecutionQuery, StopReason, Store};
use crate::clock::ManualClock;
use crate::model::{ExecutionStatus, NodeInfo, RetentionDefaults, TaskStatus};
use crate::testkit::fixtures::{claim, create, described, diamond, done, new_diamond, run_ok, secs, task, unique_id};

/// Identical content keeps its version; changed content gets the next; versions stay readable.
pub async fn definitions_are_versioned(store: Arc<dyn Store>, _clock: ManualClock) {
    let mut def = diamond();
    let first = store.put_definition(def.clone()).await.unwrap();
    assert!(first.created);
    assert_eq!(first.definition.version, 1);
    let again = store.put_definition(def.clone()).await.unwrap();
    assert!(!again.created, "identical content must not make a new version");
    assert_eq!(again.definition.version, 1);
    def.name = "Changed".into();
    let second = store.put_definition(def.clone()).await.unwrap();
    assert!(second.created);
    assert_eq!(second.definition.version, 2);
    assert_eq!(
        store.get_definition(&def.id, None).await.unwrap().definition.name,
        "Changed"
    );
    assert_eq!(
        store.get_definition(&def.id, Some(1)).await.unwrap().definition.name,
        "Diamond"
    );
    assert!(store.get_definition(&def.id, Some(3)).await.unwrap_err().is_not_found());
    assert!(store
        .get_definition("no-such-definition", None)
        .await
        .unwrap_err()
        .is_not_found());
    let versions = store.definition_versions(&def.id).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    let listed = store.list_definitions().await.unwrap();
    let mine = listed.iter().find(|d| d.id == def.id).expect("listed");
    assert_eq!(
        (mine.latest_version, mine.task_count, mine.name.as_str()),
        (2, 4, "Changed")
    );
}

/// A new execution is PENDING; its roots are QUEUED and returned ready, the rest PENDING.
pub async fn create_queues_the_roots(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let def = diamond();
    let created = create(&*store, &def, None).await;
    assert!(created.created);
    let id = created.execution_id;
    assert_eq!(created.changes.ready, vec![task(id, "a", 1)]);
    assert_eq!(
        described(&created.changes, now),
        ["execution PENDING", "task a#1 QUEUED", "ready a#1"]
    );
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Pending);
    assert_eq!(exec.definition_id, def.id);
    assert_eq!(exec.data, json!({"n": 1}));
    let statuses: Vec<_> = exec.tasks.iter().map(|t| (t.task_id.as_str(), t.status)).collect();
    assert_eq!(
        statuses,
        vec![
            ("a", TaskStatus::Queued),
            ("b", TaskStatus::Pending),
            ("c", TaskStatus::Pending),
            ("d", TaskStatus::Pending)
        ]
    );
    assert_eq!(exec.task("d").unwrap().remaining_dependencies, 2);
    assert_eq!(exec.task("d").unwrap().dependencies, vec!["b", "c"]);
    assert!(store
        .get_execution(uuid::Uuid::now_v7())
        .await
        .unwrap_err()
        .is_not_found());
}

/// A repeated idempotency key for the same definition returns the first execution.
pub async fn idempotency_key_returns_the_first_execution(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = diamond();
    let first = create(&*store, &def, Some("key-1")).await;
    let again = create(&*store, &def, Some("key-1")).await;
    assert!(!again.created);
    assert_eq!(again.execution_id, first.execution_id);
    assert!(again.changes.ready.is_empty(), "a duplicate must not queue anything");
    let other = create(&*store, &def, Some("key-2")).await;
    assert!(other.created);
    assert_ne!(other.execution_id, first.execution_id);
}

/// Listing is newest first, filters by status and definition, and pages with a cursor that
/// visits every execution once.
pub async fn listing_pages_and_filters(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = diamond();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(create(&*store, &def, None).await.execution_id);
    }
    let stopped = ids[2];
    store.stop_execution(stopped, StopReason::Cancelled).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_executions(&ExecutionQuery {
                definition_id: Some(def.id.clone()),
                limit: 3,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.executions.len() <= 3);
        seen.extend(page.executions.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let cancelled = store
        .list_executions(&ExecutionQuery {
            definition_id: Some(def.id.clone()),
            status: Some(ExecutionStatus::Cancelled),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cancelled.executions.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![stopped]
    );
    assert_eq!(cancelled.next_cursor, None);
    let none = store
        .list_executions(&ExecutionQuery {
            definition_id: Some(unique_id("nothing")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.executions.is_empty());
}

/// Deadlines are reported once passed; finished executions are pruned after retention only.
pub async fn overdue_executions_and_pruning(store: Arc<dyn Store>, clock: ManualClock) {
    let def = diamond();
    store.put_definition(def.clone()).await.unwrap();
    let plain = create(&*store, &def, None).await.execution_id;
    let mut deadline_exec = crate::backend::NewExecution {
        id: uuid::Uuid::now_v7(),
        definition_id: def.id.clone(),
        definition_version: 1,
        params: json!({}),
        idempotency_key: None,
        traceparent: None,
        schedule_id: None,
        timeout: Some(Duration::from_secs(5)),
        delay: None,
        retention: None,
        tasks: [crate::backend::NewTask {
            task_id: "only".into(),
            name: "only".into(),
            function_name: "f".into(),
            dependencies: vec![],
            dependents: vec![],
            plan: Default::default(),
        }]
        .into(),
        parent: None,
        priority: crate::model::Priority::LOWEST,
    };
    let timed = store
        .create_execution(deadline_exec.clone())
        .await
        .unwrap()
        .execution_id;
    clock.advance(Duration::from_secs(1));
    let overdue = store.overdue_executions(100).await.unwrap();
    assert!(!overdue.contains(&timed));
    clock.advance(Duration::from_secs(5));
    let overdue = store.overdue_executions(100).await.unwrap();
    assert!(overdue.contains(&timed) && !overdue.contains(&plain));

    deadline_exec.id = uuid::Uuid::now_v7();
    deadline_exec.timeout = None;
    let done_id = store.create_execution(deadline_exec).await.unwrap().execution_id;
    let t = task(done_id, "only", 1);
    claim(&*store, &t).await;
    store.finish(vec![done(&t, json!(1))]).await.unwrap();
    let second = RetentionDefaults::uniform(Duration::from_secs(1));
    store.prune(second, 1_000).await.unwrap();
    assert!(store.get_execution(done_id).await.is_ok(), "too recent to prune");
    clock.advance(Duration::from_secs(2));
    let pruned = store.prune(second, 1_000).await.unwrap();
    assert!(pruned >= 1);
    assert!(store.get_execution(done_id).await.unwrap_err().is_not_found());
    assert!(
        store.get_execution(plain).await.is_ok(),
        "unfinished executions are kept"
    );
}

/// Counts reflect queued and running tasks and unstarted executions; nodes are recorded by id.
pub async fn counts_and_nodes(store: Arc<dyn Store>, clock: ManualClock) {
    let now = clock.now();
    let before = store.counts().await.unwrap();
    let pending = store.pending_executions().await.unwrap();
    let id = new_diamond(&*store).await;
    assert_eq!(
        store.pending_executions().await.unwrap(),
        pending + 1,
        "a new execution waits to start"
    );
    run_ok(&*store, id, "a").await;
    assert_eq!(
        store.pending_executions().await.unwrap(),
        pending,
        "a claimed one has started"
    );
    claim(&*store, &task(id, "b", 1)).await;
    let after = store.counts().await.unwrap();
    assert!(after.queued_tasks > before.queued_tasks, "c is queued");
    assert!(after.running_tasks > before.running_tasks, "b is running");
    assert!(
        after.executions.get(&ExecutionStatus::Running).copied().unwrap_or(0)
            > before.executions.get(&ExecutionStatus::Running).copied().unwrap_or(0)
    );
    let node_id = unique_id("node");
    let mut node = NodeInfo {
        id: node_id.clone(),
        role: "worker".into(),
        concurrency: 4,
        running: 1,
        started_at: now,
        last_seen: now,
    };
    store.put_node(node.clone()).await.unwrap();
    node.running = 3;
    node.last_seen = now + secs(1);
    store.put_node(node.clone()).await.unwrap();
    let nodes = store.list_nodes().await.unwrap();
    let mine: Vec<_> = nodes.iter().filter(|n| n.id == node_id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].running, 3);
    store.ping().await.unwrap();
}

/// Nodes are stamped with the Store's time when they report, and those silent for longer than
/// a retention are pruned, so that nodes that went away do not pile up.
pub async fn silent_nodes_are_pruned(store: Arc<dyn Store>, clock: ManualClock) {
    let node = |id: &str| NodeInfo {
        id: id.to_string(),
        role: "worker".into(),
        concurrency: 1,
        running: 0,
        started_at: clock.now(),
        last_seen: DateTime::<Utc>::UNIX_EPOCH,
    };
    let (gone, here) = (unique_id("gone"), unique_id("here"));
    store.put_node(node(&gone)).await.unwrap();
    let seen = store.list_nodes().await.unwrap();
    let first = seen.iter().find(|n| n.id == gone).expect("listed");
    assert_eq!(first.last_seen, clock.now(), "stamped with the Store's time");
    clock.advance(Duration::from_secs(7_200));
    store.put_node(node(&here)).await.unwrap();
    let pruned = store.prune_nodes(Duration::from_secs(3_600)).await.unwrap();
    assert!(pruned >= 1);
    let ids: Vec<String> = store.list_nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert!(!ids.contains(&gone), "silent for two hours: pruned");
    assert!(ids.contains(&here), "just seen: kept");
}

/// Twenty creations racing with one idempotency key: one creates, the others get its id.
pub async fn racing_creations_with_one_key_create_one_execution(store: Arc<dyn Store>, _clock: ManualClock) {
    let def = diamond();
    let put = store.put_definition(def).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (store, barrier, definition) = (store.clone(), barrier.clone(), put.definition.clone());
        racing.spawn(async move {
            let mut new = crate::backend::NewExecution::new(&definition, json!({}));
            new.idempotency_key = Some("order-7".into());
            barrier.wait().await;
            store.create_execution(new).await
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    while let Some(done) = racing.join_next().await {
        let done = done.unwrap().expect("no error reaches the caller");
        ids.insert(done.execution_id);
        created += usize::from(done.created);
    }
    assert_eq!((ids.len(), created), (1, 1), "one execution, created once");
}
