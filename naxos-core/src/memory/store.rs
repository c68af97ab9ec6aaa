//! The in-memory `Store`: a concurrent map of [`ExecutionState`]s, and nothing more.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::schedules::Schedules;
use super::slots::{Slots, Waiter};
use crate::backend::{
    Changes, ClaimRequest, ClaimedTask, Created, DefinitionPut, ExecutionPage, ExecutionQuery, FinishReport, Fired,
    LeaseState, NewExecution, ScheduleTick, SignalOutcome, StopOutcome, StopReason, Store, StoreCounts, TaskFinish,
};
use crate::clock::{before, Clock};
use crate::model::{
    BlockedBy, DefinitionSummary, Execution, ExecutionId, ExecutionStatus, Expiry, ExpiryClass, JobDefinition,
    NodeInfo, Retention, RetentionDefaults, Schedule, SchedulePut, StoredDefinition, StoredSchedule, TaskRef,
    TaskStatus,
};
use crate::state::{settle_family, Admitted, Block, ExecutionState, Family, RateVerdict, RateWindow, Transitioned};
use crate::sync::{lock, read, write};
use crate::{Error, Result};

const SHARDS: usize = 16;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1_000;
/// Ids a listing takes from an index per lock, so a listing never holds it for long.
const LIST_BATCH: usize = 256;
/// Finished executions kept at most, by default (see [`MemoryStore::with_max_finished`]).
pub const DEFAULT_MAX_FINISHED: usize = 100_000;

/// A [`Store`] in process memory: concurrent (executions are sharded over 16 locks, none held
/// across an await), complete, and gone when the process ends. Its clock is the system's
/// unless given one ([`MemoryStore::with_clock`]).
///
/// Whole-store reads cost what they return, not what the store holds: counts by status, listings
/// by status and pruning by end time read indexes kept up to date by every transition, so a
/// store full of finished executions does not slow a status poll or a sweep.
///
/// Memory is bounded by a count as well as by retention: past
/// [`DEFAULT_MAX_FINISHED`] finished executions (or the number given to
/// [`with_max_finished`](MemoryStore::with_max_finished)), each prune also removes the ones
/// that ended first, so a node that runs for days at a steady rate holds a steady amount.
#[derive(Debug)]
pub struct MemoryStore {
    clock: Clock,
    max_finished: usize,
    definitions: RwLock<HashMap<String, Vec<Arc<StoredDefinition>>>>,
    /// The paused definitions. Lock order: a shard before it.
    paused: Mutex<HashSet<String>>,
    /// The concurrency slots. Lock order: a shard before it.
    slots: Mutex<Slots>,
    /// The rate limits' windows, by scope. Lock order: a shard before it, it before `slots`.
    rates: Mutex<HashMap<String, RateWindow>>,
    shards: Box<[Mutex<Shard>]>,
    index: Mutex<Index>,
    statuses: Mutex<Statuses>,
    nodes: Mutex<BTreeMap<String, NodeInfo>>,
    /// Lock order: `schedules` before `index`.
    schedules: Mutex<Schedules>,
}

#[derive(Debug, Default)]
struct Shard {
    executions: HashMap<ExecutionId, ExecutionState>,
    /// Executions not yet finished: what the recovery scans look at.
    active: HashSet<ExecutionId>,
    /// The own retention of the executions whose definition version has one.
    retained: HashMap<ExecutionId, Retention>,
}

/// Creation order, idempotency keys, and executions by schedule. Lock order: `index`, then a
/// shard, then `statuses`.
#[derive(Debug, Default)]
struct Index {
    order: BTreeSet<ExecutionId>,
    idempotency: HashMap<(String, String), ExecutionId>,
    by_schedule: HashMap<String, BTreeSet<ExecutionId>>,
    /// The tick that created an execution, by execution.
    ticks: HashMap<ExecutionId, DateTime<Utc>>,
}

/// Executions by status, and finished ones by end time (what the count limit walks) and by
/// [`Expiry`] (what pruning by retention walks, one range per class).
#[derive(Debug, Default)]
struct Statuses {
    by_status: HashMap<ExecutionStatus, BTreeSet<ExecutionId>>,
    ended: BTreeSet<(DateTime<Utc>, ExecutionId)>,
    expiring: BTreeSet<(Expiry, ExecutionId)>,
}

