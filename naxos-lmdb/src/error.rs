//! What can go wrong on LMDB, and how it becomes a naxos [`Error`].
//!
//! [`LmdbError`] is the cause inside every [`Error::Backend`] this crate returns (downcast it to
//! tell the cases apart); it is `Clone`, so that one failed group commit can be reported to
//! every call that was in it.

use std::path::PathBuf;
use std::sync::Arc;

use naxos_core::Error;

/// The environment variable the example server reads the map size from; error messages name it.
pub const MAP_SIZE_VARIABLE: &str = "NAXOS_LMDB_MAP_SIZE";

/// A failure of the LMDB backends.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LmdbError {
    /// The directory is already open in this process: share the first handle (it is cheap to
    /// clone) instead of opening it again.
    #[error(
        "the LMDB directory `{}` is already open in this process; share the first handle (clone it) instead of opening it twice",
        path.display()
    )]
    AlreadyOpen {
        /// The directory.
        path: PathBuf,
    },
    /// Another process holds the directory's lock file: a data directory belongs to one
    /// naxos process at a time.
    #[error(
        "the LMDB directory `{}` is in use by another process{}; a data directory belongs to one naxos process (give each node its own path)",
        path.display(),
        holder.as_ref().map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The process id written in the lock file by its holder, when it could be read.
        holder: Option<String>,
    },
    /// The path holds something that is not this kind of naxos data: another program's LMDB
    /// environment, a corrupt file, or a file where a directory belongs.
    #[error("`{}` does not hold naxos {expected} data: {reason}", path.display())]
    Foreign {
        /// The path.
        path: PathBuf,
        /// What was expected there (`"store"` or `"cache"`).
        expected: &'static str,
        /// What was found instead.
        reason: String,
    },
    /// The memory map is full: the data outgrew [`LmdbConfig::map_size`](crate::LmdbConfig::map_size).
    #[error(
        "the LMDB map is full ({map_size} bytes): raise LmdbConfig::map_size ({MAP_SIZE_VARIABLE} for the example server), or prune finished executions sooner"
    )]
    MapFull {
        /// The map size in force, in bytes.
        map_size: usize,
    },
    /// A key longer than LMDB allows.
    #[error("{what} is {len} bytes long; at most {max} fit in an LMDB key")]
    KeyTooLong {
        /// What the key was made of.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A record naxos could not have written (a damaged or hand-edited file).
    #[error("corrupt data in the LMDB store: {0}")]
    Corrupt(String),
    /// The writer thread is gone (the store is shutting down, or it panicked).
    #[error("the LMDB writer thread has stopped")]
    WriterStopped,
    /// LMDB (or the file system under it) failed.
    #[error("LMDB at `{}`: {source}", path.display())]
    Lmdb {
        /// The environment's directory.
        path: PathBuf,
        /// heed's error.
        source: Arc<heed::Error>,
    },
}

impl LmdbError {
    /// Wraps heed's error for the environment at `path` (a full map becomes [`LmdbError::MapFull`]).
    pub(crate) fn heed(path: &std::path::Path, map_size: usize, e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => Self::MapFull { map_size },
            e => Self::Lmdb {
                path: path.to_path_buf(),
                source: Arc::new(e),
            },
        }
    }

    /// True when trying again later may succeed: I/O trouble, a full reader table, a write
    /// transaction too large for one commit. A full map, corrupt or foreign data and a held
    /// directory are permanent: they need an operator.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Lmdb { source, .. } => matches!(
                **source,
                heed::Error::Io(_)
                    | heed::Error::Mdb(heed::MdbError::ReadersFull)
                    | heed::Error::Mdb(heed::MdbError::TxnFull)
            ),
            Self::WriterStopped => true,
            _ => false,
        }
    }
}

impl From<LmdbError> for Error {
    fn from(e: LmdbError) -> Self {
        if e.is_transient() {
            Error::transient(e)
        } else {
            Error::permanent(e)
        }
    }
}

/// A record that does not decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    LmdbError::Corrupt(what.to_string()).into()
}
