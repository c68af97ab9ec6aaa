//! Pruning under load (`--seed-finished N [--prune]`, PostgreSQL stacks): `N` finished diamond
//! executions, each with its four task rows and attempt records, ended eight days ago, are
//! written straight into the run's schema before the burst; with `--prune` a pruner deletes
//! them during the burst through `Store::prune` in batches of 1,000, back to back (harder on
//! the load than the sweeper, which takes at most ten batches a sweep). Without `--prune` the
//! same rows stay: the control run, with the same table sizes. The engine's own retention is
//! set to 30 days in both, so its sweeper leaves the seeded rows alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use naxos::backend::Store;
use naxos::serde_json::{json, Value};
use naxos::RetentionDefaults;
use naxos_postgres::PgStore;

/// Rows written per seeding statement.
const SEED_BATCH: usize = 10_000;
/// Executions per prune call: the sweeper's batch.
const BATCH: usize = 1_000;

/// What the seeded rows are pruned by: a week (they ended eight days ago).
pub(crate) fn defaults() -> RetentionDefaults {
    RetentionDefaults::uniform(Duration::from_secs(7 * 24 * 3600))
}

/// Writes `n` finished executions of `definition` (version 1, the diamond's tasks `a`..`d`).
pub(crate) async fn seed(store: &PgStore, definition: &str, n: usize) -> anyhow::Result<()> {
    let pool = store.pool();
    let mut done = 0;
    while done < n {
        let rows = SEED_BATCH.min(n - done);
        naxos_postgres::sqlx::query(
            "WITH e AS (
                 INSERT INTO naxos_executions
                     (id, definition_id, definition_version, status, params, created_at, updated_at, start_time, end_time)
                 SELECT gen_random_uuid(), $1, 1, 'COMPLETED', '{}', t, t, t, t
                 FROM (SELECT now() - INTERVAL '8 days' - g * INTERVAL '1 millisecond' AS t
                       FROM generate_series(1, $2) g) s
                 RETURNING id, end_time
             ), t AS (
                 INSERT INTO naxos_tasks
                     (execution_id, task_id, position, name, function_name, status, dependencies, dependents,
                      remaining, attempt, attempts, output, start_time, end_time)
                 SELECT e.id, k.task_id, k.position, k.task_id, 'noop', 'COMPLETED', k.deps, k.dependents, 0, 1, 1,
                        '\"ok\"', e.end_time, e.end_time
                 FROM e, (VALUES ('a', 0, '{}'::TEXT[], '{b,c}'::TEXT[]), ('b', 1, '{a}', '{d}'),
                                 ('c', 2, '{a}', '{d}'), ('d', 3, '{b,c}', '{}')) AS k(task_id, position, deps, dependents)
                 RETURNING execution_id, task_id, end_time
             )
             INSERT INTO naxos_attempts (execution_id, task_id, attempt, node, started_at, ended_at, outcome)
             SELECT execution_id, task_id, 1, 'seed', end_time, end_time, 'COMPLETED' FROM t",
        )
        .bind(definition)
        .bind(rows as i32)
        .execute(pool)
        .await
        .context("seeding finished executions")?;
        done += rows;
    }
    naxos_postgres::sqlx::query("ANALYZE naxos_executions")
        .execute(pool)
        .await?;
    Ok(())
}

/// Prunes until a batch finds nothing; returns how many, how long, and each batch's time.
pub(crate) async fn run(store: Arc<PgStore>) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut batch_ms = Histogram::<u64>::new(3)?;
    let mut pruned = 0;
    let mut batches = 0;
    loop {
        let t = Instant::now();
        let n = store.prune(defaults(), BATCH).await?;
        batch_ms.record(t.elapsed().as_micros().max(1) as u64)?;
        batches += 1;
        pruned += n;
        if n == 0 {
            break;
        }
    }
    let ms = |q: f64| batch_ms.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "pruned": pruned, "seconds": started.elapsed().as_secs_f64(), "batches": batches,
        "batchMs": { "p50": ms(0.5), "p99": ms(0.99), "max": batch_ms.max() as f64 / 1000.0 },
    }))
}
