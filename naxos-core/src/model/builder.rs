//! Building job definitions in Rust code instead of JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{BackoffPolicy, JobDefinition, Retention, Sleep, TaskDefinition, Trigger, WaitFor};

impl JobDefinition {
    /// Starts a definition with this id.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("diamond")
    ///     .name("Diamond")
    ///     .task(TaskBuilder::new("fetch", "fetch").max_retry(3))
    ///     .task(TaskBuilder::new("left", "transform").after(["fetch"]))
    ///     .task(TaskBuilder::new("right", "transform").after(["fetch"]))
    ///     .task(TaskBuilder::new("join", "join").after(["left", "right"]))
    ///     .build();
    /// assert_eq!(def.dependencies("join"), ["left", "right"]);
    /// ```
    pub fn builder(id: impl Into<String>) -> DefinitionBuilder {
        DefinitionBuilder {
            def: JobDefinition {
                id: id.into(),
                name: String::new(),
                description: None,
                timeout_ms: None,
                retention: None,
                priority: None,
                tasks: BTreeMap::new(),
                graph: BTreeMap::new(),
            },
        }
    }
}

/// Builds a [`JobDefinition`]; validation happens when it is registered with the engine.
#[derive(Debug, Clone)]
#[must_use]
pub struct DefinitionBuilder {
    def: JobDefinition,
}

impl DefinitionBuilder {
    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.def.name = name.into();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.def.description = Some(description.into());
        self
    }

    /// Sets a time limit on each whole execution.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.def.timeout_ms = Some(duration_ms(timeout));
        self
    }

    /// Keeps this definition's finished executions for their own periods instead of the
    /// server's default: the job-level `retention` (see [`Retention`]; a period it leaves out
    /// follows the default, and CANCELLED executions follow `failed_ms`).
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use std::time::Duration;
    /// use naxos::{JobDefinition, Retention, TaskBuilder};
    /// let def = JobDefinition::builder("nightly")
    ///     .retention(Retention::new(Duration::from_secs(3_600), Duration::from_secs(30 * 86_400)))
    ///     .task(TaskBuilder::new("report", "report"))
    ///     .build();
    /// assert_eq!(def.retention.unwrap().completed_ms, Some(3_600_000));
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.def.retention = Some(retention);
        self
    }

    /// Runs its executions at `priority` where the request gives none (the job-level
    /// `priority`; see [`Priority`](super::Priority)).
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::model::{JobDefinition, Priority, TaskBuilder};
    /// let def = JobDefinition::builder("alerts").priority(Priority::HIGHEST).task(TaskBuilder::new("page", "page")).build();
    /// assert_eq!(def.default_priority(), Priority::HIGHEST);
    /// ```
    pub fn priority(mut self, priority: super::Priority) -> Self {
        self.def.priority = Some(u64::from(priority.get()));
        self
    }

    /// Adds a task (replacing one with the same id).
    pub fn task(mut self, task: TaskBuilder) -> Self {
        let id = task.task.id.clone();
        if task.after.is_empty() {
            self.def.graph.remove(&id);
        } else {
            self.def.graph.insert(id.clone(), task.after);
        }
        self.def.tasks.insert(id, task.task);
        self
    }

    /// The finished definition.
    pub fn build(self) -> JobDefinition {
        self.def
    }
}

/// Builds one task of a [`DefinitionBuilder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TaskBuilder {
    task: TaskDefinition,
    after: Vec<String>,
}