/// What the indexes know of one execution.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    status: ExecutionStatus,
    finished: bool,
    ended: Option<DateTime<Utc>>,
    expiry: Option<Expiry>,
}

impl Mark {
    /// The marks of `state`, whose definition version's own retention is `own`.
    fn of(state: &ExecutionState, own: Option<&Retention>) -> Self {
        let finished = state.is_finished();
        let s = state.summary();
        let ended = s.end_time.filter(|_| finished);
        Self {
            status: s.status,
            finished,
            ended,
            expiry: ended.and_then(|t| RetentionDefaults::expiry(s.status, t, own)),
        }
    }
}

impl Shard {
    /// Brings the active set and `statuses` in step with one execution's change from `before`
    /// to `after` (`None`: not in the store).
    fn track(&mut self, statuses: &Mutex<Statuses>, id: ExecutionId, before: Option<Mark>, after: Option<Mark>) {
        if after.is_some_and(|m| !m.finished) {
            self.active.insert(id);
        } else {
            self.active.remove(&id);
        }
        if before == after {
            return;
        }
        let mut statuses = lock(statuses);
        if let Some(m) = before {
            if let Some(set) = statuses.by_status.get_mut(&m.status) {
                set.remove(&id);
            }
            if let Some(t) = m.ended {
                statuses.ended.remove(&(t, id));
            }
            if let Some(e) = m.expiry {
                statuses.expiring.remove(&(e, id));
            }
        }
        if let Some(m) = after {
            statuses.by_status.entry(m.status).or_default().insert(id);
            if let Some(t) = m.ended {
                statuses.ended.insert((t, id));
            }
            if let Some(e) = m.expiry {
                statuses.expiring.insert((e, id));
            }
        }
    }
}

/// One shard as a [`Family`]: a family lives in its root's shard (a child's id has its
/// parent's shard bits), so the walk never takes another shard's lock.
struct ShardFamily<'a> {
    store: &'a MemoryStore,
    shard: &'a mut Shard,
    /// The executions created, for the creation-order index (taken after the shard's lock).
    created: Vec<ExecutionId>,
}

impl<'a> ShardFamily<'a> {
    fn new(store: &'a MemoryStore, shard: &'a mut Shard) -> Self {
        Self {
            store,
            shard,
            created: Vec::new(),
        }
    }
}

