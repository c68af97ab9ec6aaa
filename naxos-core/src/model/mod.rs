//! The data naxos works on: job definitions (the original's JSON format), executions, task runs
//! and their statuses, task plans (`when` and `trigger`), delayed starts, priorities, and the W3C trace context an execution
//! carries.

mod builder;
mod definition;
mod delay;
mod execution;
mod output;
mod plan;
mod priority;
mod retention;
mod schedule;
mod signal;
mod status;
mod text;
mod trace;
mod validate;

pub use builder::{DefinitionBuilder, TaskBuilder};
pub use definition::{
    BackoffPolicy, DefinitionSummary, JobDefinition, NewTask, StoredDefinition, TaskDefinition, DEFAULT_MAX_FAN_OUT,
    MAX_FAN_OUT,
};
pub use delay::Delay;
pub use execution::{
    Attempt, AttemptOutcome, BlockedBy, EventKind, Execution, ExecutionId, ExecutionSummary, Lease, NodeInfo,
    ParentLink, StatusEvent, TaskRef, TaskRun,
};
pub use plan::{
    Concurrency, Instance, RateLimit, Sleep, SubJob, TaskKind, TaskPlan, Trigger, WaitFor, MAX_BURST, MAX_RATE,
    MAX_SUB_JOB_DEPTH,
};
pub use priority::Priority;
pub use retention::{Expiry, ExpiryClass, Retention, RetentionDefaults, MAX_RETENTION_MS};
pub use schedule::{Cadence, CatchUp, Schedule, SchedulePut, StoredSchedule, DEFAULT_TIMEZONE, MAX_CATCH_UP};
pub use signal::{Signal, MAX_PENDING_SIGNALS};
pub use status::{ExecutionStatus, TaskStatus};
pub use text::{find_nul, nul_message, without_nul};
pub use trace::TraceParent;
pub use validate::{is_valid_id, validate, Limits, Problem, MAX_WAIT_MS};
