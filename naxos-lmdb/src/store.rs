//! [`LmdbStore`]: the [`Store`] trait on one LMDB environment.
//!
//! Every transition is a request to the writer thread (`writer.rs`) that loads the execution's
//! [`ExecutionState`], applies naxos-core's state function to it, and writes back the
//! difference with its indexes (`tables.rs`); every read is a read transaction on tokio's
//! blocking pool. The recovery scans are in `scans.rs`.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use heed::RoTxn;
use naxos_core::backend::{
    Changes, ClaimRequest, ClaimedTask, Created, DefinitionPut, ExecutionPage, ExecutionQuery, FinishReport, Fired,
    LeaseState, NewExecution, ScheduleTick, SignalOutcome, StopOutcome, StopReason, Store, StoreCounts, TaskFinish,
};
use naxos_core::clock::before;
use naxos_core::model::{
    DefinitionSummary, Execution, ExecutionId, ExecutionStatus, JobDefinition, NodeInfo, RetentionDefaults, Schedule,
    SchedulePut, StoredDefinition, StoredSchedule, TaskRef,
};
use naxos_core::state::{settle_family, RateVerdict};
use naxos_core::{Error, Result};
use serde::Deserialize;

use crate::codec;
use crate::env::{Db, Environment, Kind, Options};
use crate::error::{corrupt, LmdbError};
use crate::keys;
use crate::scans;
use crate::schedules;
use crate::tables::{apply, decode, decode_definition, encode, encode_definition, transition, Reader, Tables, NAMES};
use crate::writer::{Counters, Groups, Shared, Tx, Writer};
use crate::LmdbConfig;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1_000;

/// The durable embedded [`Store`]: definitions, executions, task runs with their attempt
/// records, idempotency keys and nodes in one LMDB environment (one directory), with
/// secondary indexes for listings and recovery scans, written by one group-committing thread.
///
/// Cheap to clone (a handle). The environment closes when the last clone is dropped, after the
/// writer has committed what it holds. See the crate docs for the layout and the rules of the
/// data directory.
#[derive(Debug, Clone)]
pub struct LmdbStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // Declared first, so dropped first: the writer thread ends (and lets go of `shared`)
    // before the environment closes.
    writer: Writer,
    shared: Arc<Shared>,
}