impl TaskBuilder {
    /// A task `id` that runs the function registered as `function_name`; its name defaults to its id.
    pub fn new(id: impl Into<String>, function_name: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            task: TaskDefinition {
                name: id.clone(),
                id,
                max_retry: 0,
                function_name: function_name.into(),
                timeout_ms: None,
                backoff: None,
                when: None,
                trigger: Trigger::default(),
                sleep: None,
                wait_for: None,
                for_each: None,
                max_fan_out: None,
                sub_job: None,
                concurrency: None,
                rate_limit: None,
            },
            after: Vec::new(),
        }
    }

    /// A task `id` that sleeps for `duration` (`"sleep": {"ms": …}`): WAITING, holding no
    /// worker slot, from when its trigger holds until the time is up (across restarts), then
    /// COMPLETED with output `null`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use naxos_core::model::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("reminder")
    ///     .task(TaskBuilder::new("order", "place_order"))
    ///     .task(TaskBuilder::sleep("a_day", Duration::from_secs(86_400)).after(["order"]))
    ///     .task(TaskBuilder::new("remind", "send_reminder").after(["a_day"]))
    ///     .build();
    /// assert_eq!(def.tasks["a_day"].sleep.as_ref().unwrap().ms, Some(86_400_000));
    /// ```
    pub fn sleep(id: impl Into<String>, duration: Duration) -> Self {
        Self::new(id, "").sleeping(Sleep {
            ms: Some(duration_ms(duration)),
            until: None,
        })
    }

    /// A task `id` that sleeps until the time `expression` gives (`"sleep": {"until": …}`): a
    /// CEL expression over `params` and `upstream` giving an RFC 3339 time, e.g.
    /// `"params.sendAt"`. A time past already completes at once; an expression that fails FAILS
    /// the task.
    pub fn sleep_until(id: impl Into<String>, expression: impl Into<String>) -> Self {
        Self::new(id, "").sleeping(Sleep {
            ms: None,
            until: Some(expression.into()),
        })
    }

    fn sleeping(self, sleep: Sleep) -> Self {
        self.kind(Some(sleep), None)
    }

    /// Makes the task a sleep or a wait instead of a function (for scenario generators; the
    /// constructors above are the way to build one).
    #[doc(hidden)]
    pub fn kind(mut self, sleep: Option<Sleep>, wait_for: Option<WaitFor>) -> Self {
        if sleep.is_some() || wait_for.is_some() {
            self.task.function_name.clear();
        }
        self.task.sleep = sleep;
        self.task.wait_for = wait_for;
        self
    }

    /// A task `id` that waits for the signal `signal` (`"waitFor": {"signal": …}`): WAITING,
    /// holding no worker slot, until [`Engine::signal`](crate::Engine::signal) (or `POST
    /// /api/v1/jobs/{executionId}/signals/{name}`) sends it, then COMPLETED with the signal's
    /// payload as its output. A signal sent before the task waits is kept for it. Bound the
    /// wait with [`signal_timeout`](Self::signal_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use naxos_core::model::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("refund")
    ///     .task(TaskBuilder::wait_for("approval", "approve").signal_timeout(Duration::from_secs(3_600)))
    ///     .task(TaskBuilder::new("pay", "pay_refund").after(["approval"]))
    ///     .build();
    /// assert_eq!(def.tasks["approval"].wait_for.as_ref().unwrap().signal, "approve");
    /// ```
    pub fn wait_for(id: impl Into<String>, signal: impl Into<String>) -> Self {
        let wait = WaitFor {
            signal: signal.into(),
            timeout_ms: None,
        };
        Self::new(id, "").kind(None, Some(wait))
    }

    /// How long a [`wait_for`](Self::wait_for) task waits (`timeoutMs`), from when it starts
    /// waiting: past it the task FAILS with `signal <name> timed out`. No effect on other tasks.
    pub fn signal_timeout(mut self, timeout: Duration) -> Self {
        if let Some(w) = self.task.wait_for.as_mut() {
            w.timeout_ms = Some(duration_ms(timeout));
        }
        self
    }

    /// A fan-out (`"forEach"`): `list` is a CEL expression over `params` and `upstream` giving
    /// a list, evaluated once when the task starts. The function runs once per element — an
    /// instance with its own attempts and retries, which reads its element with
    /// [`TaskContext::item`](crate::TaskContext::item) and its position with
    /// [`TaskContext::index`](crate::TaskContext::index) — and the task's output is the list
    /// of the instances' outputs, in order; the tasks below start when every instance
    /// COMPLETED. An empty list completes at once with `[]`; the first instance that FAILS for
    /// good FAILS the task (the instances not yet started are CANCELLED). At most
    /// [`max_fan_out`](Self::max_fan_out) instances (default 1,000).
    ///
    /// ```
    /// use naxos_core::model::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("thumbnails")
    ///     .task(TaskBuilder::new("list", "list_images"))
    ///     .task(TaskBuilder::new("resize", "resize").after(["list"]).for_each("upstream.list.images"))
    ///     .task(TaskBuilder::new("publish", "publish").after(["resize"]))
    ///     .build();
    /// assert_eq!(def.tasks["resize"].for_each.as_deref(), Some("upstream.list.images"));
    /// ```
    pub fn for_each(mut self, list: impl Into<String>) -> Self {
        self.task.for_each = Some(list.into());
        self
    }

    /// A task `id` that runs the definition `definition_id` as a child execution (`"subJob"`):
    /// RUNNING, holding no worker slot, while the child runs; COMPLETED with the child's
    /// outputs by task id (`{taskId: output}`) when it completes; when it FAILS, a new child
    /// starts while [`max_retry`](Self::max_retry) allows, then the task FAILS; a child
    /// cancelled from elsewhere FAILS the task for good, and cancelling the parent cancels the
    /// child. The child's params are the parent's unless [`sub_job_params`](Self::sub_job_params)
    /// says otherwise; its version is the latest when the parent is created unless
    /// [`sub_job_version`](Self::sub_job_version) pins one.
    ///
    /// ```
    /// use naxos_core::model::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("order")
    ///     .task(TaskBuilder::new("reserve", "reserve_stock"))
    ///     .task(TaskBuilder::sub_job("ship", "shipping").sub_job_params("{'address': params.address}").after(["reserve"]))
    ///     .build();
    /// assert_eq!(def.tasks["ship"].sub_job.as_ref().unwrap().definition_id, "shipping");
    /// ```
    pub fn sub_job(id: impl Into<String>, definition_id: impl Into<String>) -> Self {
        let mut task = Self::new(id, "");
        task.task.sub_job = Some(super::SubJob {
            definition_id: definition_id.into(),
            version: None,
            params: None,
        });
        task
    }

    /// Pins the version a [`sub_job`](Self::sub_job) runs (`subJob.version`).
    pub fn sub_job_version(mut self, version: u32) -> Self {
        if let Some(job) = self.task.sub_job.as_mut() {
            job.version = Some(version);
        }
        self
    }

    /// The params of a [`sub_job`](Self::sub_job)'s child (`subJob.params`): a CEL expression
    /// over `params` and `upstream` giving an object, evaluated when the task starts.
    pub fn sub_job_params(mut self, expression: impl Into<String>) -> Self {
        if let Some(job) = self.task.sub_job.as_mut() {
            job.params = Some(expression.into());
        }
        self
    }

    /// At most `limit` runs of this task at once across every node (`concurrency.limit`); runs
    /// over it wait QUEUED and start in order as slots free.
    ///
    /// ```
    /// use naxos_core::model::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("import")
    ///     .task(TaskBuilder::new("fetch", "fetch").concurrency(2).concurrency_key("params.tenant"))
    ///     .build();
    /// assert_eq!(def.tasks["fetch"].concurrency.as_ref().unwrap().limit, 2);
    /// ```
    pub fn concurrency(mut self, limit: u32) -> Self {
        let key = self.task.concurrency.take().and_then(|c| c.key);
        self.task.concurrency = Some(super::Concurrency { limit, key });
        self
    }

    /// The key a [`concurrency`](Self::concurrency) limit counts per (`concurrency.key`): a CEL
    /// expression over `params` and `upstream` giving a string. Without a limit set first it
    /// does nothing.
    pub fn concurrency_key(mut self, expression: impl Into<String>) -> Self {
        if let Some(c) = self.task.concurrency.as_mut() {
            c.key = Some(expression.into());
        }
        self
    }

    /// At most `burst` runs of this task start at once and `per_second` a second after that,
    /// across every node (`rateLimit`); runs over it wait QUEUED for their turn.
    ///
    /// ```
    /// use naxos_core::model::{JobDefinition, TaskBuilder};
    /// let def = JobDefinition::builder("mail")
    ///     .task(TaskBuilder::new("send", "send").rate_limit(5.0, 10).rate_limit_key("params.domain"))
    ///     .build();
    /// assert_eq!(def.tasks["send"].rate_limit.as_ref().unwrap().burst, 10);
    /// ```
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        let key = self.task.rate_limit.take().and_then(|r| r.key);
        self.task.rate_limit = Some(super::RateLimit { per_second, burst, key });
        self
    }

    /// The key a [`rate_limit`](Self::rate_limit) counts per (`rateLimit.key`): a CEL
    /// expression over `params` and `upstream` giving a string. Without a limit set first it
    /// does nothing.
    pub fn rate_limit_key(mut self, expression: impl Into<String>) -> Self {
        if let Some(r) = self.task.rate_limit.as_mut() {
            r.key = Some(expression.into());
        }
        self
    }

    /// The most instances a [`for_each`](Self::for_each) may start (`maxFanOut`; default
    /// 1,000, at most 10,000): a longer list FAILS the task naming its length.
    pub fn max_fan_out(mut self, max: u32) -> Self {
        self.task.max_fan_out = Some(max);
        self
    }

    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.task.name = name.into();
        self
    }

    /// Extra attempts after retryable failures.
    pub fn max_retry(mut self, max_retry: u32) -> Self {
        self.task.max_retry = max_retry;
        self
    }

    /// A time limit on each attempt (`timeoutMs` in JSON).
    ///
    /// When an attempt runs past it, its [cancellation token](crate::TaskContext::cancelled)
    /// fires and the function has [`EngineConfig::cancel_grace`](crate::EngineConfig::cancel_grace)
    /// (default 5 s) to return; then its future is dropped. Whatever it returns after the
    /// timeout is discarded: the attempt fails retryably with `timed out after N ms`, and is
    /// tried again while [`max_retry`](Self::max_retry) allows. A function that awaits I/O is
    /// stopped at its next `.await` when dropped; one that does long work between awaits should
    /// race it against the token so that it stops on time:
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use std::time::Duration;
    /// use naxos::{serde_json::json, Engine, TaskBuilder, TaskError};
    ///
    /// let engine = Engine::in_memory();
    /// engine.register("crawl", |ctx| async move {
    ///     tokio::select! {
    ///         _ = ctx.cancelled() => Err(TaskError::retryable("stopped: timed out or cancelled")),
    ///         pages = async { /* the long work */ 3 } => Ok(json!({ "pages": pages })),
    ///     }
    /// });
    /// let task = TaskBuilder::new("crawl", "crawl").timeout(Duration::from_secs(30)).max_retry(2);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.task.timeout_ms = Some(duration_ms(timeout));
        self
    }

    /// The backoff between attempts.
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.task.backoff = Some(backoff);
        self
    }

    /// A condition: a CEL expression over `params` (the execution's params) and `upstream`
    /// (the outputs of the COMPLETED direct dependencies, by task id; test one with `has()`),
    /// evaluated once when the trigger holds. False SKIPS the task with error `condition
    /// false` (its function never runs); an expression that fails or gives no bool FAILS it.
    /// One that does not compile is refused at registration.
    ///
    /// ```
    /// use naxos_core::model::{JobDefinition, TaskBuilder, Trigger};
    /// let def = JobDefinition::builder("branch")
    ///     .task(TaskBuilder::new("a", "fetch"))
    ///     .task(TaskBuilder::new("big", "bulk").after(["a"]).when("params.x > 1"))
    ///     .task(TaskBuilder::new("small", "single").after(["a"]).when("params.x <= 1"))
    ///     .task(TaskBuilder::new("join", "report").after(["big", "small"]).trigger(Trigger::NoneFailed))
    ///     .build();
    /// assert_eq!(def.tasks["big"].when.as_deref(), Some("params.x > 1"));
    /// ```
    pub fn when(mut self, condition: impl Into<String>) -> Self {
        self.task.when = Some(condition.into());
        self
    }

    /// When the task may start from its dependencies' end states (default
    /// [`Trigger::AllSuccess`]); see [`Trigger`].
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.task.trigger = trigger;
        self
    }

    /// The tasks this one waits for.
    pub fn after<I, S>(mut self, dependencies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after.extend(dependencies.into_iter().map(Into::into));
        self
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