impl Family for ShardFamily<'_> {
    fn definition(&mut self, id: &str, version: u32) -> Result<Arc<StoredDefinition>> {
        self.store.definition(id, Some(version))
    }

    fn create(&mut self, mut execution: NewExecution, now: DateTime<Utc>) -> Result<(ExecutionState, Changes)> {
        self.store.pin(&mut execution);
        let id = execution.id;
        let own = execution.retention;
        let (state, changes) = ExecutionState::create(execution, now)?;
        let mark = Mark::of(&state, own.as_ref());
        self.shard.executions.insert(id, state.clone());
        if let Some(own) = own {
            self.shard.retained.insert(id, own);
        }
        self.shard.track(&self.store.statuses, id, None, Some(mark));
        self.created.push(id);
        Ok((state, changes))
    }

    fn load(&mut self, id: ExecutionId) -> Result<Option<ExecutionState>> {
        Ok(self.shard.executions.get(&id).cloned())
    }

    fn save(&mut self, before: &ExecutionState, after: ExecutionState) -> Result<()> {
        let id = after.summary().id;
        let own = self.shard.retained.get(&id).copied();
        let marks = (Mark::of(before, own.as_ref()), Mark::of(&after, own.as_ref()));
        self.shard.executions.insert(id, after);
        self.shard.track(&self.store.statuses, id, Some(marks.0), Some(marks.1));
        Ok(())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Clock::System)
    }

    /// An empty store that reads the time from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            clock,
            max_finished: DEFAULT_MAX_FINISHED,
            definitions: RwLock::default(),
            paused: Mutex::default(),
            slots: Mutex::default(),
            rates: Mutex::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            index: Mutex::default(),
            statuses: Mutex::default(),
            nodes: Mutex::default(),
            schedules: Mutex::default(),
        }
    }

    /// Keeps at most `max` finished executions (at least 1): pruning removes the ones that
    /// ended first beyond that, whatever the retention.
    pub fn with_max_finished(mut self, max: usize) -> Self {
        self.max_finished = max.max(1);
        self
    }

    /// Version `version` of definition `id`, or its latest.
    fn definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        let defs = read(&self.definitions);
        let versions = defs.get(id);
        let found = match version {
            None => versions.and_then(|v| v.last()),
            Some(n) => versions.and_then(|v| v.get((n as usize).wrapping_sub(1))),
        };
        found.cloned().ok_or_else(|| match version {
            None => Error::not_found("job definition", id),
            Some(n) => Error::not_found("job definition", format!("{id} version {n}")),
        })
    }

    /// The job timeout of `state`'s definition version (what a retry counts again from now).
    fn timeout_of(&self, state: &ExecutionState) -> Option<Duration> {
        let s = state.summary();
        let def = self.definition(&s.definition_id, Some(s.definition_version)).ok()?;
        def.definition.timeout()
    }

    /// Pins the versions of `execution`'s sub-jobs that give none to the latest.
    fn pin(&self, execution: &mut NewExecution) {
        let defs = read(&self.definitions);
        execution.pin_sub_jobs(|id| defs.get(id).and_then(|v| v.last()).map(|d| d.version));
    }

    fn shard(&self, id: ExecutionId) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(id.as_u128() % SHARDS as u128) as usize])
    }

    /// Creates an execution under the `index` lock (see [`Store::create_execution`]), and the
    /// children its first sub-jobs start.
    fn insert(&self, index: &mut Index, execution: NewExecution) -> Result<Created> {
        let key = execution
            .idempotency_key
            .clone()
            .map(|k| (execution.definition_id.clone(), k));
        if let Some(&existing) = key.as_ref().and_then(|k| index.idempotency.get(k)) {
            let status = self.with_state(existing, |s| Ok(s.summary().status))?;
            return Ok(Created {
                execution_id: existing,
                created: false,
                status,
                changes: Changes::default(),
            });
        }
        let id = execution.id;
        let schedule = execution.schedule_id.clone();
        let now = self.clock.now();
        let (status, changes, created) = {
            let mut shard = self.shard(id);
            if shard.executions.contains_key(&id) {
                return Err(Error::conflict(format!("execution {id} already exists")));
            }
            let mut family = ShardFamily::new(self, &mut shard);
            let (state, mut changes) = family.create(execution, now)?;
            settle_family(&mut family, &state, false, &mut changes, now)?;
            let created = family.created;
            // PENDING, or already finished when the roots' conditions left nothing to run.
            let status = shard
                .executions
                .get(&id)
                .map_or(state.summary().status, |s| s.summary().status);
            (status, changes, created)
        };
        index.order.extend(created);
        if let Some(k) = key {
            index.idempotency.insert(k, id);
        }
        if let Some(schedule) = schedule {
            index.by_schedule.entry(schedule).or_default().insert(id);
        }
        Ok(Created {
            execution_id: id,
            created: true,
            status,
            changes,
        })
    }

    /// Runs `f` on one execution's state, keeping the indexes in step (for reads, and for
    /// transitions that cannot start or end a sub-job: see [`transact`](Self::transact)).
    fn with_state<T>(&self, id: ExecutionId, f: impl FnOnce(&mut ExecutionState) -> Result<T>) -> Result<T> {
        let mut shard = self.shard(id);
        let own = shard.retained.get(&id).copied();
        let state = shard
            .executions
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("execution", id))?;
        let before = Mark::of(state, own.as_ref());
        let out = f(state);
        let after = Mark::of(state, own.as_ref());
        shard.track(&self.statuses, id, Some(before), Some(after));
        out
    }

    /// Runs the transition `f` (at `now`) on one execution's state, keeping the indexes in
    /// step, and walks the execution's family under the same lock (a family shares a shard):
    /// the children its sub-jobs started are created, the parent of a child it ended settled.
    fn transact<T: Transitioned>(
        &self,
        id: ExecutionId,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut ExecutionState) -> Result<T>,
    ) -> Result<T> {
        let mut created = Vec::new();
        let out = {
            let mut shard = self.shard(id);
            let own = shard.retained.get(&id).copied();
            let state = shard
                .executions
                .get_mut(&id)
                .ok_or_else(|| Error::not_found("execution", id))?;
            let was_finished = state.is_finished();
            let before = Mark::of(state, own.as_ref());
            let mut out = f(state)?;
            let after = Mark::of(state, own.as_ref());
            let walk = out
                .changes_mut()
                .is_some_and(|ch| !ch.children.is_empty() || state.settles_parent(was_finished).is_some());
            // Most transitions start and end no sub-job: the state is copied only for one that does.
            let state = walk.then(|| state.clone());
            shard.track(&self.statuses, id, Some(before), Some(after));
            if let (Some(state), Some(ch)) = (state, out.changes_mut()) {
                let mut family = ShardFamily::new(self, &mut shard);
                settle_family(&mut family, &state, was_finished, ch, now)?;
                created = family.created;
            }
            out
        };
        if !created.is_empty() {
            lock(&self.index).order.extend(created);
        }
        let mut out = out;
        if let Some(ch) = out.changes_mut() {
            self.admit_freed(ch, now);
        }
        Ok(out)
    }

    /// Gives back the rate-limit turns a transition released (`ch.released_turns`, emptied) and
    /// the slots it freed (`ch.freed_slots`, emptied), admitting the runs waiting for those,
    /// adding what that changed to `ch`. Called with no shard locked.
    fn admit_freed(&self, ch: &mut Changes, now: DateTime<Utc>) {
        if !ch.released_turns.is_empty() {
            let mut rates = lock(&self.rates);
            for scope in std::mem::take(&mut ch.released_turns) {
                if let Some(window) = rates.get_mut(&scope) {
                    window.release();
                }
            }
        }
        if ch.freed_slots.is_empty() {
            return;
        }
        let mut freed = std::mem::take(&mut ch.freed_slots);
        {
            let mut slots = lock(&self.slots);
            for scope in &freed {
                slots.free(scope);
            }
        }
        freed.sort_unstable();
        freed.dedup();
        for scope in freed {
            self.admit_scope(&scope, now, ch);
        }
    }

    /// Admits the runs waiting for `scope`, oldest first, while a slot of it is free.
    fn admit_scope(&self, scope: &str, now: DateTime<Utc>, ch: &mut Changes) {
        loop {
            let Some((id, task_id)) = lock(&self.slots).next(scope) else {
                return;
            };
            match self.with_state(id, |s| Ok(s.admit_slot(&task_id, now))) {
                Ok(Some(admitted)) => ch.extend(admitted),
                // It stopped waiting (its execution was cancelled or pruned): the next one.
                _ => lock(&self.slots).free(scope),
            }
        }
    }

    /// Runs `scan` over every unfinished execution until the budget is spent, walking the
    /// family of each it changed as [`transact`](Self::transact) does; returns what changed.
    fn scan_active(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        mut scan: impl FnMut(&mut ExecutionState, &mut usize) -> Changes,
    ) -> Result<Changes> {
        let mut budget = limit;
        let mut changes = Changes::default();
        let mut created = Vec::new();
        'shards: for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let ids: Vec<ExecutionId> = shard.active.iter().copied().collect();
            for id in ids {
                if budget == 0 {
                    break 'shards;
                }
                let own = shard.retained.get(&id).copied();
                let Some(state) = shard.executions.get_mut(&id) else {
                    continue;
                };
                let before = Mark::of(state, own.as_ref());
                let mut ch = scan(state, &mut budget);
                let after = Mark::of(state, own.as_ref());
                let walk = !ch.children.is_empty() || state.settles_parent(before.finished).is_some();
                let state = walk.then(|| state.clone());
                shard.track(&self.statuses, id, Some(before), Some(after));
                if let Some(state) = state {
                    let mut family = ShardFamily::new(self, &mut shard);
                    settle_family(&mut family, &state, before.finished, &mut ch, now)?;
                    created.extend(family.created);
                }
                changes.extend(ch);
            }
        }
        if !created.is_empty() {
            lock(&self.index).order.extend(created);
        }
        self.admit_freed(&mut changes, now);
        Ok(changes)
    }

    /// Up to `n` execution ids below `below`, newest first: of one schedule, of one status, or of all.
    fn ids_below(&self, query: &ExecutionQuery, below: Option<ExecutionId>, n: usize) -> Vec<ExecutionId> {
        fn take(set: &BTreeSet<ExecutionId>, below: Option<ExecutionId>, n: usize) -> Vec<ExecutionId> {
            let range = match below {
                Some(c) => set.range(..c),
                None => set.range(..),
            };
            range.rev().take(n).copied().collect()
        }
        if let Some(schedule) = &query.schedule_id {
            return lock(&self.index)
                .by_schedule
                .get(schedule)
                .map(|set| take(set, below, n))
                .unwrap_or_default();
        }
        match query.status {
            Some(status) => lock(&self.statuses)
                .by_status
                .get(&status)
                .map(|set| take(set, below, n))
                .unwrap_or_default(),
            None => take(&lock(&self.index).order, below, n),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_definition(&self, definition: JobDefinition) -> Result<DefinitionPut> {
        let now = self.clock.now();
        let mut defs = write(&self.definitions);
        let versions = defs.entry(definition.id.clone()).or_default();
        if let Some(latest) = versions.last() {
            if latest.definition == definition {
                return Ok(DefinitionPut {
                    definition: latest.clone(),
                    created: false,
                });
            }
        }
        let stored = Arc::new(StoredDefinition::new(versions.len() as u32 + 1, now, definition));
        versions.push(stored.clone());
        Ok(DefinitionPut {
            definition: stored,
            created: true,
        })
    }

    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        self.definition(id, version)
    }

    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        let defs = read(&self.definitions);
        Ok(defs.get(id).cloned().unwrap_or_default())
    }

    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        let paused = lock(&self.paused).clone();
        let defs = read(&self.definitions);
        let mut list: Vec<DefinitionSummary> = defs
            .values()
            .filter_map(|v| v.last())
            .map(|d| DefinitionSummary {
                id: d.definition.id.clone(),
                name: d.definition.name.clone(),
                latest_version: d.version,
                task_count: d.definition.tasks.len(),
                updated_at: d.created_at,
                paused: paused.contains(&d.definition.id),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Created> {
        self.insert(&mut lock(&self.index), execution)
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<Execution> {
        let shard = self.shard(id);
        shard
            .executions
            .get(&id)
            .map(ExecutionState::snapshot)
            .ok_or_else(|| Error::not_found("execution", id))
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut executions = Vec::new();
        let mut more = false;
        let mut below = query.cursor;
        'pages: loop {
            let ids = self.ids_below(query, below, LIST_BATCH);
            let Some(&last) = ids.last() else { break };
            below = Some(last);
            for id in ids {
                let shard = self.shard(id);
                let Some(state) = shard.executions.get(&id) else {
                    continue;
                };
                let s = state.summary();
                if query.status.is_some_and(|st| st != s.status)
                    || query.definition_id.as_ref().is_some_and(|d| *d != s.definition_id)
                    || query.schedule_id.is_some() && query.schedule_id != s.schedule_id
                {
                    continue;
                }
                if executions.len() == limit {
                    more = true;
                    break 'pages;
                }
                executions.push(s.clone());
            }
        }
        let next_cursor = if more { executions.last().map(|e| e.id) } else { None };
        Ok(ExecutionPage {
            executions,
            next_cursor,
        })
    }

    async fn claim(&self, request: ClaimRequest) -> Result<ClaimedTask> {
        let now = self.clock.now();
        let admitted = self.transact(request.task.execution_id, now, |s| {
            let paused = |d: &str| lock(&self.paused).contains(d);
            if !s.limited(&request.task.task_id) {
                // No limit to count: neither lock is taken (the closures are not asked).
                return s.claim_admitted(&request, paused, |_, _, _| RateVerdict::Start, |_, _| true, now);
            }
            // Both held through the decision and its effects, so no transition slips between
            // a full scope seen and the run listed as waiting for it.
            let mut rates = lock(&self.rates);
            let mut slots = lock(&self.slots);
            // Read again under the lock: the starts a window records are in the order they happened.
            let now = self.clock.now().max(now);
            let mut window = None;
            let admitted = s.claim_admitted(
                &request,
                paused,
                |scope, limit, booked| {
                    let (verdict, after) = rates.get(scope).cloned().unwrap_or_default().decide(limit, booked, now);
                    window = Some((scope.to_string(), after));
                    verdict
                },
                |scope, limit| slots.try_take(scope, limit),
                now,
            )?;
            if let Some((scope, after)) = window.filter(|_| admitted.keeps_rate_window()) {
                rates.insert(scope, after);
            }
            if let Admitted::Blocked(_, Block::Concurrency(_)) = &admitted {
                let task_id = &request.task.task_id;
                let run = s.index_of(task_id).map(|i| &s.tasks()[i]);
                if let (Some((scope, limit)), Some(run)) = (s.waiting_for_slot(task_id), run) {
                    let queued_at = run.queued_at.unwrap_or(now);
                    let waiter = Waiter::new(s.summary().priority, queued_at, request.task.execution_id, task_id);
                    slots.wait(scope, limit, waiter);
                }
            }
            Ok(admitted)
        })?;
        // A run blocked here is admitted by the transition that frees a slot of its scope, or
        // by the sweeper (`admit_blocked`) when a limit grew.
        admitted.claimed(&request.task)
    }

    async fn heartbeat(&self, task: &TaskRef, lease: Duration) -> Result<LeaseState> {
        let now = self.clock.now();
        self.with_state(task.execution_id, |s| s.heartbeat(task, lease, now))
    }

    async fn finish(&self, outcomes: Vec<TaskFinish>) -> Result<FinishReport> {
        let mut report = FinishReport::default();
        for f in outcomes {
            let now = self.clock.now();
            match self.transact(f.task.execution_id, now, |s| s.finish(&f.task, f.outcome, now)) {
                Ok(changes) => {
                    report.changes.extend(changes);
                    report.results.push(Ok(()));
                }
                Err(e) => report.results.push(Err(e)),
            }
        }
        Ok(report)
    }

    async fn release(&self, task: &TaskRef) -> Result<Changes> {
        let now = self.clock.now();
        self.transact(task.execution_id, now, |s| s.release(task, now))
    }

    async fn stop_execution(&self, id: ExecutionId, reason: StopReason) -> Result<StopOutcome> {
        let now = self.clock.now();
        self.transact(id, now, |s| s.stop(reason, now))
    }

    async fn retry_execution(&self, id: ExecutionId) -> Result<Changes> {
        let now = self.clock.now();
        self.transact(id, now, |s| s.retry(self.timeout_of(s), now))
    }

    async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<Changes> {
        let now = self.clock.now();
        self.transact(id, now, |s| s.retry_from(task_id, self.timeout_of(s), now))
    }

    async fn recover_expired(&self, max_lease_expiries: u32, limit: usize) -> Result<Changes> {
        let now = self.clock.now();
        self.scan_active(limit, now, |s, budget| {
            s.recover_expired(now, max_lease_expiries, budget)
        })
    }

    async fn take_stale(&self, older_than: Duration, limit: usize) -> Result<Changes> {
        let now = self.clock.now();
        self.scan_active(limit, now, |s, budget| s.take_stale(older_than, now, budget))
    }

    async fn wake(&self, task: &TaskRef) -> Result<Changes> {
        let now = self.clock.now();
        self.transact(task.execution_id, now, |s| s.wake(task, now))
    }

    async fn wake_due(&self, limit: usize) -> Result<Changes> {
        let now = self.clock.now();
        self.scan_active(limit, now, |s, budget| s.wake_due(now, budget))
    }

    async fn start_delayed(&self, id: ExecutionId) -> Result<Changes> {
        let now = self.clock.now();
        self.transact(id, now, |s| s.start_delayed(now))
    }

    async fn signal(&self, id: ExecutionId, name: &str, payload: serde_json::Value) -> Result<SignalOutcome> {
        let now = self.clock.now();
        self.transact(id, now, |s| s.signal(name, payload, now))
    }

    async fn set_definition_paused(&self, id: &str, paused: bool) -> Result<()> {
        if !read(&self.definitions).contains_key(id) {
            return Err(Error::not_found("job definition", id));
        }
        let mut set = lock(&self.paused);
        if paused {
            set.insert(id.to_string());
        } else {
            set.remove(id);
        }
        Ok(())
    }

    async fn admit_blocked(&self, limit: usize) -> Result<Changes> {
        let now = self.clock.now();
        let mut changes = self.scan_active(limit, now, |s, budget| {
            if !s.blocked(BlockedBy::Paused) || lock(&self.paused).contains(&s.summary().definition_id) {
                return Changes::default();
            }
            *budget -= 1;
            s.unblock(BlockedBy::Paused, now)
        })?;
        let scopes = lock(&self.slots).admissible(limit);
        for scope in scopes {
            self.admit_scope(&scope, now, &mut changes);
        }
        Ok(changes)
    }

    async fn orphaned_children(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        let mut orphans = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            // A family shares a shard: the parent is in this one.
            let finished = |id: ExecutionId| shard.executions.get(&id).is_some_and(ExecutionState::is_finished);
            for id in &shard.active {
                if orphans.len() == limit {
                    return Ok(orphans);
                }
                let parent = shard.executions.get(id).and_then(|s| s.summary().parent.as_ref());
                if parent.is_some_and(|p| finished(p.execution_id)) {
                    orphans.push(*id);
                }
            }
        }
        Ok(orphans)
    }

    async fn overdue_executions(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        let now = self.clock.now();
        let mut overdue = Vec::new();
        self.scan_active(limit, now, |s, budget| {
            if s.is_overdue(now) {
                overdue.push(s.summary().id);
                *budget -= 1;
            }
            Changes::default()
        })?;
        Ok(overdue)
    }

    async fn prune(&self, defaults: RetentionDefaults, limit: usize) -> Result<u64> {
        let now = self.clock.now();
        // Beyond the count kept, the ones that ended first (`Some(end time)`); then the ones
        // past their retention, one range of `expiring` per class (`None`).
        let candidates: Vec<(ExecutionId, Option<DateTime<Utc>>)> = {
            let statuses = lock(&self.statuses);
            let over = statuses.ended.len().saturating_sub(self.max_finished);
            let mut picked: Vec<_> = statuses
                .ended
                .iter()
                .take(over.min(limit))
                .map(|&(t, id)| (id, Some(t)))
                .collect();
            for class in ExpiryClass::ALL {
                let from = Expiry {
                    class,
                    at: DateTime::<Utc>::MIN_UTC,
                };
                let due = statuses
                    .expiring
                    .range((from, ExecutionId::nil())..)
                    .take_while(|(e, _)| e.class == class && defaults.is_due(*e, now))
                    .take(limit.saturating_sub(picked.len()))
                    .map(|&(_, id)| (id, None));
                picked.extend(due);
            }
            picked
        };
        let mut index = lock(&self.index);
        let mut pruned = 0;
        let mut fired = Vec::new();
        for (id, ended) in candidates {
            let mut shard = self.shard(id);
            // Checked again under the shard lock: a retry may have reopened it since.
            let own = shard.retained.get(&id).copied();
            let Some(state) = shard.executions.get(&id) else {
                continue;
            };
            let mark = Mark::of(state, own.as_ref());
            let due = match ended {
                Some(ended) => mark.ended == Some(ended),
                None => mark.expiry.is_some_and(|e| defaults.is_due(e, now)),
            };
            if !due {
                continue;
            }
            let state = shard.executions.remove(&id).expect("checked above");
            shard.retained.remove(&id);
            shard.track(&self.statuses, id, Some(mark), None);
            drop(shard);
            let summary = state.summary();
            index.order.remove(&id);
            if let Some(k) = &summary.idempotency_key {
                index.idempotency.remove(&(summary.definition_id.clone(), k.clone()));
            }
            if let Some(schedule) = &summary.schedule_id {
                if let Some(set) = index.by_schedule.get_mut(schedule) {
                    set.remove(&id);
                }
                if let Some(at) = index.ticks.remove(&id) {
                    fired.push((schedule.clone(), at));
                }
            }
            pruned += 1;
        }
        drop(index);
        let mut schedules = lock(&self.schedules);
        for (schedule, at) in fired {
            schedules.forget(&schedule, at);
        }
        Ok(pruned)
    }

    async fn counts(&self) -> Result<StoreCounts> {
        let mut counts = StoreCounts::default();
        for (status, ids) in &lock(&self.statuses).by_status {
            if !ids.is_empty() {
                counts.executions.insert(*status, ids.len() as u64);
            }
        }
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for id in &shard.active {
                for t in shard.executions[id].tasks() {
                    match t.status {
                        TaskStatus::Queued => counts.queued_tasks += 1,
                        TaskStatus::Running => counts.running_tasks += 1,
                        _ => {}
                    }
                }
            }
        }
        Ok(counts)
    }

    async fn pending_executions(&self) -> Result<u64> {
        let statuses = lock(&self.statuses);
        Ok(statuses
            .by_status
            .get(&ExecutionStatus::Pending)
            .map_or(0, |s| s.len() as u64))
    }

    async fn put_node(&self, mut node: NodeInfo) -> Result<()> {
        node.last_seen = self.clock.now();
        lock(&self.nodes).insert(node.id.clone(), node);
        Ok(())
    }

    async fn prune_nodes(&self, older_than: Duration) -> Result<u64> {
        let seen_after = before(self.clock.now(), older_than);
        let mut nodes = lock(&self.nodes);
        let count = nodes.len();
        nodes.retain(|_, n| n.last_seen >= seen_after);
        Ok((count - nodes.len()) as u64)
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(lock(&self.nodes).values().cloned().collect())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<SchedulePut> {
        Ok(lock(&self.schedules).put(schedule, self.clock.now()))
    }

    async fn get_schedule(&self, id: &str) -> Result<StoredSchedule> {
        lock(&self.schedules).get(id).cloned()
    }

    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        Ok(lock(&self.schedules).list())
    }

    async fn delete_schedule(&self, id: &str) -> Result<()> {
        lock(&self.schedules).delete(id)
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<StoredSchedule> {
        lock(&self.schedules).set_paused(id, paused, self.clock.now())
    }

    async fn fire_schedule(&self, tick: ScheduleTick, mut execution: NewExecution) -> Result<Fired> {
        let mut schedules = lock(&self.schedules);
        if let Some(refused) = schedules.refused(&tick)? {
            return Ok(refused);
        }
        execution.schedule_id = Some(tick.schedule_id.clone());
        let created = {
            let mut index = lock(&self.index);
            let created = self.insert(&mut index, execution)?;
            index.ticks.insert(created.execution_id, tick.at);
            created
        };
        schedules.record(&tick);
        Ok(Fired::Created(Box::new(created)))
    }

    async fn skip_schedule_ticks(&self, id: &str, through: DateTime<Utc>) -> Result<()> {
        lock(&self.schedules).skip(id, through)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testkit::diamond;

    /// Creates an execution of `def` and cancels it (it ends now); returns its id.
    async fn finished(store: &MemoryStore, def: &Arc<StoredDefinition>) -> ExecutionId {
        let new = NewExecution::new(def, serde_json::json!({}));
        let id = store.create_execution(new).await.unwrap().execution_id;
        store.stop_execution(id, StopReason::Cancelled).await.unwrap();
        id
    }

    /// Beyond its count limit the store prunes the executions that ended first, however
    /// recent, and keeps the unfinished ones.
    #[tokio::test]
    async fn past_the_count_limit_the_first_ended_go() {
        let store = MemoryStore::new().with_max_finished(3);
        let def = store.put_definition(diamond()).await.unwrap().definition;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(finished(&store, &def).await);
        }
        let open = store
            .create_execution(NewExecution::new(&def, serde_json::json!({})))
            .await
            .unwrap()
            .execution_id;
        let week = RetentionDefaults::uniform(Duration::from_secs(7 * 24 * 3600));
        assert_eq!(store.prune(week, 1_000).await.unwrap(), 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.get_execution(*id).await.is_ok(), i >= 2, "execution {i}");
        }
        assert!(store.get_execution(open).await.is_ok(), "unfinished: kept");
        assert_eq!(store.prune(week, 1_000).await.unwrap(), 0, "within the limit now");
    }
}