impl LmdbStore {
    /// Opens (creating if needed) the store in directory `path` with default settings.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::with_config(LmdbConfig::new(path))
    }

    /// Opens the store as `config` says. Fails with a permanent error (its cause an
    /// [`LmdbError`]) when the directory is open already in this process, held by another
    /// process, or holds something else than a naxos store; with
    /// [`Error::NewerVersion`] when a newer naxos wrote it.
    ///
    /// This blocks while the environment opens (milliseconds): call it before serving, or
    /// from `spawn_blocking`.
    pub fn with_config(config: LmdbConfig) -> Result<Self> {
        let (env, dbs) = Environment::open(
            Options {
                path: &config.path,
                map_size: config.map_size,
                kind: Kind::Store,
                temporary: config.temporary,
            },
            NAMES,
        )?;
        let tables = Tables::new(dbs);
        crate::retention::backfill(&env, &tables)?;
        let by_status = count_by_status(&env, &tables)?;
        let shared = Arc::new(Shared {
            env,
            tables,
            clock: config.clock,
            stats: Counters::default(),
            by_status,
            groups: Groups::default(),
        });
        let writer = Writer::start(shared.clone(), config.cached_states)?;
        Ok(Self {
            inner: Arc::new(Inner { writer, shared }),
        })
    }

    /// The store's directory (canonical).
    pub fn path(&self) -> &Path {
        self.inner.shared.env.path()
    }

    /// Writes a consistent copy of the store, compacted (free pages left out), to
    /// `<directory>/data.mdb`, while the store keeps serving: LMDB copies from one read
    /// transaction, so the copy is the state of one instant. The directory is created if
    /// needed; an existing `data.mdb` in it is never overwritten. The copy is a complete
    /// store: [`LmdbStore::open`] on that directory reads it (restore = stop the node, put the
    /// copy in place of its directory, start).
    pub async fn backup_to(&self, directory: impl Into<PathBuf>) -> Result<PathBuf> {
        let directory = directory.into();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || backup(&inner.shared.env, &directory))
            .await
            .map_err(|e| Error::permanent(format!("the backup task failed: {e}")))?
    }

    /// How many write requests the writer has taken and in how many durable commits, since
    /// the store opened: `requests / commits` is the group-commit factor.
    pub fn write_stats(&self) -> WriteStats {
        let stats = &self.inner.shared.stats;
        WriteStats {
            requests: stats.requests.load(Ordering::Relaxed),
            commits: stats.commits.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` in the writer's next group (see `writer.rs`).
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// Runs `f` in a read transaction on tokio's blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Reader<'_>, &RoTxn<'_>, DateTime<Utc>) -> Result<T> + Send + 'static,
    {
        self.inner.shared.settled().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let shared = &inner.shared;
            let txn = shared.env.env().read_txn().map_err(|e| shared.env.error(e))?;
            f(shared.reader(), &txn, shared.clock.now())
        })
        .await
        .map_err(|e| Error::permanent(format!("an LMDB read task failed: {e}")))?
    }
}

/// What [`LmdbStore::write_stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Write requests (transitions, creations, registrations...) taken by the writer.
    pub requests: u64,
    /// Write transactions committed (each one durable sync).
    pub commits: u64,
}

fn backup(env: &Environment, directory: &Path) -> Result<PathBuf> {
    let io = |e: std::io::Error| {
        Error::from(LmdbError::Lmdb {
            path: directory.to_path_buf(),
            source: Arc::new(heed::Error::Io(e)),
        })
    };
    std::fs::create_dir_all(directory).map_err(io)?;
    let target = directory.join("data.mdb");
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(io)?;
    let copied = env
        .env()
        .copy_to_file(&mut file, heed::CompactionOption::Enabled)
        .map_err(|e| env.error(e))
        .and_then(|()| file.sync_all().map_err(io));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&target);
        return Err(e);
    }
    Ok(target)
}

/// The executions in each status, counted from `by_definition_status` (one pass over its
/// keys, at open: milliseconds for a million executions).
fn count_by_status(env: &Environment, t: &Tables) -> Result<[AtomicU64; 5]> {
    let txn = env.env().read_txn().map_err(|e| env.error(e))?;
    let counts: [AtomicU64; 5] = Default::default();
    for entry in t.by_definition_status.iter(&txn).map_err(|e| env.error(e))? {
        let (key, _) = entry.map_err(|e| env.error(e))?;
        let status = key
            .len()
            .checked_sub(keys::ID + 1)
            .and_then(|at| counts.get(key[at] as usize))
            .ok_or_else(|| corrupt(format!("a by_definition_status key of {} bytes", key.len())))?;
        status.fetch_add(1, Ordering::Relaxed);
    }
    Ok(counts)
}

/// A definition's latest version as a listing shows it (read leniently: a newer format still lists).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    version: u32,
    created_at: DateTime<Utc>,
    definition: ListedDefinition,
}

#[derive(Deserialize)]
struct ListedDefinition {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tasks: serde_json::Map<String, serde_json::Value>,
}

fn not_found_definition(id: &str, version: Option<u32>) -> Error {
    match version {
        None => Error::not_found("job definition", id),
        Some(n) => Error::not_found("job definition", format!("{id} version {n}")),
    }
}

