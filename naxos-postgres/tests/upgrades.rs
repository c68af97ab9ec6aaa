//! Upgrades: a database written by an older release reads back and carries on after the
//! remaining migrations run; a database or a definition written by a newer release is refused
//! with a clear error, and nothing is changed.

mod common;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use naxos_core::backend::{ClaimRequest, ExecutionQuery, Store};
use naxos_core::memory::MemoryQueue;
use naxos_core::model::{AttemptOutcome, JobDefinition, RetentionDefaults, TaskRef, TaskStatus};
use naxos_core::serde_json::{json, Value};
use naxos_core::testkit::service_url;
use naxos_core::{Engine, EngineConfig, Error, ExecutionId, ExecutionStatus};
use naxos_postgres::sqlx::migrate::Migrator;
use naxos_postgres::sqlx::postgres::PgConnectOptions;
use naxos_postgres::sqlx::{self, Connection, PgConnection};
use naxos_postgres::{PgConfig, PgStore};

/// The migrations of this build, as embedded in the store.
fn migrations() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// A new, empty schema on the test database: its name and connect options that use it.
fn fresh_schema() -> Option<(String, PgConnectOptions)> {
    let url = service_url("NAXOS_TEST_POSTGRES_URL")?;
    let schema = format!(
        "naxos_upg_{}",
        &naxos_core::uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    Some((schema.clone(), options.options([("search_path", schema.as_str())])))
}

async fn connect(options: &PgConnectOptions, schema: &str) -> PgConnection {
    let mut conn = PgConnection::connect_with(options).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Applies the first `n` migrations only: the schema as the release that had those left it.
async fn migrate_first(conn: &mut PgConnection, n: usize) {
    let mut old = migrations();
    old.migrations = Cow::Owned(old.migrations[..n].to_vec());
    old.run(&mut *conn).await.expect("the older migrations apply");
}

async fn store_in(schema: &str) -> naxos_core::Result<PgStore> {
    let mut config = PgConfig::new(service_url("NAXOS_TEST_POSTGRES_URL").unwrap());
    config.schema = Some(schema.to_string());
    config.max_connections = 4;
    PgStore::with_config(config).await
}

async fn applied(conn: &mut PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap()
}

async fn insert_future_migration(conn: &mut PgConnection) {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', true, '\\x00'::bytea, 0)",
    )
    .execute(conn)
    .await
    .unwrap();
}

fn assert_newer_schema(error: &Error) {
    let text = error.to_string();
    assert!(error.is_newer_version(), "{error:?}");
    assert!(
        text.starts_with("the database schema is newer than this naxos")
            && text.contains("migration 9999 (from the future)")
            && text.ends_with("upgrade this node"),
        "{text}"
    );
}

/// A node whose binary is older than the database's schema refuses to start, says why, and
/// leaves the schema alone (a migration it would otherwise have applied stays unapplied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_schema_newer_than_this_naxos_is_refused_untouched() {
    let Some((schema, options)) = fresh_schema() else {
        return;
    };
    // Applied in full by a current node, then moved on by a "newer" one.
    drop(store_in(&schema).await.unwrap());
    let mut conn = connect(&options, &schema).await;
    insert_future_migration(&mut conn).await;
    let refused = store_in(&schema).await.expect_err("the newer schema is refused");
    assert_newer_schema(&refused);

    // The same through `migrate` on a pool. The migrator's advisory lock (one per database,
    // whatever the schema) is not left held by a connection idling in the pool: another
    // session that migrates gets its answer instead of waiting for ever.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .unwrap();
    assert_newer_schema(&naxos_postgres::migrate(&pool).await.unwrap_err());
    let elsewhere = tokio::time::timeout(Duration::from_secs(10), store_in(&schema))
        .await
        .expect("the migrator's lock was released");
    assert_newer_schema(&elsewhere.unwrap_err());
    drop(pool);

    // A schema one migration short of this build's, plus the future one: nothing is applied.
    let Some((schema, options)) = fresh_schema() else {
        return;
    };
    let mut conn = connect(&options, &schema).await;
    let known = migrations().migrations.len();
    migrate_first(&mut conn, known - 1).await;
    insert_future_migration(&mut conn).await;
    let before = applied(&mut conn).await;
    assert_newer_schema(&store_in(&schema).await.unwrap_err());
    assert_eq!(applied(&mut conn).await, before, "no migration was applied");
}

