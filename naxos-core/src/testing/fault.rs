//! The faults the harness injects, one per scenario.

use std::fmt;

/// One fault, injected once into a run of the DAG. Crash faults kill the node that reaches the
/// point (it stops talking to the Store and the Queue, and its functions stop where they are)
/// the first time the point is reached for the task; another node then takes over, as after a
/// `kill -9`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The node dies right after its claim of `task` was recorded, before the function runs.
    CrashAfterClaim(String),
    /// The node dies while `task`'s function runs (at its first await; if the function never
    /// waits, just after it returned): its effects so far happened, its result is lost.
    CrashInFunction(String),
    /// The function of `task` returned; the node dies before its outcome is recorded.
    CrashBeforeRecord(String),
    /// The outcome of `task` was recorded; the node dies before the messages of the tasks it
    /// made ready are published.
    CrashBeforePublish(String),
    /// The message for `task` is delivered twice.
    DuplicateMessage(String),
    /// The first message for `task` is lost.
    LoseMessage(String),
    /// The `nth` call (from 1) of a Store operation fails with a transient error, as a
    /// database that drops a connection does; nothing of it was written.
    StoreError(StoreCall, u32),
}

/// The Store operations a [`Fault::StoreError`] can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreCall {
    /// Creating the execution.
    CreateExecution,
    /// Reading a definition (a worker does, before a task runs).
    GetDefinition,
    /// Claiming a task.
    Claim,
    /// Recording outcomes.
    Finish,
}

impl StoreCall {
    /// Every operation.
    pub const ALL: [StoreCall; 4] = [Self::CreateExecution, Self::GetDefinition, Self::Claim, Self::Finish];
}

impl Fault {
    /// The faults of one task of the DAG.
    pub fn of_task(task: &str) -> Vec<Fault> {
        let t = || task.to_string();
        vec![
            Fault::CrashAfterClaim(t()),
            Fault::CrashInFunction(t()),
            Fault::CrashBeforeRecord(t()),
            Fault::CrashBeforePublish(t()),
            Fault::DuplicateMessage(t()),
            Fault::LoseMessage(t()),
        ]
    }

    /// The task a fault is about, if it is about one.
    pub fn task(&self) -> Option<&str> {
        match self {
            Fault::CrashAfterClaim(t)
            | Fault::CrashInFunction(t)
            | Fault::CrashBeforeRecord(t)
            | Fault::CrashBeforePublish(t)
            | Fault::DuplicateMessage(t)
            | Fault::LoseMessage(t) => Some(t),
            Fault::StoreError(..) => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashAfterClaim(t) => write!(f, "crash after the claim of `{t}`"),
            Fault::CrashInFunction(t) => write!(f, "crash in the function of `{t}`"),
            Fault::CrashBeforeRecord(t) => write!(f, "crash before the outcome of `{t}` is recorded"),
            Fault::CrashBeforePublish(t) => write!(f, "crash after the outcome of `{t}`, before the publish"),
            Fault::DuplicateMessage(t) => write!(f, "the message of `{t}` delivered twice"),
            Fault::LoseMessage(t) => write!(f, "the message of `{t}` lost"),
            Fault::StoreError(call, n) => write!(f, "transient Store error on {call:?} call {n}"),
        }
    }
}
