//! LmdbStore beyond the conformance suite: what survives a reopen, recovery after one, one
//! request's refusal inside a commit group, and backups.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestDir;
use naxos_core::backend::{ClaimRequest, ExecutionQuery, NewExecution, Store, TaskFinish, TaskOutcome};
use naxos_core::model::{NodeInfo, TaskRef, TaskStatus};
use naxos_core::serde_json::json;
use naxos_core::testkit::{diamond, test_clock};
use naxos_core::{Clock, ExecutionStatus};
use naxos_lmdb::{LmdbConfig, LmdbStore};

fn claim(task: &TaskRef, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        task: task.clone(),
        owner: "node-a".into(),
        lease,
    }
}

fn done(task: &TaskRef) -> TaskFinish {
    TaskFinish {
        task: task.clone(),
        outcome: TaskOutcome::Completed(json!({ "from": task.task_id })),
    }
}

/// Everything written is there after the store is dropped and the directory opened again: a
/// definition's versions, a finished execution with its outputs and attempt records, a RUNNING
/// task (which its lease expiry brings back), an idempotency key (which still dedups), a node
/// and the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_has_everything_and_recovers_running_tasks() {
    let dir = TestDir::new("reopen");
    let path = dir.join("store");
    let clock = test_clock();
    let config = LmdbConfig::new(&path).with_clock(Clock::Manual(clock.clone()));
    let mut def = diamond();
    let (v1, finished, running) = {
        let store = LmdbStore::with_config(config.clone()).unwrap();
        let v1 = store.put_definition(def.clone()).await.unwrap().definition;
        def.name = "Diamond, renamed".into();
        assert_eq!(store.put_definition(def.clone()).await.unwrap().definition.version, 2);

        let finished = store
            .create_execution(NewExecution::new(&v1, json!({"n": 1})))
            .await
            .unwrap()
            .execution_id;
        for t in ["a", "b", "c", "d"] {
            let task = TaskRef::new(finished, t, 1);
            store.claim(claim(&task, Duration::from_secs(30))).await.unwrap();
            assert!(store.finish(vec![done(&task)]).await.unwrap().results[0].is_ok());
        }
        let mut keyed = NewExecution::new(&v1, json!({"n": 2}));
        keyed.idempotency_key = Some("order-7".into());
        let running = store.create_execution(keyed).await.unwrap().execution_id;
        store
            .claim(claim(&TaskRef::new(running, "a", 1), Duration::from_secs(10)))
            .await
            .unwrap();
        store
            .put_node(NodeInfo {
                id: "node-a".into(),
                role: "all".into(),
                concurrency: 4,
                running: 1,
                started_at: clock.now(),
                last_seen: clock.now(),
            })
            .await
            .unwrap();
        (v1, finished, running)
    };

    let store = LmdbStore::with_config(config).unwrap();
    let versions = store.definition_versions(&def.id).await.unwrap();
    assert_eq!(versions.iter().map(|d| d.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(versions[0], v1);
    assert_eq!(versions[1].definition, def);

    let f = store.get_execution(finished).await.unwrap();
    assert_eq!(f.status, ExecutionStatus::Completed);
    assert_eq!(f.task("d").unwrap().output, Some(json!({"from": "d"})));
    assert!(f
        .tasks
        .iter()
        .all(|t| t.history.len() == 1 && t.history[0].node.as_ref() == "node-a"));

    let r = store.get_execution(running).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Running);
    assert_eq!(r.task("a").unwrap().status, TaskStatus::Running);

    let mut again = NewExecution::new(&v1, json!({"n": 3}));
    again.idempotency_key = Some("order-7".into());
    let dedup = store.create_execution(again).await.unwrap();
    assert!(!dedup.created);
    assert_eq!(dedup.execution_id, running);

    assert_eq!(store.list_nodes().await.unwrap()[0].id, "node-a");
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.executions.get(&ExecutionStatus::Completed), Some(&1));
    assert_eq!(counts.executions.get(&ExecutionStatus::Running), Some(&1));
    assert_eq!(counts.running_tasks, 1);

    // Before its lease runs out the task stays; after, it is QUEUED again under attempt 2.
    assert!(store.recover_expired(3, 100).await.unwrap().ready.is_empty());
    clock.advance(Duration::from_secs(11));
    let recovered = store.recover_expired(3, 100).await.unwrap();
    assert_eq!(recovered.ready, vec![TaskRef::new(running, "a", 2)]);
    store
        .claim(claim(&TaskRef::new(running, "a", 2), Duration::from_secs(10)))
        .await
        .unwrap();
}

