//! # naxos-lmdb
//!
//! The durable embedded backends of naxos, on LMDB (through heed): [`LmdbStore`], a
//! [`Store`](naxos_core::backend::Store) in one local directory with no service to run, and
//! [`LmdbCache`], the node-local definition [`Cache`](naxos_core::backend::Cache).
//!
//! With the `naxos` crate's `lmdb` feature, this crate is `naxos::lmdb`:
//!
//! ```no_run
//! # mod naxos { pub use naxos_core::*; pub mod lmdb { pub use naxos_lmdb::*; } }
//! use std::sync::Arc;
//!
//! use naxos::lmdb::{LmdbCache, LmdbStore};
//! use naxos::serde_json::json;
//! use naxos::Engine;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> naxos::Result<()> {
//! let engine = Engine::builder()
//!     .store(Arc::new(LmdbStore::open("./naxos-data/store")?))
//!     .cache(Arc::new(LmdbCache::open("./naxos-data/cache/node-1")?))
//!     .build()?;
//! engine.register("hello", |_ctx| async move { Ok(json!("hello")) });
//! // register definitions, engine.start(), engine.execute(..): executions survive a restart.
//! # Ok(())
//! # }
//! ```
//!
//! ## How the store works
//!
//! - **The rules are naxos-core's.** Every transition loads the execution as an
//!   [`ExecutionState`](naxos_core::state::ExecutionState), applies the state module's function,
//!   and writes back what changed; nothing here re-implements a transition. The conformance
//!   suite and the differential test of naxos-core's `testkit` run on this store.
//! - **Group commit.** One writer thread takes every write request waiting, runs them in one
//!   write transaction and commits once (LMDB's default durable commit: data and meta page
//!   synced; no `NO_SYNC`), then answers each; a refused transition does not fail the others
//!   (see `writer.rs`). Reads are LMDB read transactions on tokio's blocking pool: they never
//!   wait for the writer.
//! - **Few pages a commit.** A durable commit's time grows with the pages it writes (≈ 40 µs
//!   a page here, beside ≈ 0.3 ms of syncs), so rows are compact (`codec.rs`), an execution's
//!   rows are neighbours in one database, and a status change moves one index entry.
//! - **Indexes in the same transaction**: executions by creation (their UUIDv7 keys), by
//!   definition, by definition and status (which, merged over definitions, also lists by status
//!   alone); RUNNING tasks by lease expiry, QUEUED ones by when they were queued, RETRYING ones
//!   by due time, WAITING ones and delayed executions by due time, unfinished executions by
//!   deadline, finished ones by end time. Task counts are LMDB entry counts; execution counts
//!   by status are kept by the writer (counted at open, moved by each commit). The key layout
//!   is in `keys.rs`.
//! - **Format.** The environment records what it holds (store or cache) and its data format
//!   ([`FORMAT`]); a newer format is refused with
//!   [`Error::NewerVersion`](naxos_core::Error::NewerVersion), something else at the path with
//!   [`LmdbError::Foreign`]. Definitions carry their own format, as on PostgreSQL.
//! - **Backups**: [`LmdbStore::backup_to`] writes a compacted, consistent copy while the store
//!   serves.
//!
//! ## The data directory
//!
//! A directory holds one environment (`data.mdb`, LMDB's `lock.mdb`, and `naxos.lock`) and
//! belongs to **one naxos process**: the process takes an exclusive lock on `naxos.lock`, and a
//! second process is refused with [`LmdbError::Locked`] naming the path; in one process a
//! directory is opened once ([`LmdbError::AlreadyOpen`]: share the handle, it is cheap to
//! clone). No other program may write its files, and it must be on a local file system (LMDB's
//! locks do not work over NFS). Give the store and each node's cache their own directories.
//!
//! The map size ([`LmdbConfig::map_size`], the example server's `NAXOS_LMDB_MAP_SIZE`) bounds the
//! data and is fixed while open (heed's resize is `unsafe`, and not used); the file grows as
//! data is written, not to the map size. A full map fails writes with the permanent
//! [`LmdbError::MapFull`] naming that setting: reopen with a larger one, or prune sooner.
//!
//! The only `unsafe` code of naxos is the environment open in `env.rs`, with the conditions it
//! upholds.