#[async_trait]
impl Store for LmdbStore {
    async fn put_definition(&self, definition: JobDefinition) -> Result<DefinitionPut> {
        self.write(move |tx| {
            let now = tx.now();
            let id = definition.id.clone();
            let version = match tx.reader().latest_version(tx.txn(), &id)? {
                None => 1,
                // Written by a newer naxos in a format this one cannot read: it cannot be this
                // content (this build's definitions all fit its own format), so this is the next.
                Some((v, format, _)) if format > JobDefinition::FORMAT => v + 1,
                Some((v, _, bytes)) => {
                    let latest = decode_definition(&id, v, &bytes)?;
                    if latest.definition == definition {
                        return Ok(DefinitionPut {
                            definition: latest,
                            created: false,
                        });
                    }
                    v + 1
                }
            };
            let stored = Arc::new(StoredDefinition::new(version, now, definition.clone()));
            let key = keys::definition(&id, version)?;
            let definitions = tx.tables().definitions;
            tx.put(definitions, &key, &encode_definition(&stored)?)?;
            Ok(DefinitionPut {
                definition: stored,
                created: true,
            })
        })
        .await
    }

    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        let id = id.to_string();
        self.read(move |r, txn, _| {
            let found = match version {
                Some(v) => r.definition(txn, &id, v)?,
                None => match r.latest_version(txn, &id)? {
                    Some((v, _, bytes)) => Some(decode_definition(&id, v, &bytes)?),
                    None => None,
                },
            };
            found.ok_or_else(|| not_found_definition(&id, version))
        })
        .await
    }

    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        let id = id.to_string();
        self.read(move |r, txn, _| {
            let iter =
                r.t.definitions
                    .prefix_iter(txn, &keys::prefix(&id))
                    .map_err(|e| r.env.error(e))?;
            let mut versions = Vec::new();
            for entry in iter {
                let (key, value) = entry.map_err(|e| r.env.error(e))?;
                versions.push(decode_definition(&id, keys::version_of(key)?, value)?);
            }
            Ok(versions)
        })
        .await
    }

    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        self.read(|r, txn, _| {
            let paused = |id: &str| -> Result<bool> { Ok(r.get(txn, r.t.paused, id.as_bytes())?.is_some()) };
            let iter = r.t.definitions.iter(txn).map_err(|e| r.env.error(e))?;
            // Keys are `id, 0, version`: the last key of each id is its latest version.
            let mut latest: Vec<(&[u8], &[u8])> = Vec::new();
            for entry in iter {
                let (key, value) = entry.map_err(|e| r.env.error(e))?;
                let id = &key[..key.len().saturating_sub(5)];
                match latest.last_mut() {
                    Some((last, v)) if *last == id => *v = value,
                    _ => latest.push((id, value)),
                }
            }
            latest
                .into_iter()
                .map(|(_, value)| {
                    let body = value
                        .get(4..)
                        .ok_or_else(|| corrupt("a definition record without a format"))?;
                    let listed: Listed = decode(body, "a definition")?;
                    Ok(DefinitionSummary {
                        paused: paused(&listed.definition.id)?,
                        id: listed.definition.id,
                        name: listed.definition.name,
                        latest_version: listed.version,
                        task_count: listed.definition.tasks.len(),
                        updated_at: listed.created_at,
                    })
                })
                .collect()
        })
        .await
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Created> {
        self.write(move |tx| create(tx, execution.clone())).await
    }

    async fn create_executions(&self, executions: Vec<NewExecution>) -> Result<Vec<Created>> {
        // One request, so one write transaction: all or none.
        self.write(move |tx| executions.iter().map(|e| create(tx, e.clone())).collect())
            .await
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<Execution> {
        self.read(move |r, txn, _| r.execution(txn, id)?.ok_or_else(|| Error::not_found("execution", id)))
            .await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        let query = query.clone();
        self.read(move |r, txn, _| list(r, txn, &query)).await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<ClaimedTask> {
        // Answered before its commit: the function runs while the claim is made durable
        // (`writer.rs` says why that loses nothing).
        let task = request.task.clone();
        let admitted = self
            .inner
            .writer
            .write_early(move |tx| {
                let now = tx.now();
                let task = &request.task;
                let state = tx
                    .load(task.execution_id)?
                    .ok_or_else(|| Error::not_found("execution", task.execution_id))?;
                if !state.is_finished() {
                    let s = state.summary();
                    let format = tx
                        .reader()
                        .definition_format(tx.txn(), &s.definition_id, s.definition_version)?;
                    if let Some(format) = format.filter(|f| *f > JobDefinition::FORMAT) {
                        let refused = Error::newer_version(
                            format!(
                                "task {task} of job definition `{}` version {}",
                                s.definition_id, s.definition_version
                            ),
                            format!("definition format {format}"),
                            format!("format {}", JobDefinition::FORMAT),
                        );
                        tx.keep(state);
                        return Err(refused);
                    }
                }
                let t = *tx.tables();
                let definition = state.summary().definition_id.as_bytes();
                let paused = tx.reader().get(tx.txn(), t.paused, definition)?.is_some();
                let mut rate = None;
                if let Some((scope, limit, booked)) = state.rate_wanted(task).filter(|_| !paused) {
                    let (verdict, window) = crate::slots::rate_window(tx, scope)?.decide(limit, booked, now);
                    rate = Some((scope.to_string(), verdict, window));
                }
                let verdict = rate.as_ref().map_or(RateVerdict::Start, |(_, v, _)| *v);
                let slot_free = match state.slot_wanted(task) {
                    Some((scope, limit)) if !paused && verdict == RateVerdict::Start => {
                        crate::slots::free(tx, scope, limit)?
                    }
                    _ => false,
                };
                // A block commits (an error would undo it), then the claim is refused.
                let admitted = apply(tx, state, |s| {
                    s.claim_admitted(&request, |_| paused, |_, _, _| verdict, |_, _| slot_free, now)
                })?;
                if let Some((scope, _, window)) = rate.filter(|_| admitted.keeps_rate_window()) {
                    crate::slots::save_rate_window(tx, &scope, &window)?;
                }
                Ok(admitted)
            })
            .await?;
        admitted.claimed(&task)
    }

    async fn heartbeat(&self, task: &TaskRef, lease: Duration) -> Result<LeaseState> {
        let task = task.clone();
        self.write(move |tx| {
            let now = tx.now();
            transition(tx, task.execution_id, |s| s.heartbeat(&task, lease, now))
        })
        .await
    }

    async fn finish(&self, outcomes: Vec<TaskFinish>) -> Result<FinishReport> {
        self.write(move |tx| {
            let mut report = FinishReport::default();
            for f in &outcomes {
                let now = tx.now();
                let outcome = f.outcome.clone();
                match transition(tx, f.task.execution_id, |s| s.finish(&f.task, outcome, now)) {
                    Ok(changes) => {
                        report.changes.extend(changes);
                        report.results.push(Ok(()));
                    }
                    Err(e) => report.results.push(Err(e)),
                }
            }
            Ok(report)
        })
        .await
    }

    async fn release(&self, task: &TaskRef) -> Result<Changes> {
        let task = task.clone();
        self.write(move |tx| {
            let now = tx.now();
            transition(tx, task.execution_id, |s| s.release(&task, now))
        })
        .await
    }

    async fn stop_execution(&self, id: ExecutionId, reason: StopReason) -> Result<StopOutcome> {
        self.write(move |tx| {
            let now = tx.now();
            transition(tx, id, |s| s.stop(reason, now))
        })
        .await
    }

    async fn retry_execution(&self, id: ExecutionId) -> Result<Changes> {
        self.write(move |tx| {
            let now = tx.now();
            let timeout = crate::tables::timeout_of(tx, id)?;
            transition(tx, id, |s| s.retry(timeout, now))
        })
        .await
    }

    async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<Changes> {
        let task_id = task_id.to_string();
        self.write(move |tx| {
            let now = tx.now();
            let timeout = crate::tables::timeout_of(tx, id)?;
            transition(tx, id, |s| s.retry_from(&task_id, timeout, now))
        })
        .await
    }

    async fn recover_expired(&self, max_lease_expiries: u32, limit: usize) -> Result<Changes> {
        self.write(move |tx| scans::recover_expired(tx, max_lease_expiries, limit))
            .await
    }

    async fn take_stale(&self, older_than: Duration, limit: usize) -> Result<Changes> {
        self.write(move |tx| scans::take_stale(tx, older_than, limit)).await
    }

    async fn wake(&self, task: &TaskRef) -> Result<Changes> {
        let task = task.clone();
        self.write(move |tx| {
            let now = tx.now();
            transition(tx, task.execution_id, |s| s.wake(&task, now))
        })
        .await
    }

    async fn wake_due(&self, limit: usize) -> Result<Changes> {
        self.write(move |tx| scans::wake_due(tx, limit)).await
    }

    async fn start_delayed(&self, id: ExecutionId) -> Result<Changes> {
        self.write(move |tx| {
            let now = tx.now();
            transition(tx, id, |s| s.start_delayed(now))
        })
        .await
    }

    async fn signal(&self, id: ExecutionId, name: &str, payload: serde_json::Value) -> Result<SignalOutcome> {
        let name = name.to_string();
        self.write(move |tx| {
            let now = tx.now();
            transition(tx, id, |s| s.signal(&name, payload.clone(), now))
        })
        .await
    }

    async fn set_definition_paused(&self, id: &str, paused: bool) -> Result<()> {
        let id = id.to_string();
        self.write(move |tx| {
            let t = *tx.tables();
            if tx.reader().latest_version(tx.txn(), &id)?.is_none() {
                return Err(Error::not_found("job definition", id.as_str()));
            }
            if paused {
                tx.put(t.paused, id.as_bytes(), &[])?;
            } else {
                tx.delete(t.paused, id.as_bytes())?;
            }
            Ok(())
        })
        .await
    }

    async fn admit_blocked(&self, limit: usize) -> Result<Changes> {
        self.write(move |tx| {
            let mut changes = scans::admit_blocked(tx, limit)?;
            for scope in crate::slots::waiting_scopes(tx, limit)? {
                crate::slots::admit_scope(tx, &scope, &mut changes)?;
            }
            Ok(changes)
        })
        .await
    }

    async fn orphaned_children(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.read(move |r, txn, _| scans::orphaned_children(r, txn, limit))
            .await
    }

    async fn overdue_executions(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.read(move |r, txn, now| scans::overdue(r, txn, now, limit)).await
    }

    async fn prune(&self, defaults: RetentionDefaults, limit: usize) -> Result<u64> {
        self.write(move |tx| crate::retention::prune(tx, defaults, limit)).await
    }

    async fn counts(&self) -> Result<StoreCounts> {
        let inner = self.inner.clone();
        self.read(move |r, txn, _| {
            let by_status = &inner.shared.by_status;
            let len = |db: Db| db.len(txn).map_err(|e| r.env.error(e));
            let mut counts = StoreCounts::default();
            for (status, n) in ExecutionStatus::ALL.into_iter().zip(by_status) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    counts.executions.insert(status, n);
                }
            }
            counts.queued_tasks = len(r.t.queued)?;
            counts.running_tasks = len(r.t.running)?;
            Ok(counts)
        })
        .await
    }

    async fn pending_executions(&self) -> Result<u64> {
        let pending = keys::status_byte(ExecutionStatus::Pending) as usize;
        self.inner.shared.settled().await;
        Ok(self.inner.shared.by_status[pending].load(Ordering::Relaxed))
    }

    async fn put_node(&self, node: NodeInfo) -> Result<()> {
        self.write(move |tx| {
            let mut node = node.clone();
            node.last_seen = tx.now();
            let nodes = tx.tables().nodes;
            tx.put(nodes, node.id.as_bytes(), &encode(&node)?)
        })
        .await
    }

    async fn prune_nodes(&self, older_than: Duration) -> Result<u64> {
        self.write(move |tx| {
            let seen_after = before(tx.now(), older_than);
            let silent: Vec<String> = tx
                .reader()
                .nodes(tx.txn())?
                .into_iter()
                .filter(|n| n.last_seen < seen_after)
                .map(|n| n.id)
                .collect();
            let nodes = tx.tables().nodes;
            for id in &silent {
                tx.delete(nodes, id.as_bytes())?;
            }
            Ok(silent.len() as u64)
        })
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.read(|r, txn, _| r.nodes(txn)).await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|r, txn, _| r.t.executions.len(txn).map(drop).map_err(|e| r.env.error(e)))
            .await
    }

    /// [`LmdbStore::backup_to`].
    async fn backup(&self, directory: &Path) -> Result<PathBuf> {
        self.backup_to(directory).await
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<SchedulePut> {
        self.write(move |tx| schedules::put(tx, &schedule)).await
    }

    async fn get_schedule(&self, id: &str) -> Result<StoredSchedule> {
        let id = id.to_string();
        self.read(move |r, txn, _| r.schedule(txn, &id)?.ok_or_else(|| Error::not_found("schedule", id)))
            .await
    }

    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        self.read(|r, txn, _| r.schedules(txn)).await
    }

    async fn delete_schedule(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write(move |tx| schedules::delete(tx, &id)).await
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<StoredSchedule> {
        let id = id.to_string();
        self.write(move |tx| schedules::set_paused(tx, &id, paused)).await
    }

    async fn fire_schedule(&self, tick: ScheduleTick, execution: NewExecution) -> Result<Fired> {
        self.write(move |tx| schedules::fire(tx, &tick, &execution)).await
    }

    async fn skip_schedule_ticks(&self, id: &str, through: DateTime<Utc>) -> Result<()> {
        let id = id.to_string();
        self.write(move |tx| schedules::skip(tx, &id, through)).await
    }
}