/// Requests that land in one commit group keep their own results: of fifty claims of one
/// task, one wins and the others get `Conflict`, while claims of other tasks in the same
/// groups all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_does_not_fail_its_group() {
    let store = Arc::new(LmdbStore::with_config(LmdbConfig::temporary()).unwrap());
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let new = NewExecution::new(&def, json!({}));
        ids.push(store.create_execution(new).await.unwrap().execution_id);
    }
    let contested = TaskRef::new(ids[0], "a", 1);
    let mut calls = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (s1, s2) = (store.clone(), store.clone());
        let (contested, own) = (contested.clone(), TaskRef::new(*id, "a", 1));
        calls.spawn(async move { (true, s1.claim(claim(&contested, Duration::from_secs(30))).await.is_ok()) });
        if i > 0 {
            calls.spawn(async move { (false, s2.claim(claim(&own, Duration::from_secs(30))).await.is_ok()) });
        }
    }
    let (mut contested_wins, mut own_wins) = (0, 0);
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            (true, won) => contested_wins += usize::from(won),
            (false, won) => {
                assert!(won, "an uncontested claim failed");
                own_wins += 1;
            }
        }
    }
    assert_eq!(contested_wins, 1, "exactly one claim of the contested task wins");
    assert_eq!(own_wins, 49);
    assert_eq!(store.counts().await.unwrap().running_tasks, 50);
}

/// A backup taken while the store serves is a store of its own with the same data; a second
/// backup into the same directory is refused rather than overwriting the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_a_consistent_store() {
    let dir = TestDir::new("backup");
    let store = LmdbStore::open(dir.join("live")).unwrap();
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let mut ids = Vec::new();
    for n in 0..20 {
        let new = NewExecution::new(&def, json!({ "n": n }));
        ids.push(store.create_execution(new).await.unwrap().execution_id);
    }
    let file = store.backup_to(dir.join("copy")).await.unwrap();
    assert_eq!(file, dir.join("copy").join("data.mdb"));
    assert!(
        store.backup_to(dir.join("copy")).await.is_err(),
        "never overwrites a backup"
    );
    // The live store carries on.
    store
        .stop_execution(ids[0], naxos_core::backend::StopReason::Cancelled)
        .await
        .unwrap();

    let copy = LmdbStore::open(dir.join("copy")).unwrap();
    assert_eq!(copy.get_definition(&def.definition.id, Some(1)).await.unwrap(), def);
    for (n, id) in ids.iter().enumerate() {
        let e = copy.get_execution(*id).await.unwrap();
        assert_eq!(e.status, ExecutionStatus::Pending, "as of the backup");
        assert_eq!(e.data, json!({ "n": n }));
    }
    assert_eq!(copy.pending_executions().await.unwrap(), 20);
}

/// Writes that arrive while a commit is in flight share the next one: two hundred concurrent
/// writes take far fewer durable commits than writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let store = Arc::new(LmdbStore::with_config(LmdbConfig::temporary()).unwrap());
    let before = store.write_stats();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        writes.spawn(async move {
            store
                .put_node(NodeInfo {
                    id: format!("node-{i:03}"),
                    role: "worker".into(),
                    concurrency: 1,
                    running: 0,
                    started_at: chrono::Utc::now(),
                    last_seen: chrono::Utc::now(),
                })
                .await
        });
    }
    while let Some(w) = writes.join_next().await {
        w.unwrap().unwrap();
    }
    let after = store.write_stats();
    let (requests, commits) = (after.requests - before.requests, after.commits - before.commits);
    assert_eq!(requests, 200);
    assert!(
        commits < 100,
        "{commits} commits for {requests} concurrent writes: no grouping"
    );
    assert_eq!(store.list_nodes().await.unwrap().len(), 200, "every write committed");
}

