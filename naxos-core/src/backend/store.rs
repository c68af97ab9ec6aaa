//! The `Store` trait: the source of truth, and its contract.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::{
    DefinitionSummary, Delay, Execution, ExecutionId, ExecutionStatus, ExecutionSummary, JobDefinition, NewTask,
    NodeInfo, ParentLink, Priority, Retention, RetentionDefaults, Schedule, SchedulePut, StoredDefinition,
    StoredSchedule, TaskRef, TraceParent,
};
use crate::state::Changes;
use crate::Result;

/// Durable state: definitions, executions, task runs, nodes.
///
/// # Contract
///
/// - Every method that changes state does so **atomically**: all of its effects commit together
///   or none do. A caller that gets an error may retry the call.
/// - Task transitions are **guarded** by the [`TaskRef`]'s `attempt` (the fencing token): a
///   transition whose `attempt` does not match the task's current one, or whose task is not in
///   the expected status, changes nothing and fails with [`Error::Conflict`](crate::Error::Conflict).
///   Two callers racing on the same transition: exactly one wins.
/// - Transitions return the [`Changes`] they committed: tasks that became QUEUED (to publish),
///   RETRYING tasks with their due time (to publish later), and status events. Publishing them
///   is the caller's job, after the commit; a publish that is lost is found again by
///   [`Store::take_stale`].
/// - The transitions' rules are [`crate::state`]'s: a Store applies [`ExecutionState`](crate::state::ExecutionState)'s
///   functions to the execution and persists the result, its attempt records included
///   ([`Changes::history`]). A hand-written fast path must give the same results: the
///   differential test of the conformance suite (`testkit`) checks it.
/// - **Time is the Store's.** Every transition reads "now" from the Store's own clock, so that
///   leases, due times and deadlines are judged by one clock however many nodes share the
///   Store; callers pass durations (a lease's length, a retry's delay, an age), never instants.
///   The clock is injectable, so that tests can give several stores one fake clock.
/// - An execution's trace context ([`NewExecution::traceparent`]) is stored with it, read back
///   in its summary, returned by every claim of its tasks ([`ClaimedTask::traceparent`]) and set
///   on the task references a transition returns ([`TaskRef::traceparent`]), so that the Queue
///   can carry it beside the message.
/// - Not found is [`Error::NotFound`](crate::Error::NotFound); a backend that is down returns a
///   transient [`Error::Backend`](crate::Error::Backend).
/// - **Newer data is refused, not misread.** A durable Store shared by nodes of two releases
///   (a rolling upgrade) refuses what a newer release wrote in a shape this build does not
///   know — a definition of a format above [`JobDefinition::FORMAT`] — with
///   [`Error::NewerVersion`](crate::Error::NewerVersion), when it is read and when one of its
///   tasks is claimed (the claim then changes nothing, and the message goes back for a node of
///   the newer release).
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Registers a definition. Identical content to the latest version is a no-op returning that
    /// version; changed content becomes the next version. Versions are immutable.
    async fn put_definition(&self, definition: JobDefinition) -> Result<DefinitionPut>;

    /// One version of a definition, or the latest when `version` is `None`.
    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>>;

    /// Every version of one definition, oldest first (empty when unknown).
    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>>;

    /// The latest version of every definition, by id.
    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>>;

    /// Creates an execution with its task runs; tasks without dependencies start QUEUED (and are
    /// returned in [`Changes::ready`]) — or as their `when` conditions decide, with what that
    /// decides below them —, the rest PENDING with their dependency counts.
    ///
    /// With a [`NewExecution::delay`] still ahead by the Store's clock, every task stays PENDING
    /// and the execution waits for its time ([`ExecutionSummary::scheduled_for`], returned in
    /// [`Changes::scheduled`]); `InvalidInput` naming the parameter for a delay beyond
    /// [`Delay::MAX`].
    ///
    /// With an idempotency key already used for the same definition, creates nothing and returns
    /// the existing execution's id with `created: false` and no changes.
    async fn create_execution(&self, execution: NewExecution) -> Result<Created>;

    /// Creates several executions as [`create_execution`](Store::create_execution) creates one,
    /// and returns what it did for each, in order. An idempotency key repeated within the batch
    /// creates one execution and returns it for each item that carries the key.
    ///
    /// A durable Store creates them all in one transaction (all or none: a failed batch
    /// created nothing, and may be repeated as it was); this default creates them one by one,
    /// so that a failure part-way leaves the items before it created — a repeat with the same
    /// idempotency keys then creates only the rest.
    async fn create_executions(&self, executions: Vec<NewExecution>) -> Result<Vec<Created>> {
        let mut created = Vec::with_capacity(executions.len());
        for execution in executions {
            created.push(self.create_execution(execution).await?);
        }
        Ok(created)
    }

    /// An execution with all its task runs.
    async fn get_execution(&self, id: ExecutionId) -> Result<Execution>;

    /// Executions newest first, filtered, one page at a time.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage>;

    /// QUEUED or RETRYING → RUNNING, guarded by `attempt`, with a lease for `owner` that runs
    /// out `lease` after now. Moves a
    /// PENDING execution to RUNNING. Returns what the task needs to run: params and the outputs
    /// of its direct dependencies.
    ///
    /// Fails with `Conflict` when the attempt is stale, the task is not claimable or the
    /// execution is finished: the message that asked for it is then a duplicate to drop. When
    /// the execution's definition is paused ([`set_definition_paused`](Store::set_definition_paused)),
    /// the task is blocked instead ([`BlockedBy::Paused`](crate::model::BlockedBy::Paused):
    /// QUEUED without a message until [`admit_blocked`](Store::admit_blocked)), durably,
    /// and the claim fails with `Conflict`. Fails
    /// with `NewerVersion`, changing nothing, when the execution's definition is of a newer
    /// format than this build knows.
    async fn claim(&self, request: ClaimRequest) -> Result<ClaimedTask>;

    /// Extends a RUNNING task's lease to `lease` after now. Returns [`LeaseState::Cancelled`] when the
    /// execution was cancelled under the lease (the worker should stop), and `Conflict` when
    /// the lease is lost (attempt no longer current).
    async fn heartbeat(&self, task: &TaskRef, lease: Duration) -> Result<LeaseState>;

    /// Records the outcome of RUNNING tasks, each guarded by its attempt, all in one
    /// transaction where the backend can. Per task:
    ///
    /// - completed: store the output, decrement each dependent's remaining count, and make
    ///   every dependent that reaches zero QUEUED — exactly once, even when its last two
    ///   dependencies complete at the same time on two nodes;
    /// - failed with `retry_in`: RETRYING with the next attempt number, due that long after now;
    /// - failed without: FAILED, every transitive dependent still waiting SKIPPED.
    ///
    /// When every task of the execution is terminal, the execution becomes COMPLETED, or FAILED
    /// if any task failed. Items that lose their guard get `Conflict` in their slot; the rest
    /// still apply.
    async fn finish(&self, outcomes: Vec<TaskFinish>) -> Result<FinishReport>;

    /// Hands a RUNNING task back (graceful shutdown): QUEUED with the next attempt number.
    async fn release(&self, task: &TaskRef) -> Result<Changes>;

    /// Stops an execution that is not finished: every task not finished becomes CANCELLED
    /// (running ones keep their lease, so their heartbeat reports the cancellation) and the
    /// execution CANCELLED, or FAILED for a timeout. `Conflict` when already finished.
    async fn stop_execution(&self, id: ExecutionId, reason: StopReason) -> Result<StopOutcome>;

    /// Re-runs the failed part of a FAILED or CANCELLED execution: FAILED, SKIPPED and CANCELLED
    /// tasks are reset (next attempt number, fresh retry budget), those whose dependencies are
    /// all COMPLETED become QUEUED, and the execution RUNNING. `Conflict` otherwise.
    async fn retry_execution(&self, id: ExecutionId) -> Result<Changes>;

    /// Re-runs the task `task_id` of a finished execution (COMPLETED, FAILED or CANCELLED) and
    /// every task below it, keeping the outputs of the others; the execution becomes RUNNING.
    /// `Conflict` on a PENDING or RUNNING execution, `NotFound` for an unknown execution or task.
    async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<Changes>;

    /// Recovers RUNNING tasks whose lease expired before now: each becomes QUEUED with the
    /// next attempt number, or FAILED once it has expired more than `max_lease_expiries`
    /// times. Safe to call from every node at once: each task is recovered by one caller.
    async fn recover_expired(&self, max_lease_expiries: u32, limit: usize) -> Result<Changes>;

    /// Finds tasks whose queue message may have been lost: QUEUED for longer than
    /// `older_than`, and RETRYING tasks due that long ago (made QUEUED). Stamps each as queued
    /// now, so concurrent callers do not return the same task, and returns them in
    /// [`Changes::ready`] for republishing.
    async fn take_stale(&self, older_than: Duration, limit: usize) -> Result<Changes>;

    /// Wakes the WAITING task `task` (at its attempt) whose due time has come: a `sleep`
    /// COMPLETES (output `null`), a `waitFor` FAILS as timed out; what that starts below it is
    /// in the changes. `Conflict` when the task is no longer waiting at that attempt or not due
    /// yet (a timer that fired twice, or early).
    async fn wake(&self, task: &TaskRef) -> Result<Changes>;

    /// Wakes up to `limit` WAITING tasks whose due time has passed, as [`wake`](Store::wake)
    /// does, and starts the delayed executions whose time has come, as
    /// [`start_delayed`](Store::start_delayed) does (each counts as one against `limit`): the
    /// sweepers' catch-up for timers that a stopped node held. Safe to call from every node at
    /// once: each task is woken, and each execution started, by one caller.
    async fn wake_due(&self, limit: usize) -> Result<Changes>;

    /// Starts the delayed execution `id` whose time ([`ExecutionSummary::scheduled_for`]) has
    /// come: its root tasks are decided as at a creation (QUEUED, or as their `when` conditions
    /// say), its `start_time` is now and its deadline counts from now. `Conflict` when it is
    /// not waiting for its time (started already, cancelled, never delayed) or its time has not
    /// come (a timer that fired twice, or early); `NotFound` for an unknown execution.
    async fn start_delayed(&self, id: ExecutionId) -> Result<Changes>;

    /// Sends the signal `name` with `payload` to execution `id`: the first task WAITING for it
    /// COMPLETES with the payload as output; with none waiting yet, the signal is kept (durably)
    /// for the first that will. `NotFound` for an unknown execution, `Conflict` when it is
    /// finished, `InvalidInput` when none of its tasks waits for `name`.
    async fn signal(&self, id: ExecutionId, name: &str, payload: Value) -> Result<SignalOutcome>;

    /// Takes up to `limit` executions that were created outside the engine (in a caller's own
    /// database transaction, e.g. `PgStore::execute_in`) and whose ready tasks were not yet
    /// handed to the Queue, and returns those tasks in [`Changes::ready`] to publish (and each
    /// such execution that is delayed, in [`Changes::scheduled`]). Each is taken by one caller
    /// however many nodes ask. The default has none.
    async fn take_unpublished(&self, limit: usize) -> Result<Changes> {
        let _ = limit;
        Ok(Changes::default())
    }

    /// Returns when [`take_unpublished`](Store::take_unpublished) may have something (a
    /// wake-up may be spurious; the sweeper also asks every sweep). The default never returns.
    async fn unpublished_wakeup(&self) -> Result<()> {
        std::future::pending().await
    }

    /// Up to `limit` unfinished executions that a sub-job started and whose parent has finished:
    /// the stop of a parent reaches its children through the engine, after the commit
    /// ([`Changes::stopped_children`]), unless the node died in between; the sweepers stop
    /// these.
    async fn orphaned_children(&self, limit: usize) -> Result<Vec<ExecutionId>>;

    /// Pauses (`paused`) or resumes the definition `id`, every version of it: while it is
    /// paused, its executions start no new task (each is blocked at its claim). Resuming does
    /// not admit the blocked tasks: [`admit_blocked`](Store::admit_blocked) does. `NotFound`
    /// for an unknown definition.
    async fn set_definition_paused(&self, id: &str, paused: bool) -> Result<()>;

    /// Admits blocked tasks that may start now, in up to `limit` executions (or concurrency
    /// scopes): those a pause blocked, of a definition no longer paused, and those waiting for
    /// a concurrency slot (see naxos-core's `state/concurrency.rs`), oldest first, while a slot
    /// of theirs is free. Each becomes QUEUED anew and is returned in [`Changes::ready`] to
    /// publish. Every transition that frees a slot admits its waiting runs itself; this is the
    /// fallback for a node that died in between. Safe to call from every node at once: each
    /// task is admitted by one caller.
    async fn admit_blocked(&self, limit: usize) -> Result<Changes>;

    /// Unfinished executions whose deadline has passed.
    async fn overdue_executions(&self, limit: usize) -> Result<Vec<ExecutionId>>;

    /// Deletes up to `limit` finished executions that are due for pruning, with everything
    /// kept for them (tasks, attempts, idempotency key, schedule tick); returns how many.
    ///
    /// An execution is due once it is finished and its end time is older than its own
    /// retention for its end state ([`NewExecution::retention`], its definition version's),
    /// else than `defaults`' for that state; CANCELLED counts as failed (the rule is
    /// [`RetentionDefaults::expiry`] and [`RetentionDefaults::is_due`]). One call is one small
    /// batch: it finds its candidates through an index (never by reading every finished
    /// execution), holds no lock longer than the batch, and re-checks each candidate as it
    /// deletes it, so that one made RUNNING again meanwhile (a retry) is spared.
    async fn prune(&self, defaults: RetentionDefaults, limit: usize) -> Result<u64>;

    /// Counts for the system status.
    async fn counts(&self) -> Result<StoreCounts>;

    /// Executions not yet started (PENDING), for admission control. The default reads
    /// [`counts`](Store::counts); a backend should answer it from an index.
    async fn pending_executions(&self) -> Result<u64> {
        let counts = self.counts().await?;
        Ok(counts.executions.get(&ExecutionStatus::Pending).copied().unwrap_or(0))
    }

    /// Records a node's heartbeat (insert or replace by id), with `last_seen` set to now.
    async fn put_node(&self, node: NodeInfo) -> Result<()>;

    /// Deletes the nodes not seen for longer than `older_than`; returns how many.
    async fn prune_nodes(&self, older_than: Duration) -> Result<u64>;

    /// Every node that has reported, by id.
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;

    /// Writes a consistent copy of the whole Store into `directory` (created if needed) while
    /// it keeps serving, and returns the file written. Optional: a Store with tools of its own
    /// for this (PostgreSQL: `pg_dump`, base backups) answers [`Error::NotSupported`], the
    /// default.
    ///
    /// [`Error::NotSupported`]: crate::Error::NotSupported
    async fn backup(&self, directory: &Path) -> Result<PathBuf> {
        let _ = directory;
        Err(crate::Error::NotSupported { operation: "backup" })
    }

    // Cron schedules. Optional for a Store (the defaults answer `NotSupported`, and an engine
    // on such a Store runs no scheduler); the three Stores of naxos implement them.

    /// Creates a schedule (its cursor, [`StoredSchedule::last_tick`], at now), or, when one
    /// with its id exists, leaves it as it is if it asks for the same thing (its paused state
    /// aside) or replaces it ([`StoredSchedule::updated`]). The caller has validated it.
    async fn put_schedule(&self, schedule: Schedule) -> Result<SchedulePut> {
        let _ = schedule;
        Err(crate::Error::NotSupported { operation: "schedules" })
    }

    /// One schedule; `NotFound` when unknown.
    async fn get_schedule(&self, id: &str) -> Result<StoredSchedule> {
        let _ = id;
        Err(crate::Error::NotSupported { operation: "schedules" })
    }

    /// Every schedule, by id.
    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        Err(crate::Error::NotSupported { operation: "schedules" })
    }

    /// Deletes a schedule (the executions it started stay); `NotFound` when unknown.
    async fn delete_schedule(&self, id: &str) -> Result<()> {
        let _ = id;
        Err(crate::Error::NotSupported { operation: "schedules" })
    }

    /// Pauses or resumes a schedule ([`StoredSchedule::set_paused`], at now: a resume moves
    /// its cursor to now) and returns it; unchanged when it already is so. `NotFound` when
    /// unknown.
    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<StoredSchedule> {
        let _ = (id, paused);
        Err(crate::Error::NotSupported { operation: "schedules" })
    }

    /// Fires one tick: **in one atomic step**, checks that the schedule exists, is not paused
    /// and has not passed the tick (its cursor is before it), records the unique
    /// (schedule, tick), creates `execution` with [`NewExecution::schedule_id`] set, and moves
    /// the cursor to the tick. Two callers racing for one tick: exactly one gets
    /// [`Fired::Created`], the other [`Fired::Taken`]. `NotFound` when the schedule is gone.
    async fn fire_schedule(&self, tick: ScheduleTick, execution: NewExecution) -> Result<Fired> {
        let _ = (tick, execution);
        Err(crate::Error::NotSupported { operation: "schedules" })
    }

    /// Moves a schedule's cursor forward to `through` (never back): the ticks up to it were
    /// missed and are not to run. `NotFound` when the schedule is gone.
    async fn skip_schedule_ticks(&self, id: &str, through: DateTime<Utc>) -> Result<()> {
        let _ = (id, through);
        Err(crate::Error::NotSupported { operation: "schedules" })
    }
}

