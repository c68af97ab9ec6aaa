//! # naxos-postgres
//!
//! [`PgStore`]: the naxos [`Store`](naxos_core::backend::Store) on PostgreSQL (sqlx). Every
//! definition, execution, task run and attempt is a row; every transition is one transaction.
//!
//! The rules are not written here: they are naxos-core's state module
//! ([`naxos_core::state`]), and this crate persists what it decides.
//!
//! **Wiring it.** Connect (which creates the schema and applies the migrations), hand the
//! store to the engine, and start it; through the facade with the `postgres` feature, these are
//! `naxos::postgres::{PgConfig, PgStore}` and `naxos::Engine`. Nodes that share the database
//! share the work; give them a shared Queue too (`naxos-amqp`), since the engine's default
//! in-memory one reaches only its own node.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use naxos_core::serde_json::json;
//! use naxos_core::{Engine, ExecuteRequest};
//! use naxos_postgres::{PgConfig, PgStore};
//!
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::with_config(PgConfig {
//!     schema: Some("naxos".into()),
//!     ..PgConfig::new("postgres://app:secret@127.0.0.1:5432/app")
//! })
//! .await?;
//! let engine = Engine::builder().store(Arc::new(store.clone())).node_id("billing-1").build()?;
//! engine.register("charge", |ctx| async move { Ok(json!({ "order": ctx.params()["order"] })) });
//! engine.start()?;
//!
//! // An order and the workflow that fulfils it commit together, or neither does
//! // (`fulfil-order`: a definition registered earlier, whose tasks call `charge`).
//! let mut tx = store.pool().begin().await?;
//! sqlx::query("INSERT INTO app_orders (id) VALUES ($1)").bind(42).execute(&mut *tx).await?;
//! let submitted = store
//!     .execute_in(&mut tx, ExecuteRequest::new("fulfil-order", json!({ "order": 42 })))
//!     .await?;
//! tx.commit().await?;
//! let done = engine.wait_for(submitted.execution_id).await?;
//! # let _ = done;
//! # Ok(())
//! # }
//! ```
//!
//! - **Cold transitions** (release, stop, retry, a final failure, a batch of finishes, lease
//!   recovery, stale take-over) lock the execution's row (`SELECT … FOR NO KEY UPDATE`), load
//!   it, apply the state function, and write back what changed in one statement (`apply.rs`).
//!   Transitions of one execution therefore run one after another, while different executions
//!   proceed in parallel; one lock order (executions in id order within a batch) means no
//!   deadlocks between them.
//! - **Hot transitions** — the creation, the claim, the heartbeat, and a completion or
//!   retryable failure of a plain task — are one hand-written statement each (one round trip,
//!   committed on its own). Each is guarded like the state module's function (`WHERE attempt =
//!   $n AND status IN (…)`: a stale or duplicate message matches no row and changes nothing) and
//!   builds its results from the state module's rules; the differential test of the
//!   conformance suite runs random operation sequences here and on the state module and
//!   asserts the same results, events, attempt records and executions.
//! - A single statement reads through the snapshot it started with, so the one-statement
//!   finish compares the execution's `revision` (bumped by every transition that can end a task)
//!   as locked and as seen, and falls back to the cold path when a transition committed while
//!   it waited for the lock.
//! - The recovery scans that run on every node pick candidates without locks and apply the
//!   state function to each under its row lock with `SKIP LOCKED`, so each task is recovered by
//!   exactly one sweeper.
//!
//! **Transactional enqueue.** [`PgStore::execute_in`] creates an execution inside the caller's
//! own sqlx transaction (schema-qualified, so on any connection to the database): the execution
//! exists if and only if the caller's transaction commits. A `NOTIFY` sent on commit wakes a
//! listening node, which takes the execution from `naxos_outbox` with `SKIP LOCKED` (one node
//! per execution) and publishes its first tasks; a row left by a crash is taken by the next
//! sweep. `examples/transactional.rs` does it in an axum handler.
//!
//! Migrations are embedded and applied on connect; [`migrate`] applies them to any pool.
//! Table names are unqualified, so [`PgConfig::schema`] isolates installations (and tests).
//!
//! **Upgrades.** The schema's version is the list of applied migrations (sqlx's
//! `_sqlx_migrations`). They only run forward, and each keeps the previous release working
//! while its nodes still run beside upgraded ones (new columns have defaults; nothing the
//! previous release reads is renamed, dropped or given a new meaning), so a rolling upgrade
//! needs no downtime: the first upgraded node migrates, the others carry on. A node whose build
//! is older than the schema (the database has a migration it does not know) refuses to start
//! with [`Error::NewerVersion`] — "the database schema is newer than this naxos: it has
//! migration N (…) …; upgrade this node" — and changes nothing. A definition's body is JSON
//! with a `format` column beside it ([`JobDefinition::FORMAT`](naxos_core::JobDefinition::FORMAT)):
//! a definition of a newer format is refused on reading with the same kind of error, and its
//! tasks are never claimed here (the claim's guard), so their messages go back for an upgraded
//! node. Params and outputs are the user's JSON, stored and handed back verbatim: naxos reads
//! nothing in them, so there is nothing to version. `tests/upgrades.rs` builds the schema of
//! every older release, writes its data as that release did, and runs this store and the
//! engine on it.

mod apply;
mod batch;
mod claim;
mod codec;
mod connect;
mod definitions;
mod error;
mod executions;
mod outbox;
mod rates;
mod recovery;
mod schedules;
mod settle;
mod slots;
mod store;
mod time;

use std::sync::Arc;
use std::time::Duration;

use naxos_core::{Clock, Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use time::StoreClock;

pub use connect::ConnectError;
pub use sqlx;

/// See [`PgConfig::timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: String,
    /// Most connections in the pool. Default 16.
    pub max_connections: u32,
    /// The longest any Store call may take, end to end: waiting for a free connection, and
    /// each statement on the server (PostgreSQL's `statement_timeout` and
    /// `idle_in_transaction_session_timeout` on every connection, so the server gives up and
    /// releases its locks too). Past it the call fails as a transient error, also when the
    /// network goes silent. Migrations run without it. Default 10 s.
    pub timeout: Duration,
    /// A schema for naxos's tables (created if missing); the user's default search path when `None`.
    pub schema: Option<String>,
    /// The clock transitions read; the database's when `None` (the default), so that every
    /// node judges leases, due times and deadlines by one clock. Tests inject a fake one.
    pub clock: Option<Clock>,
}

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            timeout: DEFAULT_TIMEOUT,
            schema: None,
            clock: None,
        }
    }
}

