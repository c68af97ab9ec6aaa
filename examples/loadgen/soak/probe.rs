//! What the soak reads besides the API: the server's anonymous memory from `/proc`, and the
//! database's connections and table sizes.

use anyhow::Context;
use naxos_postgres::sqlx::postgres::PgPoolOptions;
use naxos_postgres::sqlx::{self, PgPool};

/// `RssAnon` of process `pid`, in bytes: its heap and stacks. Not `VmRSS`, which also counts
/// mapped files (the binary, LMDB's map) that the kernel may page in and out at will.
pub(crate) fn rss_anon(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status: has the server exited?"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .context("no RssAnon line in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// CPU time of process `pid` so far (user + system, all threads), in seconds: `/proc/PID/stat`
/// counts it in USER_HZ ticks, 100 a second on Linux.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat: has the server exited?"))?;
    // Fields after the command name (in parentheses, which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/PID/stat: no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .context("/proc/PID/stat: short line")
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// The server's database, seen from one connection of the soak's own.
pub(crate) struct Database {
    pool: PgPool,
}

/// One reading of the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbReading {
    /// Connections to the server's database, the soak's own excluded.
    pub(crate) connections: i64,
    /// `pg_total_relation_size` (heap, indexes, TOAST) of the `naxos_*` tables, in bytes.
    pub(crate) tables_bytes: i64,
}

impl Database {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .context("connecting to --postgres-url")?;
        Ok(Self { pool })
    }

    pub(crate) async fn read(&self) -> anyhow::Result<DbReading> {
        let (connections, tables_bytes): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()),
                    (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind = 'r' AND c.relname LIKE 'naxos\\_%'
                       AND n.nspname NOT IN ('pg_catalog', 'information_schema'))",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(DbReading {
            connections,
            tables_bytes,
        })
    }
}
