//! The compact binary encoding of an execution's rows (summary, plan, task runs).
//!
//! A transition rewrites a task row and often the summary, so their size decides how many
//! leaf pages a group commit writes, and with it the commit's time. JSON spelled every field
//! name and every time as text (≈ 900 bytes a task run); this encoding is a fixed field order:
//! integers as LEB128 varints, a time as seconds (zigzag varint) and nanoseconds (varint), a
//! string as its length and bytes, an `Option` as a 0/1 byte before the value, an enum as its
//! position in a table, and user values (params, outputs, errors' JSON) as length-prefixed
//! JSON. Adding a field is a new data format ([`crate::FORMAT`]).
//!
//! What a task run never changes — its id, name, function, dependencies and
//! [`TaskPlan`] — is not in its row: it is the execution's **plan** row, written once at
//! creation (see `tables.rs`). The task plans are a section at the end of that row, present
//! only when some task is not plain, so a plan row written before plans existed reads as all
//! plain (no new data format): a section tag, then each task's plan as JSON, in task order —
//! JSON, so that the later task kinds extend [`TaskPlan`] without a new layout.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use naxos_core::model::{
    Attempt, AttemptOutcome, BlockedBy, ExecutionId, ExecutionStatus, ExecutionSummary, Lease, ParentLink, Priority,
    TaskRun, TaskStatus,
};
use naxos_core::{Error, Result};
use serde_json::Value;

use crate::error::corrupt;

/// Task statuses by their byte.
const TASK_STATUSES: [TaskStatus; 9] = [
    TaskStatus::Pending,
    TaskStatus::Queued,
    TaskStatus::Running,
    TaskStatus::Retrying,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Skipped,
    TaskStatus::Cancelled,
    TaskStatus::Waiting,
];

/// Bytes being written.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn var(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push(n as u8 | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.var(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn time(&mut self, t: DateTime<Utc>) {
        let secs = t.timestamp();
        self.var(((secs << 1) ^ (secs >> 63)) as u64);
        self.var(u64::from(t.timestamp_subsec_nanos()));
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let json = serde_json::to_vec(value).map_err(Error::permanent)?;
        self.bytes(&json);
        Ok(())
    }

    /// `None` as 0; `Some` as 1 and the value.
    fn opt<T>(&mut self, value: Option<T>, mut write: impl FnMut(&mut Self, T)) {
        match value {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                write(self, v);
            }
        }
    }
}

/// Bytes being read; every shortfall is a corrupt record named by `what`.
struct In<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> In<'a> {
    fn bad(&self, why: &str) -> Error {
        corrupt(format!("{}: {why}", self.what))
    }

    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self.bytes.split_first().ok_or_else(|| self.bad("too short"))?;
        self.bytes = rest;
        Ok(b)
    }

    fn var(&mut self) -> Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(self.bad("a varint longer than 64 bits"))
    }

    fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.var()?).map_err(|_| self.bad("a count beyond u32"))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.var()?).map_err(|_| self.bad("a length beyond usize"))?;
        if len > self.bytes.len() {
            return Err(self.bad("a length past its end"));
        }
        let (b, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.bad("a string that is not UTF-8"))
    }

    fn string(&mut self) -> Result<String> {
        self.str().map(str::to_string)
    }

    fn time(&mut self) -> Result<DateTime<Utc>> {
        let z = self.var()?;
        let secs = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| self.bad("a time out of range"))
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let b = self.bytes()?;
        serde_json::from_slice(b).map_err(|e| self.bad(&e.to_string()))
    }

    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        match self.byte()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(self.bad("an option tag that is neither 0 nor 1")),
        }
    }

    fn end(&self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.bad("bytes past its end"))
        }
    }
}

fn execution_status_byte(s: ExecutionStatus) -> u8 {
    crate::keys::status_byte(s)
}

