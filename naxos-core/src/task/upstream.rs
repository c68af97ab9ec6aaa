//! Reading a dependency's output as a Rust type: [`TaskContext::upstream_as`](super::TaskContext::upstream_as)
//! and the three ways it can fail.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::TaskError;

/// Why [`TaskContext::upstream_as`](super::TaskContext::upstream_as) could not hand over a
/// dependency's output. Each names the task that asked and the dependency it asked for; `?`
/// in a task function turns it into a fatal [`TaskError`] with the same message (a retry would
/// read the same definition and the same output).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The task asked for the output of a task it does not depend on directly (only direct
    /// dependencies' outputs are handed to a task): a typo, or a missing `after`.
    #[error("`{dependency}` is not a direct dependency of `{task}`")]
    NotADependency {
        /// The task that asked.
        task: String,
        /// The task id it asked for.
        dependency: String,
    },
    /// The dependency has no output: it did not complete (a trigger other than the default
    /// lets a task run after a dependency was skipped or failed).
    #[error("`{dependency}`, a dependency of `{task}`, has no output (it did not complete)")]
    NoOutput {
        /// The task that asked.
        task: String,
        /// The dependency without an output.
        dependency: String,
    },
    /// The dependency's output does not deserialize into the type asked for.
    #[error("the output of `{dependency}` does not fit the type `{task}` reads it as, at `{path}`: {message}")]
    Mismatch {
        /// The task that asked.
        task: String,
        /// The dependency whose output did not fit.
        dependency: String,
        /// Where in the output it did not fit (`.` for the whole output).
        path: String,
        /// serde's message.
        message: String,
    },
}

impl From<UpstreamError> for TaskError {
    fn from(e: UpstreamError) -> Self {
        TaskError::fatal(e)
    }
}

/// Deserializes `value` (the output of `dependency`, read by `task`) into `T`.
pub(super) fn read<T: DeserializeOwned>(task: &str, dependency: &str, value: &Value) -> Result<T, UpstreamError> {
    serde_path_to_error::deserialize(value).map_err(|e| UpstreamError::Mismatch {
        task: task.to_string(),
        dependency: dependency.to_string(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}
