//! The one error type of naxos, with kinds the engine and callers act on.

use std::fmt;

use crate::model::Problem;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in naxos, sorted by what a caller should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named thing does not exist (HTTP 404).
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// What was looked for: `"job definition"`, `"execution"`, `"task"`.
        kind: &'static str,
        /// The id that was looked for.
        id: String,
    },
    /// The current state forbids the action (HTTP 409). For a guarded transition this means
    /// "someone else got there first" and is not an error of the caller's making.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A job definition did not validate; every problem found is listed (HTTP 422).
    #[error("invalid job definition `{id}`: {}", ProblemList(.problems))]
    InvalidDefinition {
        /// The definition's id as given (may itself be the problem).
        id: String,
        /// Every problem found, in a stable order.
        problems: Vec<Problem>,
    },
    /// A schedule did not validate: `field` is the first bad one (`id`, `definitionId`, `cron`,
    /// `timezone`, `params`), `message` says why (HTTP 422).
    #[error("invalid schedule `{id}`: field `{field}` {message}")]
    InvalidSchedule {
        /// The schedule's id as given.
        id: String,
        /// The bad field, as spelled in JSON.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Input other than a definition is malformed, e.g. params that are not a JSON object (HTTP 400).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The backend does not implement an optional capability.
    #[error("`{operation}` is not supported by this backend")]
    NotSupported {
        /// The operation asked for.
        operation: &'static str,
    },
    /// A Store, Queue or Cache failed; `kind` says whether trying again may help.
    ///
    /// The driver's error is kept whole in `cause` (downcast it to inspect it) and shown in
    /// this error's message, once: it is deliberately not also reported as `source()`, so
    /// that error-chain printers do not repeat it.
    #[error("{kind} backend error: {cause}")]
    Backend {
        /// Whether the failure is worth retrying.
        kind: BackendErrorKind,
        /// The driver's own error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The engine is shutting down and takes no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// A wait ran past its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Data or a message was written by a newer release of naxos, in a version this build does
    /// not know: it is refused rather than misread. Retrying here will not help; a node of the
    /// newer release can handle it, and this node needs upgrading (HTTP 503).
    #[error("{what} is newer than this naxos: it has {found}, and this naxos knows up to {known}; upgrade this node")]
    NewerVersion {
        /// What was refused, e.g. "the database schema", or "job definition `x` version 3".
        what: String,
        /// The version met, in words, e.g. "migration 9999 (future)", or "format 2".
        found: String,
        /// The newest version this build knows, in words, e.g. "migration 4", or "format 1".
        known: String,
    },
    /// A claim found the task's rate limit spent: the task waits, and its message should come
    /// back `after` this long, when its turn to start comes (HTTP 409, as a conflict).
    #[error("deferred: {message}")]
    Deferred {
        /// Why, naming the task and its limit.
        message: String,
        /// How long until the task may start.
        after: std::time::Duration,
    },
    /// The system holds more unstarted work than it was configured to accept; try again after
    /// `retry_after` (HTTP 503 with `Retry-After`).
    #[error("overloaded: {message}")]
    Overloaded {
        /// What is over its limit.
        message: String,
        /// When trying again makes sense.
        retry_after: std::time::Duration,
    },
}

/// Whether a backend failure may go away if the operation is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Connection lost, pool exhausted, serialization failure: retry with backoff.
    Transient,
    /// Corrupt data, schema mismatch, misconfiguration: retrying will not help.
    Permanent,
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        })
    }
}

impl Error {
    /// A [`Error::NotFound`].
    pub fn not_found(kind: &'static str, id: impl fmt::Display) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// How long until a [`Error::Deferred`] task may start; `None` for every other error.
    pub fn deferred_for(&self) -> Option<std::time::Duration> {
        match self {
            Self::Deferred { after, .. } => Some(*after),
            _ => None,
        }
    }

    /// A [`Error::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    /// A transient [`Error::Backend`].
    pub fn transient(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend {
            kind: BackendErrorKind::Transient,
            cause: source.into(),
        }
    }

    /// A permanent [`Error::Backend`].
    pub fn permanent(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend {
            kind: BackendErrorKind::Permanent,
            cause: source.into(),
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True for [`Error::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }

    /// A [`Error::NewerVersion`].
    pub fn newer_version(what: impl Into<String>, found: impl Into<String>, known: impl Into<String>) -> Self {
        Self::NewerVersion {
            what: what.into(),
            found: found.into(),
            known: known.into(),
        }
    }

    /// True for [`Error::NewerVersion`]: written by a newer naxos than this one.
    pub fn is_newer_version(&self) -> bool {
        matches!(self, Self::NewerVersion { .. })
    }

    /// True for a transient backend error: the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                kind: BackendErrorKind::Transient,
                ..
            }
        )
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