/// With no index by status alone, a listing by status merges every definition's range of
/// `by_definition_status`: newest first, paged by cursor without repeats or gaps; the counts
/// by status are kept by the writer and counted again on open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_by_status_pages_across_definitions_and_counts_survive_a_reopen() {
    let dir = TestDir::new("by-status");
    let path = dir.join("store");
    let mut pending = Vec::new();
    {
        let store = LmdbStore::open(&path).unwrap();
        let mut stored = Vec::new();
        for id in ["a", "a.b", "z"] {
            let mut def = diamond();
            def.id = id.into();
            stored.push(store.put_definition(def).await.unwrap().definition);
        }
        for n in 0..8 {
            let new = NewExecution::new(&stored[n % stored.len()], json!({ "n": n }));
            let id = store.create_execution(new).await.unwrap().execution_id;
            if n % 3 == 1 {
                store
                    .claim(claim(&TaskRef::new(id, "a", 1), Duration::from_secs(30)))
                    .await
                    .unwrap();
            } else {
                pending.push(id);
            }
        }
        pending.sort_unstable_by(|a, b| b.cmp(a));
        let mut listed = Vec::new();
        let mut query = ExecutionQuery {
            status: Some(ExecutionStatus::Pending),
            limit: 2,
            ..ExecutionQuery::default()
        };
        loop {
            let page = store.list_executions(&query).await.unwrap();
            assert!(page.executions.iter().all(|e| e.status == ExecutionStatus::Pending));
            listed.extend(page.executions.iter().map(|e| e.id));
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(listed, pending);
    }
    let store = LmdbStore::open(&path).unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.executions.get(&ExecutionStatus::Pending), Some(&5));
    assert_eq!(counts.executions.get(&ExecutionStatus::Running), Some(&3));
    assert_eq!(store.pending_executions().await.unwrap(), 5);
}

/// Task plans are kept in the plan row: after a reopen (nothing decoded in memory), the
/// completion of `a` still evaluates `b`'s condition and `join`'s trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_plans_survive_a_reopen() {
    use naxos_core::model::{JobDefinition, TaskBuilder, Trigger};
    let dir = TestDir::new("plans");
    let config = LmdbConfig::new(dir.join("store"));
    let def = JobDefinition::builder("branch")
        .task(TaskBuilder::new("a", "f"))
        .task(TaskBuilder::new("b", "f").after(["a"]).when("params.x > 5"))
        .task(TaskBuilder::new("join", "f").after(["b"]).trigger(Trigger::NoneFailed))
        .build();
    let id = {
        let store = LmdbStore::with_config(config.clone()).unwrap();
        let put = store.put_definition(def).await.unwrap();
        store
            .create_execution(NewExecution::new(&put.definition, json!({"x": 2})))
            .await
            .unwrap()
            .execution_id
    };
    let store = LmdbStore::with_config(config).unwrap();
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.task("b").unwrap().plan.when.as_deref(), Some("params.x > 5"));
    assert_eq!(exec.task("join").unwrap().plan.trigger, Trigger::NoneFailed);
    let a = TaskRef::new(id, "a", 1);
    store.claim(claim(&a, Duration::from_secs(30))).await.unwrap();
    let report = store.finish(vec![done(&a)]).await.unwrap();
    assert_eq!(report.changes.ready, vec![TaskRef::new(id, "join", 1)]);
    let b = store.get_execution(id).await.unwrap().task("b").cloned().unwrap();
    assert_eq!(
        (b.status, b.error.as_deref()),
        (TaskStatus::Skipped, Some("condition false"))
    );
}