/// The naxos Store on PostgreSQL. Cheap to clone (a pool and a clock).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    clock: Arc<StoreClock>,
    timeout: Duration,
    /// The schema the tables are in: [`PgConfig::schema`], else the pool's `current_schema()`.
    schema: Arc<tokio::sync::OnceCell<String>>,
    /// The listener for executions created in callers' transactions (`outbox.rs`).
    wakeups: Arc<outbox::Wakeups>,
}

impl PgStore {
    /// Connects to `url` with default settings and applies the migrations.
    ///
    /// When PostgreSQL cannot be reached or refuses the connection, this fails at once (or
    /// after [`PgConfig::timeout`] when the server does not answer) with an error whose cause
    /// is a [`ConnectError`]: "cannot connect to PostgreSQL at 127.0.0.1:5432 (database `naxos`,
    /// user `naxos`): connection refused (is PostgreSQL running, and listening there?)", or
    /// "… authentication failed: …". Transient when the server may yet come up, permanent when
    /// it answered no.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::with_config(PgConfig::new(url)).await
    }

    /// Connects as `config` says, creates its schema if needed, and applies the migrations.
    pub async fn with_config(config: PgConfig) -> Result<Self> {
        let mut options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| Error::InvalidInput(format!("PostgreSQL URL: {e}")))?;
        if config.timeout.is_zero() {
            return Err(Error::InvalidInput("PgConfig::timeout must be more than zero".into()));
        }
        if let Some(schema) = &config.schema {
            if schema.is_empty()
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(Error::InvalidInput(format!(
                    "schema `{schema}` must be lowercase letters, digits and underscores"
                )));
            }
            options = options.options([("search_path", schema.as_str())]);
        }
        // Schema and migrations on one connection of their own, without the call deadline (a
        // migration may take longer than any Store call should). Made first and alone, so that
        // a server that is down or refuses this node is reported at once, naming where and why.
        let mut conn = connect::first_connection(&options, config.timeout).await?;
        if let Some(schema) = &config.schema {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
                .execute(&mut conn)
                .await
                .map_err(error::db)?;
        }
        if let Err(e) = migrate_on(&mut conn).await {
            let _ = conn.close().await;
            return Err(e);
        }
        conn.close().await.map_err(error::db)?;
        let ms = config.timeout.as_millis().to_string();
        let options = options.options([
            ("statement_timeout", ms.as_str()),
            ("idle_in_transaction_session_timeout", ms.as_str()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout)
            .connect_with(options)
            .await
            .map_err(error::db)?;
        Ok(Self {
            pool,
            clock: Arc::new(StoreClock::new(config.clock)),
            timeout: config.timeout,
            schema: Arc::new(tokio::sync::OnceCell::new_with(config.schema)),
            wakeups: Arc::default(),
        })
    }

    /// A store on an existing pool (the migrations must have been applied: see [`migrate`]),
    /// on the database's clock.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            clock: Arc::new(StoreClock::new(None)),
            timeout: DEFAULT_TIMEOUT,
            schema: Arc::default(),
            wakeups: Arc::default(),
        }
    }

    /// Runs one Store call under [`PgConfig::timeout`].
    pub(crate) async fn within<T>(&self, what: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        naxos_core::backend::within(self.timeout, "PostgreSQL", what, call).await
    }

    /// The time now, by the store's clock.
    /// The schema the store's tables are in.
    pub(crate) async fn schema(&self) -> Result<&str> {
        self.schema
            .get_or_try_init(|| async {
                sqlx::query_scalar::<_, String>("SELECT current_schema()")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(error::db)
            })
            .await
            .map(String::as_str)
    }

    pub(crate) async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        self.clock.now(&self.pool).await
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Applies naxos's embedded migrations (idempotent; safe from several nodes at once).
///
/// A database that has a migration this build does not know — its schema was moved on by a
/// newer release — is refused with [`Error::NewerVersion`] naming that migration, and nothing
/// is changed: this node must be upgraded, not the database rolled back.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(error::db)?;
    let migrated = migrate_on(&mut conn).await;
    if migrated.is_err() {
        // The migrator's session-level advisory lock may still be held: close this connection
        // (which releases it) instead of handing it back to the pool.
        let _ = conn.detach().close().await;
    }
    migrated
}