fn task_status_byte(s: TaskStatus) -> u8 {
    match s {
        TaskStatus::Pending => 0,
        TaskStatus::Queued => 1,
        TaskStatus::Running => 2,
        TaskStatus::Retrying => 3,
        TaskStatus::Completed => 4,
        TaskStatus::Failed => 5,
        TaskStatus::Skipped => 6,
        TaskStatus::Cancelled => 7,
        TaskStatus::Waiting => 8,
    }
}

fn outcome_byte(o: AttemptOutcome) -> u8 {
    match o {
        AttemptOutcome::Completed => 0,
        AttemptOutcome::Retrying => 1,
        AttemptOutcome::Failed => 2,
        AttemptOutcome::Released => 3,
        AttemptOutcome::Expired => 4,
        AttemptOutcome::Cancelled => 5,
    }
}

/// An enum from its byte in `table`.
fn from_table<T: Copy>(input: &In<'_>, table: &[T], b: u8) -> Result<T> {
    table
        .get(b as usize)
        .copied()
        .ok_or_else(|| input.bad(&format!("an unknown enum byte {b}")))
}

/// An execution summary's row (its id is the key's).
pub(crate) fn summary(s: &ExecutionSummary) -> Result<Vec<u8>> {
    let mut out = Out::default();
    out.str(&s.definition_id);
    out.var(u64::from(s.definition_version));
    out.byte(execution_status_byte(s.status));
    out.opt(s.error.as_deref(), Out::str);
    out.opt(s.idempotency_key.as_deref(), Out::str);
    out.opt(s.traceparent.map(|t| t.to_string()), |o, t| o.str(&t));
    out.opt(s.deadline, Out::time);
    out.time(s.created_at);
    out.time(s.updated_at);
    out.opt(s.start_time, Out::time);
    out.opt(s.end_time, Out::time);
    if let Some(at) = s.scheduled_for {
        out.byte(SCHEDULED_FOR);
        out.time(at);
    }
    if let Some(p) = &s.parent {
        out.byte(PARENT);
        out.bytes(p.execution_id.as_bytes());
        out.str(&p.task_id);
        out.var(u64::from(p.attempt));
        out.var(u64::from(p.depth));
    }
    if s.priority != Priority::LOWEST {
        out.byte(PRIORITY);
        out.byte(s.priority.get());
    }
    Ok(out.0)
}

/// The tag of a summary row's trailing section: the execution's priority. Written only when it
/// is not the lowest (after [`PARENT`]), so a row without it reads as priority 0, as every row
/// written before priorities existed does.
const PRIORITY: u8 = 3;

/// The tag of a summary row's trailing section: the parent task of a child a sub-job started.
/// Written only for such a child (after [`SCHEDULED_FOR`], when both are there).
const PARENT: u8 = 2;

/// The tag of a summary row's trailing section: a delayed execution's time. Written only for a
/// delayed execution, so a row without it reads as one that started at once (as every row
/// written before delays existed does) and no other row changes shape.
const SCHEDULED_FOR: u8 = 1;

/// An execution summary from its id and row.
pub(crate) fn read_summary(id: ExecutionId, bytes: &[u8]) -> Result<ExecutionSummary> {
    let mut i = In {
        bytes,
        what: "an execution summary",
    };
    let summary = ExecutionSummary {
        id,
        definition_id: i.string()?,
        definition_version: i.u32()?,
        status: {
            let b = i.byte()?;
            from_table(&i, &ExecutionStatus::ALL, b)?
        },
        error: i.opt(In::string)?,
        idempotency_key: i.opt(In::string)?,
        traceparent: i.opt(|i| {
            let text = i.str()?;
            text.parse().map_err(|_| i.bad("a traceparent that does not parse"))
        })?,
        // Not in the row: the store reads it from its `scheduled` database (see `tables.rs`).
        schedule_id: None,
        deadline: i.opt(In::time)?,
        created_at: i.time()?,
        updated_at: i.time()?,
        start_time: i.opt(In::time)?,
        end_time: i.opt(In::time)?,
        scheduled_for: None,
        parent: None,
        priority: Priority::LOWEST,
    };
    let mut summary = summary;
    while !i.bytes.is_empty() {
        match i.byte()? {
            SCHEDULED_FOR => summary.scheduled_for = Some(i.time()?),
            PARENT => {
                let id = i.bytes()?;
                let execution_id =
                    ExecutionId::from_slice(id).map_err(|_| i.bad("a parent execution id that is not 16 bytes"))?;
                summary.parent = Some(ParentLink {
                    execution_id,
                    task_id: i.string()?,
                    attempt: i.u32()?,
                    depth: i.u32()?,
                });
            }
            PRIORITY => {
                let level = i.byte()?;
                summary.priority = Priority::new(u64::from(level)).map_err(|_| i.bad("a priority above 9"))?;
            }
            _ => return Err(i.bad("an unknown section")),
        }
    }
    i.end()?;
    Ok(summary)
}

