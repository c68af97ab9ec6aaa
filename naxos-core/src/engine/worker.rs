//! A node's worker pool: consume → claim → ack → run → finish.
//!
//! With [`EngineConfig::run_ready_here`](super::EngineConfig::run_ready_here), a transition on
//! this node that makes tasks ready (a submit, a completion releasing dependents) runs them on
//! here at once while the node has spare concurrency slots — claimed, not published — instead of
//! sending each round the queue to be delivered back: a hop of the broker's durable round trip
//! saved per task, the same claim under the same rules. What finds no spare slot is published
//! as always, so a busy node leaves its successors to the others and never holds back the
//! deliveries waiting for its slots. A task run on here is as durable as a delivered one: its
//! claim holds a lease, and until it commits the task is QUEUED in the Store, where the stale
//! sweep finds it if this node dies first.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinError;
use tokio::time::Instant;
use tracing::Instrument;

use super::inner::Inner;
use super::Heartbeat;
use crate::backend::{Changes, ClaimRequest, ClaimedTask, Consumer, Delivery, LeaseState, TaskFinish, TaskOutcome};
use crate::model::{find_nul, nul_message, without_nul, TaskDefinition, TaskRef, TraceParent};
use crate::task::{TaskContext, TaskError};

/// Pause after a failed consume before trying again; doubles up to [`MAX_RECONNECT`].
const MIN_RECONNECT: Duration = Duration::from_millis(100);
const MAX_RECONNECT: Duration = Duration::from_secs(5);
/// Attempts to record an outcome while the Store has transient trouble.
const FINISH_TRIES: u32 = 8;
/// How many claims of a task may find its function missing (handing it back each time) before
/// it FAILS: during a rolling deploy, some node has it.
const MAX_MISSING_FUNCTION_CLAIMS: u32 = 10;
/// How long a message whose claim failed on a Store error is held before it is requeued (and a
/// claimed task whose definition could not be read before it is handed back).
const CLAIM_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Consumes task messages until the node stops, running each under a concurrency slot.
pub(crate) async fn run(inner: Arc<Inner>) {
    let slots = inner.slots.clone();
    let mut consumer: Option<Box<dyn Consumer>> = None;
    let mut pause = MIN_RECONNECT;
    loop {
        let c = match consumer.as_mut() {
            Some(c) => c,
            None => {
                let started = tokio::select! {
                    _ = inner.stopping.cancelled() => break,
                    c = inner.queue.consume(inner.config.concurrency) => c,
                };
                match started {
                    Ok(c) => consumer.insert(c),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?pause, "cannot start a consumer");
                        if !sleep_unless_stopping(&inner, &mut pause).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        let permit = tokio::select! {
            _ = inner.stopping.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("the slots semaphore is never closed"),
        };
        let next = tokio::select! {
            _ = inner.stopping.cancelled() => break,
            n = c.next() => n,
        };
        match next {
            Ok(Some(delivery)) => {
                pause = MIN_RECONNECT;
                inner
                    .tracker
                    .spawn(handle(inner.clone(), Source::Queue(delivery), permit));
            }
            Ok(None) | Err(_) => {
                match next {
                    Err(e) => tracing::warn!(error = %e, "consumer failed; reconnecting"),
                    _ => tracing::warn!("the queue ended the consumer (was the queue deleted?); reconnecting"),
                }
                consumer = None;
                if !sleep_unless_stopping(&inner, &mut pause).await {
                    break;
                }
            }
        }
    }
    // Dropping the consumer hands its unacknowledged deliveries back to the queue.
    drop(consumer);
}

/// Waits [`CLAIM_RETRY_PAUSE`], or less if the node stops meanwhile.
async fn pause_unless_stopping(inner: &Inner) {
    tokio::select! {
        _ = tokio::time::sleep(CLAIM_RETRY_PAUSE) => {}
        _ = inner.stopping.cancelled() => {}
    }
}

async fn sleep_unless_stopping(inner: &Inner, pause: &mut Duration) -> bool {
    let d = *pause;
    *pause = (*pause * 2).min(MAX_RECONNECT);
    tokio::select! {
        _ = inner.stopping.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// How an attempt ended, as far as the worker is concerned.
enum Ending {
    /// Record this outcome.
    Outcome(TaskOutcome),
    /// Put the task back in line for another node (shutdown).
    HandBack,
    /// Nothing to record: the execution was cancelled or the lease was lost.
    Discard(&'static str),
}

/// A rate-limited claim deferred for at most this long is tried again in place, holding its
/// message, rather than sent round the queue.
const WAIT_IN_PLACE: Duration = Duration::from_millis(50);

/// Where a task to run came from.
enum Source {
    /// A queue delivery, settled once the claim decided its fate.
    Queue(Delivery),
    /// A task a transition on this node made ready, taken without a message (see the module
    /// docs): where a delivery would go back to the queue, it is published.
    Local(TaskRef),
}

impl Source {
    fn task(&self) -> &TaskRef {
        match self {
            Source::Queue(d) => &d.task,
            Source::Local(t) => t,
        }
    }

    /// The task is taken care of (claimed, or found stale).
    async fn done(self) {
        if let Source::Queue(d) = self {
            settle(d.ack().await);
        }
    }

    /// The task goes back in line: `hand_back` for a node of a newer release, else requeued.
    async fn back(self, inner: &Inner, newer: bool) {
        match self {
            Source::Queue(d) if newer => settle(d.hand_back().await),
            Source::Queue(d) => settle(d.nack(true).await),
            Source::Local(task) => {
                if let Err(e) = inner.queue.publish(std::slice::from_ref(&task)).await {
                    tracing::warn!(%task, error = %e, "could not publish a task; the sweep will");
                }
            }
        }
    }
}

async fn handle(inner: Arc<Inner>, source: Source, slot: OwnedSemaphorePermit) {
    let request = ClaimRequest {
        task: source.task().clone(),
        owner: inner.config.node_id.clone(),
        lease: inner.config.lease_ttl,
    };
    let mut lease_from = Instant::now();
    let mut result = inner.store.claim(request.clone()).await;
    while let Some(after) = result
        .as_ref()
        .err()
        .and_then(crate::Error::deferred_for)
        .filter(|d| *d <= WAIT_IN_PLACE)
    {
        tokio::select! {
            _ = inner.stopping.cancelled() => break,
            _ = tokio::time::sleep(after) => {}
        }
        lease_from = Instant::now();
        result = inner.store.claim(request.clone()).await;
    }
    let task = &request.task;
    let mut claimed = match result {
        Ok(c) => c,
        Err(e) if e.deferred_for().is_some() => {
            // Its rate limit booked it a turn: the message comes back then. Were this publish
            // lost, the stale sweep publishes the task once its turn is long past.
            let after = e.deferred_for().unwrap_or_default();
            tracing::debug!(%task, reason = %e, "deferring a rate-limited task");
            if let Err(publish) = inner.queue.publish_delayed(task, after).await {
                tracing::warn!(%task, error = %publish, "could not publish a deferred task; the sweep will");
            }
            source.done().await;
            return;
        }
        Err(e) if e.is_conflict() || e.is_not_found() => {
            tracing::debug!(%task, reason = %e, "dropping a stale message");
            source.done().await;
            return;
        }
        Err(e) if e.is_newer_version() => {
            // Written by a newer release (a rolling upgrade): a node of that release can run
            // it. Handed back as undeliverable here, so that if no such node comes, the
            // queue's delivery limit dead-letters the message (the Store still holds the
            // task QUEUED, and the sweepers publish it again later).
            tracing::warn!(%task, error = %e, "handing back a task this node is too old for");
            pause_unless_stopping(&inner).await;
            source.back(&inner, true).await;
            return;
        }
        Err(e) => {
            // The Store is in trouble (restarting, unreachable): hold the message a moment so
            // that requeueing it does not spin, then give it back.
            tracing::warn!(%task, error = %e, "claim failed; message requeued");
            pause_unless_stopping(&inner).await;
            source.back(&inner, false).await;
            return;
        }
    };
    // The claim is durable: the message has done its job. Acking now means a long task never
    // meets the broker's ack timeout; if this node dies, the lease expiry brings the task back.
    source.done().await;
    inner.dispatch(std::mem::take(&mut claimed.changes)).await;
    // The attempt is a span of its own in the submitting request's trace: `trace_id` and
    // `parent_span_id` join it there, `span_id` is what the task function passes on.
    let trace = claimed.traceparent.map(|submitted| submitted.child());
    let span = tracing::info_span!(
        "task",
        definition_id = %claimed.definition_id,
        execution_id = %claimed.task.execution_id,
        task_id = %claimed.task.task_id,
        attempt = claimed.attempts,
        function = tracing::field::Empty,
        trace_id = trace.map(|t| tracing::field::display(t.trace_id_hex())),
        parent_span_id = claimed.traceparent.map(|t| tracing::field::display(t.parent_id_hex())),
        span_id = trace.map(|t| tracing::field::display(t.parent_id_hex())),
    );
    async move {
        let started = tokio::time::Instant::now();
        let (ending, function) = run_attempt(&inner, &claimed, trace, lease_from).await;
        let outcome = match &ending {
            Ending::Outcome(TaskOutcome::Completed(_)) => "completed",
            Ending::Outcome(TaskOutcome::Failed { retry_in: Some(_), .. }) => "retrying",
            Ending::Outcome(TaskOutcome::Failed { retry_in: None, .. }) => "failed",
            Ending::HandBack => "handed_back",
            Ending::Discard(_) => "discarded",
        };
        super::metrics::attempt(&function, outcome, Some(started.elapsed()));
        record(&inner, &claimed, ending, slot).await;
    }
    .instrument(span)
    .await
}

fn settle(result: crate::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "settling a delivery failed; a redelivery will be dropped as stale");
    }
}

/// Loads the function and runs it under timeout, heartbeat and cancellation, with `trace` (the
/// attempt's own trace context) in its context. Returns how it ended and the function's name
/// (`unknown` when the definition could not be read).
async fn run_attempt(
    inner: &Arc<Inner>,
    claimed: &ClaimedTask,
    trace: Option<TraceParent>,
    lease_from: Instant,
) -> (Ending, String) {
    let mut function = String::from("unknown");
    let ending = attempt_ending(inner, claimed, trace, lease_from, &mut function).await;
    (ending, function)
}

async fn attempt_ending(
    inner: &Arc<Inner>,
    claimed: &ClaimedTask,
    trace: Option<TraceParent>,
    lease_from: Instant,
    function_name: &mut String,
) -> Ending {
    let def = match inner
        .definitions
        .get(
            &*inner.store,
            &*inner.cache,
            &claimed.definition_id,
            claimed.definition_version,
        )
        .await
    {
        Ok(d) => d,
        // The Store's trouble is not the task's: give it back for a later claim, without
        // spending a retry (after a pause, so that a struggling Store is not hammered). So is
        // a definition of a newer format, which a node of the newer release can run.
        Err(e) if e.is_transient() || e.is_newer_version() => {
            tracing::warn!(error = %e, "loading the definition failed; handing the task back");
            pause_unless_stopping(inner).await;
            return Ending::HandBack;
        }
        Err(e) => {
            return failure(
                claimed,
                None,
                TaskError::fatal(format!("loading the definition failed: {e}")),
            )
        }
    };
    let task_id = crate::model::Instance::definition_task(&claimed.task.task_id);
    let Some(task_def) = def.definition.tasks.get(task_id) else {
        let error = format!(
            "task `{}` is not in definition `{}` version {}",
            claimed.task.task_id, claimed.definition_id, claimed.definition_version
        );
        return failure(claimed, None, TaskError::fatal(error));
    };
    function_name.clone_from(&task_def.function_name);
    tracing::Span::current().record("function", task_def.function_name.as_str());
    super::metrics::queue_wait(&task_def.function_name, claimed.queued_at, inner.now());
    let Some(function) = inner.registry.get(&task_def.function_name) else {
        // During a rolling deploy another node may have it: hand the task back (after a pause),
        // and fail it only when it has been handed around this many times.
        if claimed.attempts < MAX_MISSING_FUNCTION_CLAIMS {
            tracing::warn!(function = %task_def.function_name, "function not registered here; handing the task back");
            pause_unless_stopping(inner).await;
            return Ending::HandBack;
        }
        let error = format!(
            "function `{}` is not registered on node `{}` (nor on any node that claimed the task in \
             {MAX_MISSING_FUNCTION_CLAIMS} tries)",
            task_def.function_name, inner.config.node_id
        );
        return failure(claimed, Some(task_def), TaskError::fatal(error));
    };
    let token = inner.hard_stop.child_token();
    inner.track_running(&claimed.task, token.clone());
    let heartbeat = Heartbeat {
        store: inner.store.clone(),
        task: claimed.task.clone(),
        ttl: inner.config.lease_ttl,
    };
    let ctx = TaskContext {
        task: claimed.task.clone(),
        attempt: claimed.attempts,
        params: claimed.params.clone(),
        upstream: Arc::new(claimed.upstream.clone()),
        dependencies: def.definition.dependencies(task_id).into(),
        instance: claimed.instance.clone().map(|(index, item)| (index, Arc::new(item))),
        cancel: token.clone(),
        heartbeat: Some(heartbeat.clone()),
        traceparent: trace,
    };
    // In the `task` span: what the function logs carries the attempt's ids and trace.
    let mut running = tokio::spawn(function(ctx).in_current_span());
    let deadline = task_def.timeout().map(|t| tokio::time::Instant::now() + t);
    let mut beats = tokio::time::interval_at(
        tokio::time::Instant::now() + inner.config.heartbeat_interval(),
        inner.config.heartbeat_interval(),
    );
    // Self-fencing: the lease runs `lease_ttl` from the last renewal the Store granted (counted
    // here from when the request was sent, so never later than the Store's count). Past 90 % of
    // it without a renewal, another node may soon own the task: stop, and record nothing.
    let ttl = inner.config.lease_ttl;
    let fence_after = ttl - ttl / 10;
    let mut fence_at = lease_from + fence_after;
    let ending = loop {
        tokio::select! {
            result = &mut running => break result_ending(inner, claimed, task_def, result),
            _ = sleep_until(deadline) => {
                token.cancel();
                stop_within_grace(inner, &mut running).await;
                let ms = task_def.timeout_ms.unwrap_or_default();
                break failure(claimed, Some(task_def), TaskError::retryable(format!("timed out after {ms} ms")));
            }
            _ = tokio::time::sleep_until(fence_at) => {
                tracing::warn!("the lease could not be renewed before it ran out; stopping the attempt");
                token.cancel();
                stop_within_grace(inner, &mut running).await;
                break Ending::Discard("the lease could not be renewed before it ran out");
            }
            _ = beats.tick() => {
                let sent = tokio::time::Instant::now();
                let beat = tokio::time::timeout_at(fence_at, heartbeat.beat())
                    .await
                    .unwrap_or_else(|_| Err(crate::Error::Timeout("the heartbeat took too long".into())));
                match beat {
                Ok(LeaseState::Active) => fence_at = sent + fence_after,
                Ok(LeaseState::Cancelled) => {
                    token.cancel();
                    stop_within_grace(inner, &mut running).await;
                    break Ending::Discard("the execution was cancelled");
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {
                    token.cancel();
                    stop_within_grace(inner, &mut running).await;
                    break Ending::Discard("the lease was lost to another attempt");
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; will try again"),
                }
            }
            _ = token.cancelled() => {
                // Cancelled here (cancel() on this node) or the shutdown grace ran out.
                match tokio::time::timeout(inner.config.cancel_grace, &mut running).await {
                    Ok(result) => break result_ending(inner, claimed, task_def, result),
                    Err(_) => {
                        running.abort();
                        break if inner.hard_stop.is_cancelled() {
                            Ending::HandBack
                        } else {
                            Ending::Discard("the execution was cancelled")
                        };
                    }
                }
            }
        }
    };
    inner.untrack_running(&claimed.task);
    ending
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn stop_within_grace(inner: &Inner, running: &mut tokio::task::JoinHandle<Result<serde_json::Value, TaskError>>) {
    if tokio::time::timeout(inner.config.cancel_grace, &mut *running)
        .await
        .is_err()
    {
        running.abort();
    }
}

fn result_ending(
    inner: &Inner,
    claimed: &ClaimedTask,
    task_def: &TaskDefinition,
    result: Result<Result<serde_json::Value, TaskError>, JoinError>,
) -> Ending {
    // Past the shutdown grace, a failure is most likely the cancellation itself: hand the
    // task back rather than spend its retry budget. A success still counts.
    if inner.hard_stop.is_cancelled() && !matches!(result, Ok(Ok(_))) {
        return Ending::HandBack;
    }
    match result {
        Ok(Ok(output)) => {
            if let Some(path) = find_nul(&output) {
                let error = nul_message("the output", &path);
                return failure(claimed, Some(task_def), TaskError::fatal(error));
            }
            let size = json_size(&output);
            if size > inner.config.max_output_bytes {
                let error = format!(
                    "the output is {size} bytes of JSON, over the limit of {}",
                    inner.config.max_output_bytes
                );
                return failure(claimed, Some(task_def), TaskError::fatal(error));
            }
            Ending::Outcome(TaskOutcome::Completed(output))
        }
        Ok(Err(error)) => failure(claimed, Some(task_def), error),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            failure(
                claimed,
                Some(task_def),
                TaskError::retryable(format!("the task panicked: {message}")),
            )
        }
        Err(_) => Ending::Discard("the attempt was aborted"),
    }
}

/// A failed attempt: retried after its backoff while the task's budget allows and the error
/// is retryable, FAILED otherwise.
fn failure(claimed: &ClaimedTask, task_def: Option<&TaskDefinition>, error: TaskError) -> Ending {
    let retry_in = task_def.and_then(|t| {
        (error.is_retryable() && claimed.failures < t.max_retry)
            .then(|| t.backoff_policy().delay(claimed.failures + 1, fastrand::f64()))
    });
    tracing::info!(error = %error.message, retry = retry_in.is_some(), "task attempt failed");
    Ending::Outcome(TaskOutcome::Failed {
        error: without_nul(&error.message).into_owned(),
        retry_in,
    })
}

/// Writes the ending to the Store (retrying transient failures) and passes on the changes: the
/// tasks a completion made ready run on here while spare slots last (the module docs), the
/// others are published. `slot`, the attempt's own, is given back once the ending is written,
/// before the spare ones are counted: a delivery waiting for a slot has it first.
async fn record(inner: &Arc<Inner>, claimed: &ClaimedTask, ending: Ending, slot: OwnedSemaphorePermit) {
    let task = &claimed.task;
    let outcome = match ending {
        Ending::Outcome(o) => o,
        Ending::Discard(why) => {
            tracing::info!(reason = why, "attempt result discarded");
            return;
        }
        Ending::HandBack => {
            match inner.store.release(task).await {
                Ok(changes) => inner.dispatch(changes).await,
                Err(e) => tracing::warn!(error = %e, "hand-back failed; the lease expiry will requeue the task"),
            }
            return;
        }
    };
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=FINISH_TRIES {
        let finish = TaskFinish {
            task: task.clone(),
            outcome: outcome.clone(),
        };
        match inner.store.finish(vec![finish]).await {
            Ok(mut report) => {
                match report.results.pop() {
                    Some(Err(e)) => tracing::info!(reason = %e, "attempt result not recorded"),
                    _ => tracing::debug!("attempt recorded"),
                }
                drop(slot);
                dispatch_here(inner, report.changes).await;
                return;
            }
            Err(e) if e.is_transient() && attempt < FINISH_TRIES => {
                tracing::warn!(error = %e, "recording the result failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(error = %e, "recording the result failed; the lease expiry will re-run the task");
                return;
            }
        }
    }
}

/// Dispatches what a committed transition changed, running the tasks it made ready on this
/// node while it has spare slots (the module docs) and publishing the others.
pub(crate) async fn dispatch_here(inner: &Arc<Inner>, mut changes: Changes) {
    let here = take_spare_slots(inner, &mut changes.ready);
    inner.dispatch(changes).await;
    run_here(inner, here);
}

/// Starts each task under its slot, as if it had been delivered.
fn run_here(inner: &Arc<Inner>, here: Vec<(TaskRef, OwnedSemaphorePermit)>) {
    for (task, slot) in here {
        // Boxed as `Send` by name (a plain function, so the compiler need not see through the
        // async ones): the attempt it starts may start others in turn.
        let attempt: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(handle(inner.clone(), Source::Local(task), slot));
        inner.tracker.spawn(attempt);
    }
}

/// Takes the first of `ready` for which this node has a spare slot now, with their slots —
/// none unless its workers are taking tasks.
fn take_spare_slots(inner: &Inner, ready: &mut Vec<TaskRef>) -> Vec<(TaskRef, OwnedSemaphorePermit)> {
    if ready.is_empty() || !inner.config.run_ready_here || !inner.takes_tasks() {
        return Vec::new();
    }
    let slots: Vec<OwnedSemaphorePermit> = std::iter::from_fn(|| inner.slots.clone().try_acquire_owned().ok())
        .take(ready.len())
        .collect();
    ready.drain(..slots.len()).zip(slots).collect()
}

/// The length of `value` as compact JSON, without building the string.
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