/// A definition written in a format newer than this build knows: reading it is refused with a
/// clear error, and its tasks are not claimed (the message goes back for a newer node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_in_a_newer_format_is_refused_not_misread() {
    let Some(store) = common::store().await else { return };
    let def = naxos_core::testkit::diamond();
    let put = store.put_definition(def.clone()).await.unwrap();
    let new = naxos_core::backend::NewExecution::new(&put.definition, json!({}));
    let id = store.create_execution(new).await.unwrap().execution_id;
    let set_format = |format: i32| {
        sqlx::query("UPDATE naxos_definitions SET format = $1 WHERE id = $2")
            .bind(format)
            .bind(def.id.clone())
            .execute(store.pool())
    };
    let newer = naxos_core::JobDefinition::FORMAT + 1;
    set_format(newer as i32).await.unwrap();

    let refused = store.get_definition(&def.id, Some(1)).await.unwrap_err();
    let text = refused.to_string();
    assert!(refused.is_newer_version(), "{refused:?}");
    assert!(
        text.contains(&format!("job definition `{}` version 1", def.id))
            && text.contains(&format!("format {newer}"))
            && text.ends_with("upgrade this node"),
        "{text}"
    );
    assert!(store
        .get_definition(&def.id, None)
        .await
        .unwrap_err()
        .is_newer_version());

    let root = TaskRef::new(id, "a", 1);
    let claim = ClaimRequest {
        task: root.clone(),
        owner: "old-node".into(),
        lease: Duration::from_secs(30),
    };
    let refused = store.claim(claim.clone()).await.unwrap_err();
    assert!(refused.is_newer_version(), "{refused:?}");
    let exec = store.get_execution(id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Pending, "the claim changed nothing");
    let a = exec.task("a").unwrap();
    assert_eq!((a.status, a.attempts, a.history.len()), (TaskStatus::Queued, 0, 0));

    // Registering through this node still works: it cannot be the same content, so it is the
    // next version, in this build's format, readable here.
    let mut changed = def.clone();
    changed.name = "changed".into();
    let put = store.put_definition(changed.clone()).await.unwrap();
    assert!(put.created);
    assert_eq!(put.definition.version, 2);
    assert_eq!(store.get_definition(&def.id, None).await.unwrap().definition, changed);
    assert!(!store.put_definition(changed).await.unwrap().created);

    // The refusal was the format's doing: at format 1 (the diamond's) the same claim goes through.
    set_format(1).await.unwrap();
    store.claim(claim).await.unwrap();
}

/// The original naxos's sample-2 diamond, with functions this test registers.
const LEGACY_DEFINITION: &str = r#"{ "id": "legacy", "name": "Parallel Task Execution",
  "tasks": { "task1": {"id":"task1","name":"Initial Task","maxRetry":3,"functionName":"Task1"},
             "task2": {"id":"task2","name":"Parallel Task A","maxRetry":2,"functionName":"Task2"},
             "task3": {"id":"task3","name":"Parallel Task B","maxRetry":2,"functionName":"Task3"},
             "task4": {"id":"task4","name":"Final Task","maxRetry":1,"functionName":"Task4"} },
  "graph": { "task1": [], "task2": ["task1"], "task3": ["task1"], "task4": ["task2","task3"] } }"#;