/// The migrations embedded in this build.
fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

async fn migrate_on(conn: &mut sqlx::PgConnection) -> Result<()> {
    let migrator = migrator();
    match migrator.run(&mut *conn).await {
        Ok(()) => Ok(()),
        // sqlx checks every applied migration against its list before it applies anything.
        Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
            Err(unknown_migrations(conn, &migrator, version).await)
        }
        Err(sqlx::migrate::MigrateError::Execute(e)) => Err(error::db(e)),
        Err(other) => Err(Error::permanent(other)),
    }
}

/// The error for a database that has migrations this build does not know (`missing` is one of
/// them): named, with their descriptions, from `_sqlx_migrations`.
async fn unknown_migrations(conn: &mut sqlx::PgConnection, migrator: &sqlx::migrate::Migrator, missing: i64) -> Error {
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    let newest = migrator.iter().max_by_key(|m| m.version);
    let sql = format!(
        "SELECT version, description FROM {} WHERE NOT (version = ANY($1)) ORDER BY version",
        migrator.table_name
    );
    let applied: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&known)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|_| vec![(missing, String::from("?"))]);
    let list = applied
        .iter()
        .map(|(v, d)| format!("{v} ({d})"))
        .collect::<Vec<_>>()
        .join(", ");
    let plural = if applied.len() > 1 { "migrations" } else { "migration" };
    match newest {
        Some(newest) if applied.iter().all(|(v, _)| *v > newest.version) => Error::newer_version(
            "the database schema",
            format!("{plural} {list}"),
            format!("migration {} ({})", newest.version, newest.description),
        ),
        _ => Error::permanent(format!(
            "the database has {plural} {list}, which this naxos does not know although they are older than \
             its newest: the schema was made by a different build of naxos; nothing was changed"
        )),
    }
}

/// Runs `$attempt` (an expression giving a `naxos_core::Result`) again while it fails only
/// because it raced another transaction (serialization failure, deadlock), up to 5 times.
macro_rules! retry_races {
    ($what:literal, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            tries += 1;
            let result: naxos_core::Result<_> = $attempt;
            match result {
                Err(e) if tries < 5 && $crate::error::is_race(&e) => {
                    tracing::debug!(error = %e, tries, concat!($what, " raced another; running it again"));
                    continue;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_races;

/// Runs `$body` in a transaction bound to `$tx`, committing on `Ok`; a transaction that lost a
/// race is run again (see `retry_races!`).
macro_rules! transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {
        $crate::retry_races!("a transaction", {
            let mut $tx = $pool.begin().await.map_err($crate::error::db)?;
            let result: naxos_core::Result<_> = async { $body }.await;
            match result {
                Ok(value) => $tx.commit().await.map(|()| value).map_err($crate::error::db),
                Err(e) => Err(e),
            }
        })
    };
}
pub(crate) use transaction;

/// Runs `$body` — one statement, which commits on its own — on a connection bound to `$conn`,
/// without the round trips of BEGIN and COMMIT; a statement that lost a race is run again.
macro_rules! statement {
    ($pool:expr, |$conn:ident| $body:expr) => {
        $crate::retry_races!("a statement", {
            let mut $conn = $pool.acquire().await.map_err($crate::error::db)?;
            $body
        })
    };
}
pub(crate) use statement;