/// One page of executions, newest first, from the index that fits the filters.
fn list(r: Reader<'_>, txn: &RoTxn<'_>, query: &ExecutionQuery) -> Result<ExecutionPage> {
    let limit = match query.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    if let Some(schedule) = &query.schedule_id {
        return by_schedule(r, txn, schedule, query, limit);
    }
    let t = r.t;
    let (db, prefix) = match (query.status, query.definition_id.as_deref()) {
        (None, None) => (t.executions, Vec::new()),
        (Some(s), None) => return in_status(r, txn, s, query.cursor, limit),
        (None, Some(d)) => (t.by_definition, keys::prefix(d)),
        (Some(s), Some(d)) => (t.by_definition_status, keys::definition_status(d, s)),
    };
    let below = query.cursor.map(|c| [prefix.as_slice(), c.as_bytes()].concat());
    let end = keys::prefix_end(&prefix);
    let upper = match (&below, &end) {
        (Some(b), _) => Bound::Excluded(b.as_slice()),
        (None, Some(e)) => Bound::Excluded(e.as_slice()),
        (None, None) => Bound::Unbounded,
    };
    let lower = if prefix.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(prefix.as_slice())
    };
    let iter = db.rev_range(txn, &(lower, upper)).map_err(|e| r.env.error(e))?;
    let mut executions = Vec::new();
    let mut more = false;
    // Unfiltered, the rows themselves are read, each execution's summary among its other rows.
    let rows = query.status.is_none() && query.definition_id.is_none();
    for entry in iter {
        let (key, value) = entry.map_err(|e| r.env.error(e))?;
        if rows && !keys::is_summary(key) {
            continue;
        }
        if executions.len() == limit {
            more = true;
            break;
        }
        let summary = if rows {
            r.with_schedule(txn, codec::read_summary(keys::id_of(key)?, value)?)?
        } else {
            let id = keys::id_at(key, prefix.len())?;
            r.summary(txn, id)?
                .ok_or_else(|| corrupt(format!("an index names a missing execution {id}")))?
        };
        executions.push(summary);
    }
    let next_cursor = if more { executions.last().map(|e| e.id) } else { None };
    Ok(ExecutionPage {
        executions,
        next_cursor,
    })
}