/// The tag of the plan row's section of task plans.
const PLANS: u8 = 1;

/// The plan row: what each task run never changes (id, name, function, dependencies, and the
/// section of task plans when some task is not plain).
pub(crate) fn plan(tasks: &[TaskRun]) -> Result<Vec<u8>> {
    let mut out = Out::default();
    out.var(tasks.len() as u64);
    for t in tasks {
        out.str(&t.task_id);
        out.str(&t.name);
        out.str(&t.function_name);
        out.var(t.dependencies.len() as u64);
        for d in &t.dependencies {
            out.str(d);
        }
    }
    if !tasks.iter().all(|t| t.plan.is_plain()) {
        out.byte(PLANS);
        for t in tasks {
            out.json(&t.plan)?;
        }
    }
    Ok(out.0)
}

/// True when `a` and `b` have the same plan.
pub(crate) fn same_plan(a: &TaskRun, b: &TaskRun) -> bool {
    a.task_id == b.task_id
        && a.name == b.name
        && a.function_name == b.function_name
        && a.dependencies == b.dependencies
        && a.plan == b.plan
}

/// The task runs of a plan row, each with its plan fields and the rest at their defaults, to
/// be filled by [`read_task`].
pub(crate) fn read_plan(bytes: &[u8]) -> Result<Vec<TaskRun>> {
    let mut i = In {
        bytes,
        what: "an execution's plan",
    };
    let count = i.var()?;
    let mut tasks = Vec::with_capacity(count.min(4_096) as usize);
    for _ in 0..count {
        let task_id = i.string()?;
        let name = i.string()?;
        let function_name = i.string()?;
        let n = i.var()?;
        let mut dependencies = Vec::with_capacity(n.min(4_096) as usize);
        for _ in 0..n {
            dependencies.push(i.string()?);
        }
        tasks.push(TaskRun::pending(
            task_id,
            name,
            function_name,
            dependencies,
            Default::default(),
        ));
    }
    if !i.bytes.is_empty() {
        if i.byte()? != PLANS {
            return Err(i.bad("an unknown section"));
        }
        for t in &mut tasks {
            t.plan = Arc::new(i.json()?);
        }
    }
    i.end()?;
    Ok(tasks)
}

/// A task run's row: what transitions change, with its output (`run.output` is not read).
pub(crate) fn task(run: &TaskRun, output: Option<&Value>) -> Result<Vec<u8>> {
    let mut out = Out::default();
    out.byte(task_status_byte(run.status));
    for n in [
        run.remaining_dependencies,
        run.attempt,
        run.attempts,
        run.failures,
        run.lease_expiries,
        run.republished,
    ] {
        out.var(u64::from(n));
    }
    out.opt(run.error.as_deref(), Out::str);
    match output {
        None => out.byte(0),
        Some(v) => {
            out.byte(1);
            out.json(v)?;
        }
    }
    out.opt(run.lease.as_ref(), |o, l| {
        o.str(&l.owner);
        o.time(l.expires_at);
    });
    for t in [run.queued_at, run.due_at, run.start_time, run.end_time] {
        out.opt(t, Out::time);
    }
    out.var(run.history.len() as u64);
    for a in &run.history {
        out.var(u64::from(a.attempt));
        out.str(&a.node);
        out.time(a.started_at);
        out.opt(a.ended_at, Out::time);
        out.opt(a.outcome, |o, outcome| o.byte(outcome_byte(outcome)));
        out.opt(a.error.as_deref(), Out::str);
    }
    if let Some(b) = run.blocked_by {
        out.byte(BLOCKED);
        out.byte(blocked_byte(b));
    }
    if let Some(scope) = &run.slot {
        out.byte(SLOT);
        out.str(scope);
        out.byte(u8::from(run.holds_slot));
    }
    if let Some(scope) = &run.rate {
        out.byte(RATE);
        out.str(scope);
    }
    Ok(out.0)
}