/// One tick of a schedule, for [`Store::fire_schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTick {
    /// The schedule.
    pub schedule_id: String,
    /// The tick's time (the cron's, not when a node noticed it).
    pub at: DateTime<Utc>,
}

/// What [`Store::fire_schedule`] did.
#[derive(Debug, Clone)]
pub enum Fired {
    /// The tick's execution was created: publish its changes.
    Created(Box<Created>),
    /// The tick was fired already (by another node), or passed (skipped, or before a resume).
    Taken,
    /// The schedule is paused: nothing was created.
    Paused,
}

impl Fired {
    /// Decides a fire from the schedule as it stands: `None` when the tick is to be created.
    pub fn refused(schedule: &StoredSchedule, tick: &ScheduleTick) -> Option<Fired> {
        if schedule.schedule.paused {
            Some(Fired::Paused)
        } else if tick.at <= schedule.last_tick {
            Some(Fired::Taken)
        } else {
            None
        }
    }
}

/// What [`Store::put_definition`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionPut {
    /// The version now in force for this content.
    pub definition: Arc<StoredDefinition>,
    /// False when identical content was already the latest version.
    pub created: bool,
}

/// A new execution for [`Store::create_execution`].
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Its id (a UUIDv7).
    pub id: ExecutionId,
    /// The definition.
    pub definition_id: String,
    /// The pinned version.
    pub definition_version: u32,
    /// The params (a JSON object).
    pub params: Value,
    /// Deduplication key, unique per definition.
    pub idempotency_key: Option<String>,
    /// The W3C trace context of the submitting request, kept with the execution
    /// ([`ExecutionSummary::traceparent`]) and handed to every claim of its tasks.
    pub traceparent: Option<TraceParent>,
    /// The schedule whose tick starts it ([`Store::fire_schedule`] sets it).
    pub schedule_id: Option<String>,
    /// How long it may run: its deadline is this long after its creation, or for a delayed
    /// execution after it starts.
    pub timeout: Option<Duration>,
    /// A later start (`delayMs`, `runAt`): the execution is created PENDING with no task
    /// queued, and starts when the Store's clock reaches its time ([`Store::start_delayed`],
    /// [`Store::wake_due`]). `None`, or a time already past: it starts at once.
    pub delay: Option<Delay>,
    /// Its definition version's own retention (the job-level `retention`), which the Store
    /// keeps with it for [`Store::prune`]; `None` (or periods left out) for the default.
    pub retention: Option<Retention>,
    /// The tasks, in the definition's sorted order (a task's index is its position), shared
    /// by every execution of the version (see [`StoredDefinition::new_tasks`]).
    pub tasks: Arc<[NewTask]>,
    /// For a child execution a sub-job starts: its parent task (set by the state module's
    /// [`ChildStart`](crate::state::ChildStart), never by a caller).
    pub parent: Option<ParentLink>,
    /// Its priority ([`ExecutionSummary::priority`]): by default its definition's job-level
    /// `priority`, else the lowest; a sub-job's child has its parent's.
    pub priority: Priority,
}