/// Writes, with plain SQL, what a release with only the first `migrations` migrations wrote:
/// the definition, a RUNNING execution (task1 COMPLETED, task2 QUEUED with its message lost,
/// task3 RUNNING on a node that died, task4 PENDING) and a FAILED one (task1 FAILED after a
/// retry, the rest SKIPPED), with their attempt records. Columns a later migration added are
/// written only when that migration is in; a new migration that adds one extends this.
async fn write_as_an_older_release(conn: &mut PgConnection, migrations: usize) -> (ExecutionId, ExecutionId) {
    let body: Value = naxos_core::serde_json::from_str(LEGACY_DEFINITION).unwrap();
    sqlx::query(
        "INSERT INTO naxos_definitions (id, version, name, body, created_at)
         VALUES ('legacy', 1, 'Parallel Task Execution', $1, now() - interval '2 hours')",
    )
    .bind(&body)
    .execute(&mut *conn)
    .await
    .unwrap();

    let running = naxos_core::uuid::Uuid::now_v7();
    let failed = naxos_core::uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO naxos_executions
             (id, definition_id, definition_version, status, params, error, created_at, updated_at, start_time, end_time)
         VALUES ($1, 'legacy', 1, 'RUNNING', '{\"city\": \"Naxos\"}', NULL,
                 now() - interval '1 hour', now() - interval '50 minutes', now() - interval '59 minutes', NULL),
                ($2, 'legacy', 1, 'FAILED', '{\"city\": \"Paros\"}', 'task `task1` failed: boom',
                 now() - interval '1 hour', now() - interval '40 minutes', now() - interval '59 minutes',
                 now() - interval '40 minutes')",
    )
    .bind(running)
    .bind(failed)
    .execute(&mut *conn)
    .await
    .unwrap();

    let ago = |minutes: i32| format!("now() - interval '{minutes} minutes'");
    let tasks = [
        // (execution, task, position, status, deps, dependents, remaining, attempt, attempts, failures,
        //  error, output, lease_owner, lease_expires_at, queued_at, start_time, end_time)
        format!(
            "('{running}', 'task1', 0, 'Initial Task', 'Task1', 'COMPLETED', '{{}}', '{{task2,task3}}', 0, 1, 1, 0,
              NULL, '{{\"from\": \"task1\"}}', NULL, NULL, {}, {}, {})",
            ago(60),
            ago(59),
            ago(55)
        ),
        format!(
            "('{running}', 'task2', 1, 'Parallel Task A', 'Task2', 'QUEUED', '{{task1}}', '{{task4}}', 0, 1, 0, 0,
              NULL, NULL, NULL, NULL, {}, NULL, NULL)",
            ago(55)
        ),
        format!(
            "('{running}', 'task3', 2, 'Parallel Task B', 'Task3', 'RUNNING', '{{task1}}', '{{task4}}', 0, 1, 1, 0,
              NULL, NULL, 'old-node', {}, {}, {}, NULL)",
            ago(45),
            ago(55),
            ago(54)
        ),
        format!(
            "('{running}', 'task4', 3, 'Final Task', 'Task4', 'PENDING', '{{task2,task3}}', '{{}}', 2, 1, 0, 0,
              NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
        format!(
            "('{failed}', 'task1', 0, 'Initial Task', 'Task1', 'FAILED', '{{}}', '{{task2,task3}}', 0, 2, 2, 2,
              'boom', NULL, NULL, NULL, {}, {}, {})",
            ago(50),
            ago(45),
            ago(40)
        ),
        format!(
            "('{failed}', 'task2', 1, 'Parallel Task A', 'Task2', 'SKIPPED', '{{task1}}', '{{task4}}', 1, 1, 0, 0,
              'skipped: upstream task `task1` failed', NULL, NULL, NULL, NULL, NULL, {})",
            ago(40)
        ),
        format!(
            "('{failed}', 'task3', 2, 'Parallel Task B', 'Task3', 'SKIPPED', '{{task1}}', '{{task4}}', 1, 1, 0, 0,
              'skipped: upstream task `task1` failed', NULL, NULL, NULL, NULL, NULL, {})",
            ago(40)
        ),
        format!(
            "('{failed}', 'task4', 3, 'Final Task', 'Task4', 'SKIPPED', '{{task2,task3}}', '{{}}', 2, 1, 0, 0,
              'skipped: upstream task `task1` failed', NULL, NULL, NULL, NULL, NULL, {})",
            ago(40)
        ),
    ];
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO naxos_tasks (execution_id, task_id, position, name, function_name, status, dependencies,
             dependents, remaining, attempt, attempts, failures, error, output, lease_owner, lease_expires_at,
             queued_at, start_time, end_time)
         VALUES {}",
        tasks.join(",\n")
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO naxos_attempts (execution_id, task_id, attempt, node, started_at, ended_at, outcome, error)
         VALUES ('{running}', 'task1', 1, 'old-node', {}, {}, 'COMPLETED', NULL),
                ('{running}', 'task3', 1, 'old-node', {}, NULL, NULL, NULL),
                ('{failed}', 'task1', 1, 'old-node', {}, {}, 'RETRYING', 'boom'),
                ('{failed}', 'task1', 2, 'old-node', {}, {}, 'FAILED', 'boom')",
        ago(59),
        ago(55),
        ago(54),
        ago(50),
        ago(49),
        ago(45),
        ago(40)
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO naxos_nodes (id, role, concurrency, running, started_at, last_seen)
         VALUES ('old-node', 'all', 16, 1, now() - interval '3 hours', now() - interval '45 minutes')",
    )
    .execute(&mut *conn)
    .await
    .unwrap();

    // 0002: the revision counter, bumped by every transition that could end a task.
    if migrations >= 2 {
        sqlx::query("UPDATE naxos_executions SET revision = CASE WHEN id = $1 THEN 1 ELSE 4 END")
            .bind(running)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // 0003: how often a QUEUED task's message was published again.
    if migrations >= 3 {
        sqlx::query("UPDATE naxos_tasks SET republished = 1 WHERE execution_id = $1 AND task_id = 'task2'")
            .bind(running)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    (running, failed)
}

/// What the older release wrote reads back through the Store API, unchanged.
async fn assert_reads_back(store: &PgStore, running: ExecutionId, failed: ExecutionId, migrations: usize) {
    let stored = store.get_definition("legacy", None).await.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.definition, JobDefinition::from_json(LEGACY_DEFINITION).unwrap());
    let listed = store.list_definitions().await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].latest_version, listed[0].task_count),
        (1, 1, 4)
    );

    let exec = store.get_execution(running).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Running);
    assert_eq!(exec.data, json!({"city": "Naxos"}));
    // 0005: no release before it kept a trace context.
    assert_eq!(exec.traceparent, None);
    let statuses: Vec<TaskStatus> = exec.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Completed,
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Pending
        ]
    );
    let task1 = exec.task("task1").unwrap();
    assert_eq!(task1.output, Some(json!({"from": "task1"})));
    assert_eq!(task1.history.len(), 1);
    assert_eq!(task1.history[0].outcome, Some(AttemptOutcome::Completed));
    let task2 = exec.task("task2").unwrap();
    assert_eq!(task2.republished, u32::from(migrations >= 3));
    let task3 = exec.task("task3").unwrap();
    assert_eq!(task3.lease.as_ref().map(|l| l.owner.as_str()), Some("old-node"));
    assert_eq!(exec.task("task4").unwrap().remaining_dependencies, 2);

    let exec = store.get_execution(failed).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(exec.error.as_deref(), Some("task `task1` failed: boom"));
    let task1 = exec.task("task1").unwrap();
    assert_eq!(
        (task1.status, task1.failures, task1.history.len()),
        (TaskStatus::Failed, 2, 2)
    );

    let all = store.list_executions(&ExecutionQuery::default()).await.unwrap();
    assert_eq!(all.executions.len(), 2);
    let only_failed = ExecutionQuery {
        status: Some(ExecutionStatus::Failed),
        ..ExecutionQuery::default()
    };
    let page = store.list_executions(&only_failed).await.unwrap();
    assert_eq!(page.executions.iter().map(|e| e.id).collect::<Vec<_>>(), [failed]);
    assert_eq!(store.list_nodes().await.unwrap()[0].id, "old-node");
}