/// The tag of a task row's trailing section: why a QUEUED task waits unpublished. Written only
/// for a blocked task, so no other row changes shape.
const BLOCKED: u8 = 1;

/// The tag of a task row's trailing section: the concurrency slot of a task with a limit, and
/// whether the run holds it. Written only for such a task.
const SLOT: u8 = 2;

/// The tag of a task row's trailing section: the rate-limit scope of a task with a rate
/// limit. Written only for such a task.
const RATE: u8 = 3;

/// The reasons a task may be blocked, by their byte.
const BLOCKED_BY: [BlockedBy; 3] = [BlockedBy::Paused, BlockedBy::Concurrency, BlockedBy::RateLimit];

fn blocked_byte(b: BlockedBy) -> u8 {
    match b {
        BlockedBy::Paused => 0,
        BlockedBy::Concurrency => 1,
        BlockedBy::RateLimit => 2,
    }
}

/// Fills the changing fields of `run` (and its output) from its row.
pub(crate) fn read_task(run: &mut TaskRun, bytes: &[u8]) -> Result<()> {
    let mut i = In {
        bytes,
        what: "a task run",
    };
    let status = i.byte()?;
    run.status = from_table(&i, &TASK_STATUSES, status)?;
    run.remaining_dependencies = i.u32()?;
    run.attempt = i.u32()?;
    run.attempts = i.u32()?;
    run.failures = i.u32()?;
    run.lease_expiries = i.u32()?;
    run.republished = i.u32()?;
    run.error = i.opt(In::string)?;
    run.output = i.opt(In::json)?;
    run.lease = i.opt(|i| {
        Ok(Lease {
            owner: i.string()?,
            expires_at: i.time()?,
        })
    })?;
    run.queued_at = i.opt(In::time)?;
    run.due_at = i.opt(In::time)?;
    run.start_time = i.opt(In::time)?;
    run.end_time = i.opt(In::time)?;
    let n = i.var()?;
    run.history = Vec::with_capacity(n.min(4_096) as usize);
    for _ in 0..n {
        let attempt = Attempt {
            attempt: i.u32()?,
            node: Arc::from(i.str()?),
            started_at: i.time()?,
            ended_at: i.opt(In::time)?,
            outcome: i.opt(|i| {
                let b = i.byte()?;
                from_table(i, &AttemptOutcome::ALL, b)
            })?,
            error: i.opt(In::string)?,
        };
        run.history.push(attempt);
    }
    run.blocked_by = None;
    run.slot = None;
    run.holds_slot = false;
    run.rate = None;
    while !i.bytes.is_empty() {
        match i.byte()? {
            BLOCKED => {
                let b = i.byte()?;
                run.blocked_by = Some(from_table(&i, &BLOCKED_BY, b)?);
            }
            SLOT => {
                run.slot = Some(i.string()?);
                run.holds_slot = i.byte()? != 0;
            }
            RATE => run.rate = Some(i.string()?),
            _ => return Err(i.bad("an unknown section")),
        }
    }
    i.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use naxos_core::model::TaskPlan;

    #[test]
    fn enum_tables_match_their_bytes() {
        for (b, r) in BLOCKED_BY.iter().enumerate() {
            assert_eq!(blocked_byte(*r) as usize, b);
        }
        for (b, s) in TASK_STATUSES.iter().enumerate() {
            assert_eq!(task_status_byte(*s) as usize, b);
        }
        for (b, o) in AttemptOutcome::ALL.iter().enumerate() {
            assert_eq!(outcome_byte(*o) as usize, b);
        }
    }

    fn run(id: &str, plan: TaskPlan) -> TaskRun {
        TaskRun::pending(
            id.into(),
            format!("{id} name"),
            "f".into(),
            vec!["a".into()],
            Arc::new(plan),
        )
    }

    #[test]
    fn a_plan_row_keeps_the_task_plans_and_reads_old_rows_as_plain() {
        let plain = vec![run("a", TaskPlan::default()), run("b", TaskPlan::default())];
        let bytes = plan(&plain).unwrap();
        assert_eq!(read_plan(&bytes).unwrap(), plain, "a plain plan row has no section");
        let planned = vec![
            run("a", TaskPlan::default()),
            run(
                "b",
                TaskPlan {
                    when: Some("params.x > 1".into()),
                    trigger: naxos_core::model::Trigger::NoneFailed,
                    ..TaskPlan::default()
                },
            ),
        ];
        let with_plans = plan(&planned).unwrap();
        assert_eq!(read_plan(&with_plans).unwrap(), planned);
        assert!(with_plans.starts_with(&bytes), "the section follows the old layout");
        let mut unknown = bytes.clone();
        unknown.push(9);
        assert!(read_plan(&unknown).is_err(), "an unknown section is refused");
    }

    #[test]
    fn a_summary_row_keeps_a_delay_and_reads_old_rows_as_started_at_once() {
        let now = Utc::now();
        let id = ExecutionId::now_v7();
        let started = ExecutionSummary {
            id,
            definition_id: "d".into(),
            definition_version: 1,
            status: ExecutionStatus::Pending,
            error: None,
            idempotency_key: None,
            traceparent: None,
            schedule_id: None,
            deadline: None,
            created_at: now,
            updated_at: now,
            start_time: None,
            end_time: None,
            scheduled_for: None,
            parent: None,
            priority: Priority::LOWEST,
        };
        let bytes = summary(&started).unwrap();
        assert_eq!(read_summary(id, &bytes).unwrap(), started, "no section without a delay");
        let delayed = ExecutionSummary {
            scheduled_for: Some(now + chrono::Duration::seconds(60)),
            ..started.clone()
        };
        let with_delay = summary(&delayed).unwrap();
        assert_eq!(read_summary(id, &with_delay).unwrap(), delayed);
        assert!(with_delay.starts_with(&bytes), "the section follows the old layout");
        let child = ExecutionSummary {
            parent: Some(ParentLink {
                execution_id: ExecutionId::now_v7(),
                task_id: "call".into(),
                attempt: 3,
                depth: 2,
            }),
            ..started.clone()
        };
        let with_parent = summary(&child).unwrap();
        assert_eq!(
            read_summary(id, &with_parent).unwrap(),
            child,
            "a child keeps its parent"
        );
        assert!(with_parent.starts_with(&bytes), "the section follows the old layout");
        let urgent = ExecutionSummary {
            priority: Priority::HIGHEST,
            ..child.clone()
        };
        let with_priority = summary(&urgent).unwrap();
        assert_eq!(
            read_summary(id, &with_priority).unwrap(),
            urgent,
            "it keeps its priority"
        );
        assert!(
            with_priority.starts_with(&with_parent),
            "the section follows the others"
        );
        let mut unknown = bytes.clone();
        unknown.push(9);
        assert!(read_summary(id, &unknown).is_err(), "an unknown section is refused");
    }

    #[test]
    fn times_keep_their_nanoseconds_and_sign() {
        let times = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::UNIX_EPOCH - chrono::Duration::nanoseconds(1),
            Utc::now(),
            DateTime::<Utc>::MAX_UTC,
        ];
        for t in times {
            let mut out = Out::default();
            out.time(t);
            let mut i = In {
                bytes: &out.0,
                what: "a time",
            };
            assert_eq!(i.time().unwrap(), t);
            i.end().unwrap();
        }
    }
}