impl NewExecution {
    /// An execution of `definition` with `params`: a fresh UUIDv7, the definition's tasks and
    /// dependencies, its `timeoutMs` and `retention`, no idempotency key or trace context, and
    /// no delay.
    pub fn new(definition: &StoredDefinition, params: Value) -> Self {
        let def = &definition.definition;
        Self {
            id: uuid::Uuid::now_v7(),
            definition_id: def.id.clone(),
            definition_version: definition.version,
            params,
            idempotency_key: None,
            traceparent: None,
            schedule_id: None,
            timeout: def.timeout(),
            delay: None,
            retention: def.retention.filter(|r| !r.is_empty()),
            tasks: definition.new_tasks(),
            parent: None,
            priority: def.default_priority(),
        }
    }

    /// The definitions of its `subJob` tasks that give no `version`: each must be pinned to
    /// the latest version before the execution is created ([`pin_sub_jobs`](Self::pin_sub_jobs)).
    pub fn unpinned_sub_jobs(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks
            .iter()
            .filter_map(|t| t.plan.sub_job.as_ref())
            .filter(|j| j.version.is_none())
            .map(|j| j.definition_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Pins the `version` of each `subJob` task that gives none to `latest(definition id)`
    /// (the tasks are copied for this execution; `latest` is asked only for those, and a
    /// definition it does not know stays unpinned: the task FAILS when it starts).
    pub fn pin_sub_jobs(&mut self, latest: impl Fn(&str) -> Option<u32>) {
        if !self
            .tasks
            .iter()
            .any(|t| t.plan.sub_job.as_ref().is_some_and(|j| j.version.is_none()))
        {
            return;
        }
        let mut tasks = self.tasks.to_vec();
        for t in &mut tasks {
            if t.plan.sub_job.as_ref().is_some_and(|j| j.version.is_none()) {
                // This execution's own copy of the plan: the template's stays unpinned.
                if let Some(job) = Arc::make_mut(&mut t.plan).sub_job.as_mut() {
                    job.version = latest(&job.definition_id);
                }
            }
        }
        self.tasks = tasks.into();
    }
}

/// What [`Store::create_execution`] did.
#[derive(Debug, Clone)]
pub struct Created {
    /// The new (or, for a repeated idempotency key, the existing) execution.
    pub execution_id: ExecutionId,
    /// False when an existing execution was returned.
    pub created: bool,
    /// Its status: as the state module left it when new (PENDING, or already finished when the
    /// `when` conditions of its roots left nothing to run), as it stands when it existed.
    pub status: ExecutionStatus,
    /// The root tasks to publish and the creation events.
    pub changes: Changes,
}

/// Filters and cursor for [`Store::list_executions`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionQuery {
    /// Only executions in this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions of this definition.
    pub definition_id: Option<String>,
    /// Only executions started by this schedule's ticks.
    pub schedule_id: Option<String>,
    /// Page size (the backend may cap it; 0 means its default).
    pub limit: usize,
    /// Only executions older than this one (the previous page's `next_cursor`).
    pub cursor: Option<ExecutionId>,
}

/// One page of executions, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionPage {
    /// The executions.
    pub executions: Vec<ExecutionSummary>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<ExecutionId>,
}