fn engine_on(store: PgStore) -> Engine {
    let engine = Engine::builder()
        .store(Arc::new(store))
        .queue(Arc::new(MemoryQueue::new()))
        .config(EngineConfig {
            node_id: "new-node".into(),
            lease_ttl: Duration::from_secs(5),
            sweep_interval: Duration::from_millis(100),
            republish_after: Duration::from_millis(300),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    for name in ["Task1", "Task2", "Task3", "Task4"] {
        engine.register(name, move |ctx| async move {
            let upstream: Vec<(String, Value)> = ["task1", "task2", "task3"]
                .into_iter()
                .filter_map(|t| ctx.upstream(t).map(|v| (t.to_string(), v.clone())))
                .collect();
            Ok(json!({ "ran": name, "upstream": upstream }))
        });
    }
    engine
}

/// For each older release (each proper prefix of the migration list): build its schema, write
/// data as it did, connect a current PgStore (which runs the remaining migrations), read it all
/// back, and let a current engine finish the running execution and retry the failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_of_every_older_schema_migrates_forward_and_runs_on() {
    let total = migrations().migrations.len();
    for older in 1..total {
        let Some((schema, options)) = fresh_schema() else {
            return;
        };
        let mut conn = connect(&options, &schema).await;
        migrate_first(&mut conn, older).await;
        let (running, failed) = write_as_an_older_release(&mut conn, older).await;

        let store = store_in(&schema).await.expect("the remaining migrations apply");
        assert_eq!(applied(&mut conn).await.len(), total, "from {older} migrations");
        assert_reads_back(&store, running, failed, older).await;
        // 0012: rows from before it started at once; none waits for a time, none is started.
        for id in [running, failed] {
            let exec = store.get_execution(id).await.unwrap();
            assert!(
                exec.scheduled_for.is_none() && !exec.summary.is_delayed(),
                "from {older}"
            );
        }
        assert!(store.wake_due(10).await.unwrap().ready.is_empty(), "from {older}");
        // 0011: rows from before it follow the server's default retention (ended 40 minutes ago).
        let a_day = RetentionDefaults::uniform(Duration::from_secs(24 * 3600));
        assert_eq!(store.prune(a_day, 10).await.unwrap(), 0, "from {older}");

        let engine = engine_on(store.clone());
        engine.start().unwrap();
        // task2's message was lost and task3's node died: the sweeper republishes the one and
        // recovers the other, and task4 runs on their outputs and task1's old one.
        let done = engine.wait_for_timeout(running, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            done.status,
            ExecutionStatus::Completed,
            "from {older}: {:?}",
            done.error
        );
        let task2 = done.task("task2").unwrap().output.clone().unwrap();
        assert_eq!(task2["upstream"], json!([["task1", {"from": "task1"}]]));
        let task4 = done.task("task4").unwrap().output.clone().unwrap();
        assert_eq!(task4["upstream"].as_array().map(Vec::len), Some(2));
        let task3 = done.task("task3").unwrap();
        let outcomes: Vec<_> = task3.history.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            [Some(AttemptOutcome::Expired), Some(AttemptOutcome::Completed)]
        );

        engine.retry(failed).await.unwrap();
        let done = engine.wait_for_timeout(failed, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            done.status,
            ExecutionStatus::Completed,
            "from {older}: {:?}",
            done.error
        );
        assert_eq!(done.task("task1").unwrap().history.len(), 3);
        engine.shutdown().await;
        // Both finished now, in rows written before 0011: pruned by the default, like any other.
        let none = RetentionDefaults::uniform(Duration::ZERO);
        assert_eq!(store.prune(none, 10).await.unwrap(), 2, "from {older}");

        // A definition registered now is in this build's format and reads back.
        let again = store
            .put_definition(JobDefinition::from_json(LEGACY_DEFINITION).unwrap())
            .await
            .unwrap();
        assert!(!again.created, "identical content is still a no-op across the upgrade");
        let format: i32 = sqlx::query_scalar("SELECT format FROM naxos_definitions WHERE id = 'legacy'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(format, 1);
        conn.close().await.unwrap();
    }
}
