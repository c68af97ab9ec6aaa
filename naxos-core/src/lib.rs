//! # naxos-core
//!
//! The heart of naxos, a library for durable DAG job orchestration: the job-definition model
//! (compatible with the original naxos JSON), validation, the task-function registry, the
//! [`Store`](backend::Store), [`Queue`](backend::Queue) and [`Cache`](backend::Cache) backend
//! traits with their contracts, the [`Engine`], and in-memory backends. It depends on no
//! database, broker or HTTP crate; those live in the backend crates.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`model`] | definitions (JSON + builder), validation, executions, task runs, statuses, events |
//! | [`dag`] | the compiled graph: indices, dependents, cycle search |
//! | [`condition`] | `when` conditions: CEL compiled at registration, evaluated by the state module |
//! | [`task`] | [`TaskContext`], [`TaskError`], the function [`Registry`](task::Registry) |
//! | [`backend`] | the three traits and their contracts |
//! | [`clock`] | where "now" comes from: the system, tokio's paused time, or a manual clock |
//! | [`state`] | the execution state machine: one pure function per transition |
//! | [`memory`] | in-memory Store, Queue and Cache |
//! | [`engine`] | submit, workers, sweeper, wait, shutdown |
//! | `testkit` | the conformance suite every backend runs (feature `testkit`) |
//!
//! ```
//! # use naxos_core as naxos;
//! use naxos::{serde_json::json, Engine, ExecutionStatus, JobDefinition, TaskBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> naxos::Result<()> {
//! let engine = Engine::in_memory();
//! engine.register("double", |ctx| async move {
//!     let n: i64 = ctx.param("n").unwrap_or(0);
//!     Ok(json!(n * 2))
//! });
//! engine.register("add_one", |ctx| async move {
//!     let n = ctx.upstream("double").and_then(|v| v.as_i64()).unwrap_or(0);
//!     Ok(json!(n + 1))
//! });
//! let job = JobDefinition::builder("math")
//!     .task(TaskBuilder::new("double", "double"))
//!     .task(TaskBuilder::new("add_one", "add_one").after(["double"]))
//!     .build();
//! engine.register_definition(job).await?;
//! engine.start()?;
//! let run = engine.execute("math", json!({ "n": 20 })).await?;
//! let done = engine.wait_for(run.execution_id).await?;
//! assert_eq!(done.status, ExecutionStatus::Completed);
//! assert_eq!(done.task("add_one").unwrap().output, Some(json!(41)));
//! engine.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod clock;
pub mod condition;
pub mod dag;
pub mod engine;
mod error;
pub mod memory;
pub mod model;
pub mod state;
mod sync;
pub mod task;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::{Clock, ManualClock};
pub use engine::{
    Engine, EngineBuilder, EngineConfig, EventStream, ExecuteRequest, ExecutionFilter, Health, ScheduleReport,
    Submitted, SweepReport, MAX_BATCH,
};
pub use error::{BackendErrorKind, Error, Result};
pub use model::{
    BackoffPolicy, DefinitionBuilder, Execution, ExecutionId, ExecutionStatus, JobDefinition, Retention,
    RetentionDefaults, TaskBuilder, TaskStatus,
};
pub use task::{ResultExt, TaskContext, TaskError, UpstreamError};

pub use async_trait::async_trait;
pub use chrono;
pub use serde_json;
pub use uuid;