/// A claim for [`Store::claim`].
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The task and the attempt the message named.
    pub task: TaskRef,
    /// The claiming node.
    pub owner: String,
    /// How long the lease lasts unless renewed.
    pub lease: Duration,
}

/// A claimed task, with its inputs.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    /// The task and its (fencing) attempt.
    pub task: TaskRef,
    /// The definition.
    pub definition_id: String,
    /// The pinned version.
    pub definition_version: u32,
    /// How many times the task has now been started (this one included).
    pub attempts: u32,
    /// How many earlier attempts failed.
    pub failures: u32,
    /// When the task last became QUEUED (for the queue-wait metric).
    pub queued_at: Option<DateTime<Utc>>,
    /// The execution's params.
    pub params: Arc<Value>,
    /// Outputs of the direct dependencies, by task id (of the fan-out's, for an instance).
    pub upstream: BTreeMap<String, Arc<Value>>,
    /// For an instance of a fan-out: its index and its item (see [`crate::model::Instance`]).
    pub instance: Option<(u32, Value)>,
    /// The execution's trace context ([`ExecutionSummary::traceparent`]), so that the worker
    /// traces the attempt in the submitting request's trace without another read.
    pub traceparent: Option<TraceParent>,
    /// The status events of the claim.
    pub changes: Changes,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease was extended; carry on.
    Active,
    /// The execution was cancelled; stop the task (its result will be discarded).
    Cancelled,
}