/// One page of a schedule's executions, newest first, with the query's other filters; an
/// entry whose execution is gone (pruned by a build without schedules) is passed over.
fn by_schedule(
    r: Reader<'_>,
    txn: &RoTxn<'_>,
    schedule: &str,
    query: &ExecutionQuery,
    limit: usize,
) -> Result<ExecutionPage> {
    let mut executions = Vec::new();
    let mut below = query.cursor;
    let mut more = false;
    'pages: loop {
        let ids = r.scheduled_ids(txn, schedule, below, limit + 1)?;
        let Some(&last) = ids.last() else { break };
        below = Some(last);
        for id in ids {
            let Some(s) = r.summary(txn, id)? else { continue };
            if query.status.is_some_and(|st| st != s.status)
                || query.definition_id.as_ref().is_some_and(|d| *d != s.definition_id)
            {
                continue;
            }
            if executions.len() == limit {
                more = true;
                break 'pages;
            }
            executions.push(s);
        }
    }
    let next_cursor = if more { executions.last().map(|e| e.id) } else { None };
    Ok(ExecutionPage {
        executions,
        next_cursor,
    })
}

/// One page of the executions in `status` of every definition, newest first: each
/// definition's range of `by_definition_status` (the store keeps no index by status alone, so
/// that a status change moves one index entry, not two), merged.
fn in_status(
    r: Reader<'_>,
    txn: &RoTxn<'_>,
    status: ExecutionStatus,
    cursor: Option<ExecutionId>,
    limit: usize,
) -> Result<ExecutionPage> {
    let db = r.t.by_definition_status;
    let err = |e| r.env.error(e);
    let mut ids = Vec::new();
    let mut next = db.first(txn).map_err(err)?.map(|(key, _)| key);
    while let Some(key) = next {
        // `definition id, 0` of the key: one definition's keys at a time.
        let definition = key
            .len()
            .checked_sub(keys::ID + 1)
            .map(|at| &key[..at])
            .ok_or_else(|| corrupt(format!("a by_definition_status key of {} bytes", key.len())))?;
        let prefix = [definition, &[keys::status_byte(status)]].concat();
        let below = cursor.map(|c| [prefix.as_slice(), c.as_bytes()].concat());
        let end = keys::prefix_end(&prefix).ok_or_else(|| corrupt("a by_definition_status key of 0xff bytes"))?;
        let upper = below.as_deref().unwrap_or(&end);
        let range = (Bound::Included(prefix.as_slice()), Bound::Excluded(upper));
        for entry in db.rev_range(txn, &range).map_err(err)?.take(limit + 1) {
            let (key, _) = entry.map_err(err)?;
            ids.push(keys::id_at(key, prefix.len())?);
        }
        next = match keys::prefix_end(definition) {
            Some(after) => {
                let rest = (Bound::Included(after.as_slice()), Bound::Unbounded);
                db.range(txn, &rest)
                    .map_err(err)?
                    .next()
                    .transpose()
                    .map_err(err)?
                    .map(|(key, _)| key)
            }
            None => None,
        };
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let more = ids.len() > limit;
    ids.truncate(limit);
    let executions = ids
        .iter()
        .map(|&id| {
            r.summary(txn, id)?
                .ok_or_else(|| corrupt(format!("an index names a missing execution {id}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if more { executions.last().map(|e| e.id) } else { None };
    Ok(ExecutionPage {
        executions,
        next_cursor,
    })
}

/// Creates `execution` in the writer's transaction `tx` (see [`Store::create_execution`]).
fn create(tx: &mut Tx<'_, '_>, execution: NewExecution) -> Result<Created> {
    let t = *tx.tables();
    let id = execution.id;
    let key = match &execution.idempotency_key {
        Some(k) => Some(keys::idempotency(&execution.definition_id, k)?),
        None => None,
    };
    if let Some(k) = &key {
        let reader = tx.reader();
        if let Some(existing) = reader.get(tx.txn(), t.idempotency, k)? {
            let existing = keys::id_of(existing)?;
            let status = reader
                .summary(tx.txn(), existing)?
                .ok_or_else(|| corrupt(format!("idempotency key of a missing execution {existing}")))?
                .status;
            return Ok(Created {
                execution_id: existing,
                created: false,
                status,
                changes: Changes::default(),
            });
        }
    }
    if tx.reader().summary(tx.txn(), id)?.is_some() {
        return Err(Error::conflict(format!("execution {id} already exists")));
    }
    let now = tx.now();
    let (state, mut changes) = crate::tables::insert(tx, execution, now)?;
    if let Some(k) = &key {
        tx.put(t.idempotency, k, id.as_bytes())?;
    }
    settle_family(&mut crate::tables::TxFamily(tx), &state, false, &mut changes, now)?;
    let status = tx.load(id)?.map_or(state.summary().status, |s| s.summary().status);
    Ok(Created {
        execution_id: id,
        created: true,
        status,
        changes,
    })
}
