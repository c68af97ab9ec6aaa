//! Errors returned by task functions.

use std::fmt;

/// Whether a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskErrorKind {
    /// Try again while the task's `maxRetry` allows.
    Retryable,
    /// Do not try again: the task FAILS now.
    Fatal,
}

/// The error a task function returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// Retryable or fatal.
    pub kind: TaskErrorKind,
    /// What went wrong, shown in the task's status.
    pub message: String,
}

impl TaskError {
    /// A failure worth retrying (a timeout, a refused connection, a 503).
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            kind: TaskErrorKind::Retryable,
            message: message.to_string(),
        }
    }

    /// A failure retrying cannot fix (bad input, a 404, a broken invariant).
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self {
            kind: TaskErrorKind::Fatal,
            message: message.to_string(),
        }
    }

    /// True for [`TaskErrorKind::Retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind == TaskErrorKind::Retryable
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// Turns any error into a [`TaskError`] of a chosen kind: `fetch().await.retryable()?`.
pub trait ResultExt<T> {
    /// Maps the error to a retryable [`TaskError`].
    fn retryable(self) -> Result<T, TaskError>;
    /// Maps the error to a fatal [`TaskError`].
    fn fatal(self) -> Result<T, TaskError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, TaskError> {
        self.map_err(TaskError::retryable)
    }

    fn fatal(self) -> Result<T, TaskError> {
        self.map_err(TaskError::fatal)
    }
}