/// One task outcome for [`Store::finish`].
#[derive(Debug, Clone)]
pub struct TaskFinish {
    /// The task and the attempt that ran.
    pub task: TaskRef,
    /// What happened.
    pub outcome: TaskOutcome,
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub enum TaskOutcome {
    /// Succeeded with this output.
    Completed(Value),
    /// Failed with this error; `retry_in` says how long after now to try again, `None` for never.
    Failed {
        /// The error message.
        error: String,
        /// The delay before the next attempt, if one is allowed.
        retry_in: Option<Duration>,
    },
}

/// What [`Store::finish`] did.
#[derive(Debug, Default)]
pub struct FinishReport {
    /// One result per outcome given, in order (`Conflict` for a lost guard).
    pub results: Vec<Result<()>>,
    /// Everything the applied outcomes changed.
    pub changes: Changes,
}

/// Why an execution is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A caller cancelled it: it ends CANCELLED.
    Cancelled,
    /// Its deadline passed: it ends FAILED.
    TimedOut,
}

/// What [`Store::stop_execution`] did.
#[derive(Debug, Clone)]
pub struct StopOutcome {
    /// The execution's new status.
    pub status: ExecutionStatus,
    /// Tasks that were RUNNING (their workers should be told).
    pub running: Vec<TaskRef>,
    /// The status events.
    pub changes: Changes,
}

/// What [`Store::signal`] did.
#[derive(Debug, Clone, Default)]
pub struct SignalOutcome {
    /// The `waitFor` task that took the signal now, if one was waiting; none: the signal is
    /// kept for the first task of its name that starts waiting.
    pub delivered_to: Option<String>,
    /// The status changes.
    pub changes: Changes,
}

/// Counts for the system status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Executions by status.
    pub executions: BTreeMap<ExecutionStatus, u64>,
    /// Tasks QUEUED right now.
    pub queued_tasks: u64,
    /// Tasks RUNNING right now.
    pub running_tasks: u64,
}