mod cache;
mod codec;
mod env;
mod error;
mod keys;
mod retention;
mod scans;
mod schedules;
mod slots;
mod store;
mod tables;
mod writer;

use std::path::PathBuf;

use naxos_core::Clock;

pub use cache::{LmdbCache, LmdbCacheConfig, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_MAP_SIZE};
pub use env::FORMAT;
pub use error::{LmdbError, MAP_SIZE_VARIABLE};
pub use heed;
pub use store::{LmdbStore, WriteStats};

/// Default map size of a store: 16 GiB of address space on 64-bit targets (1 GiB on others).
pub const DEFAULT_MAP_SIZE: usize = if usize::BITS >= 64 { 16 << 30 } else { 1 << 30 };

/// Default number of execution states the writer keeps decoded (see [`LmdbConfig::cached_states`]).
pub const DEFAULT_CACHED_STATES: usize = 16_384;

/// Where and how an [`LmdbStore`] keeps its data.
#[derive(Debug, Clone)]
pub struct LmdbConfig {
    /// The store's directory, created if missing.
    pub path: PathBuf,
    /// The most bytes the data may take, fixed while open (rounded up to 64 KiB). Default
    /// [`DEFAULT_MAP_SIZE`]. It reserves address space, not disk.
    pub map_size: usize,
    /// The clock transitions read (default: the system's); tests inject a manual one.
    pub clock: Clock,
    /// Unfinished executions whose decoded state the writer keeps, so their transitions decode
    /// nothing. Default [`DEFAULT_CACHED_STATES`]; 0 decodes every time.
    pub cached_states: usize,
    temporary: bool,
}

impl LmdbConfig {
    /// Defaults for a store in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            map_size: DEFAULT_MAP_SIZE,
            clock: Clock::System,
            cached_states: DEFAULT_CACHED_STATES,
            temporary: false,
        }
    }

    /// Defaults for a store in a new directory under the system's temporary directory, removed
    /// when the store is closed (tests, throwaway runs).
    pub fn temporary() -> Self {
        Self {
            temporary: true,
            ..Self::new(temporary_path("store"))
        }
    }

    /// The same, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same, keeping at most `states` decoded execution states in the writer.
    pub fn with_cached_states(mut self, states: usize) -> Self {
        self.cached_states = states;
        self
    }

    /// The same, with a map of `bytes`.
    pub fn with_map_size(mut self, bytes: usize) -> Self {
        self.map_size = bytes;
        self
    }
}

/// A fresh directory name under the system's temporary directory, named after this process.
/// Those of processes that are gone (killed before they could remove theirs) are removed first.
fn temporary_path(what: &str) -> PathBuf {
    let dir = std::env::temp_dir();
    remove_orphans(&dir, what);
    dir.join(format!(
        "naxos-lmdb-{what}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// Removes the temporary `what` directories under `dir` whose process is gone. Only where
/// `/proc` tells which processes live (Linux); a directory whose process id was reused by
/// another process stays.
fn remove_orphans(dir: &std::path::Path, what: &str) {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let prefix = format!("naxos-lmdb-{what}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    /// A temporary directory left by a process that is gone is removed; one of a living
    /// process (this one) and one that is not naxos's stay.
    #[test]
    fn directories_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("naxos-orphans-{}", uuid::Uuid::new_v4().simple()));
        // A process id above Linux's highest (4,194,304) names no process.
        let dead = dir.join("naxos-lmdb-cache-4294967295-0123");
        let alive = dir.join(format!("naxos-lmdb-cache-{}-4567", std::process::id()));
        let other = dir.join("naxos-lmdb-cache-notapid-89");
        for d in [&dead, &alive, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        super::remove_orphans(&dir, "cache");
        let linux = std::path::Path::new("/proc/self").exists();
        assert_eq!(dead.exists(), !linux, "the dead process's directory");
        assert!(alive.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
