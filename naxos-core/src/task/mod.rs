//! Task functions: what they receive ([`TaskContext`]), what they return ([`TaskError`] says
//! retryable or fatal), and the registry that names them.

mod context;
mod error;
mod registry;
mod upstream;

pub use context::TaskContext;
pub use error::{ResultExt, TaskError, TaskErrorKind};
pub use registry::{Registry, TaskFn, TaskFuture};
pub use upstream::UpstreamError;
