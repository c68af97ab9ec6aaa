//! Opening an LMDB environment: the one place naxos uses `unsafe`.
//!
//! heed marks [`EnvOpenOptions::open`] `unsafe` because LMDB reads its file through a memory map:
//! if the file under the map is changed behind LMDB's back — by a second, uncoordinated
//! opening of it, or by another program — what the map shows may change under a reference,
//! which is undefined behaviour. This module upholds heed's conditions, and nothing else in
//! the crate calls anything `unsafe`:
//!
//! - **One environment per directory in this process.** A process-wide registry of canonical
//!   paths refuses a second open of a directory while the first is alive
//!   ([`LmdbError::AlreadyOpen`]); heed keeps the same rule underneath.
//! - **One naxos process per directory.** An exclusive lock on `naxos.lock` in the directory
//!   is taken before the environment is opened and held until it is closed; another process
//!   holding it stops the open with [`LmdbError::Locked`] naming the path (and the holder's
//!   pid). LMDB's own `lock.mdb` coordinates readers and the writer as usual.
//! - **No unsafe flags.** No `NO_LOCK`, `NO_SYNC`, `NO_META_SYNC` or `WRITE_MAP`: every commit
//!   is LMDB's default, durable one, and the lock file is never bypassed.
//! - **The map is never resized.** Its size is fixed at open ([`crate::LmdbConfig::map_size`]);
//!   a full map is a permanent [`LmdbError::MapFull`] naming that setting.
//!
//! What the code cannot enforce is documented for operators: the directory belongs to naxos
//! (no other program writes its files), and it lives on a local file system (LMDB's locking
//! does not work over NFS and the like).
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use naxos_core::{Error, Result};

use crate::error::LmdbError;

/// A database of raw keys and values, opened for the environment's lifetime.
pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// The data format this build writes, kept in the environment's `meta` database. A release
/// that changes the meaning of what is stored raises it; a newer one is refused on open.
pub const FORMAT: u32 = 2;

/// Reader slots: one per read transaction alive at once (reads run on tokio's blocking pool,
/// at most 512 threads by default).
const MAX_READERS: u32 = 1_024;

/// Map sizes are rounded up to a multiple of this (every page size LMDB meets divides it).
const MAP_SIZE_GRAIN: usize = 64 * 1024;

/// The directories open in this process.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// What an environment holds: checked against its `meta` database on every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Store,
    Cache,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Store => "store",
            Kind::Cache => "cache",
        }
    }
}

/// How to open one environment.
pub(crate) struct Options<'a> {
    pub(crate) path: &'a Path,
    pub(crate) map_size: usize,
    pub(crate) kind: Kind,
    /// Delete the directory once the environment is closed.
    pub(crate) temporary: bool,
}

/// An open environment, its lock and its registration. Fields drop in order: the environment
/// closes first, then the lock is released, then the path leaves the registry, then a
/// temporary directory is removed.
pub(crate) struct Environment {
    env: Env<WithoutTls>,
    path: PathBuf,
    map_size: usize,
    _lock: File,
    _registration: Registration,
    _cleanup: Option<Cleanup>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("path", &self.path)
            .field("map_size", &self.map_size)
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// Opens (creating if needed) the environment in directory `options.path` with the named
    /// databases `names`, checking that it holds naxos data of `options.kind` in a format this
    /// build knows.
    pub(crate) fn open<const N: usize>(options: Options<'_>, names: [&str; N]) -> Result<(Self, [Db; N])> {
        let kind = options.kind;
        let foreign = |path: &Path, reason: String| LmdbError::Foreign {
            path: path.to_path_buf(),
            expected: kind.as_str(),
            reason,
        };
        let given = options.path;
        if given.exists() && !given.is_dir() {
            return Err(foreign(given, "it is a file, not a directory".into()).into());
        }
        fs::create_dir_all(given).map_err(|e| io(given, e))?;
        let path = fs::canonicalize(given).map_err(|e| io(given, e))?;
        let registration = Registration::new(&path)?;
        let lock = lock_directory(&path)?;
        let data = path.join("data.mdb");
        if data.exists() && !data.is_file() {
            return Err(foreign(&path, "its data.mdb is not a file".into()).into());
        }
        let map_size = options.map_size.max(MAP_SIZE_GRAIN).div_ceil(MAP_SIZE_GRAIN) * MAP_SIZE_GRAIN;
        let mut open = EnvOpenOptions::new().read_txn_without_tls();
        open.map_size(map_size).max_dbs(N as u32 + 1).max_readers(MAX_READERS);
        // SAFETY: heed's conditions for `open` (see its docs) are that the memory-mapped file
        // is not modified behind LMDB's back, in or out of process, and that LMDB's lock file
        // is not broken. In process: `registration` (above) guarantees this directory is not
        // open twice, and every environment is opened here. Out of process: `lock` holds an
        // exclusive lock on the directory's `naxos.lock` for as long as the environment is
        // open, so no other naxos process maps it; that no other program writes a naxos data
        // directory is the documented rule of the crate. No flag is set (so neither
        // `NO_LOCK` nor any unsafe sync flag), and the map is never resized after open.
        let env = unsafe { open.open(&path) }.map_err(|e| match e {
            heed::Error::Mdb(heed::MdbError::Invalid | heed::MdbError::VersionMismatch) => foreign(
                &path,
                "data.mdb is not an LMDB environment this build can read (corrupt, or another program's file)".into(),
            ),
            e => LmdbError::heed(&path, map_size, e),
        })?;
        let heed_error = |e: heed::Error| Error::from(LmdbError::heed(&path, map_size, e));
        let wtxn = env.write_txn().map_err(heed_error)?;
        let dbs = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> std::result::Result<_, Failure> {
                let meta = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("meta")
                    .open(wtxn)?;
                match meta {
                    Some(meta) => check_meta(&meta, wtxn, kind).map_err(|reason| match reason {
                        MetaProblem::Foreign(reason) => Failure::Refused(foreign(&path, reason).into()),
                        MetaProblem::Newer(found) => Failure::Refused(Error::newer_version(
                            format!("the LMDB {} at `{}`", kind.as_str(), path.display()),
                            format!("data format {found}"),
                            format!("data format {FORMAT}"),
                        )),
                    })?,
                    None => {
                        let main = opener.database_options().types::<Bytes, Bytes>().open(wtxn)?;
                        if let Some(main) = main {
                            if !main.is_empty(wtxn)? {
                                let reason = "it is an LMDB environment of another program (it has no naxos metadata)";
                                return Err(Failure::Refused(foreign(&path, reason.into()).into()));
                            }
                        }
                        let meta = opener
                            .database_options()
                            .types::<Bytes, Bytes>()
                            .name("meta")
                            .create(wtxn)?;
                        meta.put(wtxn, b"kind", kind.as_str().as_bytes())?;
                        meta.put(wtxn, b"format", &FORMAT.to_be_bytes())?;
                    }
                }
                let mut dbs = Vec::with_capacity(N);
                for name in names {
                    dbs.push(
                        opener
                            .database_options()
                            .types::<Bytes, Bytes>()
                            .name(name)
                            .create(wtxn)?,
                    );
                }
                let dbs: [_; N] = dbs.try_into().unwrap_or_else(|_| unreachable!("one database per name"));
                Ok(CommitOrAbort::<_, ()>::Commit(dbs))
            })
            .map_err(|e| match e {
                Failure::Heed(e) => heed_error(e),
                Failure::Refused(e) => e,
            })?
            .unwrap_commit();
        let cleanup = options.temporary.then(|| Cleanup(path.clone()));
        let environment = Self {
            env,
            path,
            map_size,
            _lock: lock,
            _registration: registration,
            _cleanup: cleanup,
        };
        Ok((environment, dbs))
    }

    /// The environment.
    pub(crate) fn env(&self) -> &Env<WithoutTls> {
        &self.env
    }

    /// Its directory (canonical).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// heed's error as a naxos error naming this environment.
    pub(crate) fn error(&self, e: heed::Error) -> Error {
        self.lmdb_error(e).into()
    }

    /// heed's error as this crate's, naming this environment.
    pub(crate) fn lmdb_error(&self, e: heed::Error) -> LmdbError {
        LmdbError::heed(&self.path, self.map_size, e)
    }
}

/// Why the databases could not be opened.
enum Failure {
    Heed(heed::Error),
    Refused(Error),
}

impl From<heed::Error> for Failure {
    fn from(e: heed::Error) -> Self {
        Failure::Heed(e)
    }
}

enum MetaProblem {
    Foreign(String),
    Newer(u32),
}

/// Checks the `meta` database of an existing environment.
fn check_meta(
    meta: &Database<'_, Bytes, Bytes>,
    txn: &heed::RoTxn<'_>,
    kind: Kind,
) -> std::result::Result<(), MetaProblem> {
    let read = |key: &[u8]| meta.get(txn, key).ok().flatten();
    match read(b"kind") {
        Some(k) if k == kind.as_str().as_bytes() => {}
        Some(k) => {
            return Err(MetaProblem::Foreign(format!(
                "it holds a naxos {}",
                String::from_utf8_lossy(k)
            )))
        }
        None => return Err(MetaProblem::Foreign("its metadata names no kind".into())),
    }
    let format = read(b"format")
        .and_then(|f| <[u8; 4]>::try_from(f).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| MetaProblem::Foreign("its metadata has no data format".into()))?;
    if format > FORMAT {
        return Err(MetaProblem::Newer(format));
    }
    Ok(())
}

/// Takes the directory's exclusive lock file, writing this process's id in it.
fn lock_directory(path: &Path) -> Result<File> {
    let lock_path = path.join("naxos.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let holder = file
                .read_to_string(&mut holder)
                .ok()
                .map(|_| holder.trim().to_string())
                .filter(|h| !h.is_empty());
            return Err(LmdbError::Locked {
                path: path.to_path_buf(),
                holder,
            }
            .into());
        }
        Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|e| io(&lock_path, e))?;
    Ok(file)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    LmdbError::Lmdb {
        path: path.to_path_buf(),
        source: std::sync::Arc::new(heed::Error::Io(e)),
    }
    .into()
}

/// A directory's place in [`OPEN`], given back on drop.
struct Registration(PathBuf);

impl Registration {
    fn new(path: &Path) -> Result<Self> {
        let mut open = OPEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !open.insert(path.to_path_buf()) {
            return Err(LmdbError::AlreadyOpen {
                path: path.to_path_buf(),
            }
            .into());
        }
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        OPEN.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// Removes a temporary environment's directory.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "could not remove a temporary LMDB directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(path: &Path) -> Options<'_> {
        Options {
            path,
            map_size: 1 << 20,
            kind: Kind::Store,
            temporary: false,
        }
    }

    /// Data written in a newer format is refused with `NewerVersion`, naming the directory and
    /// both formats, and left as it was.
    #[test]
    fn a_newer_data_format_is_refused() {
        let path = crate::temporary_path("newer");
        {
            let (environment, []) = Environment::open(options(&path), []).unwrap();
            let env = environment.env();
            let wtxn = env.write_txn().unwrap();
            env.create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let meta = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("meta")
                    .create(wtxn)?;
                meta.put(wtxn, b"format", &(FORMAT + 1).to_be_bytes())?;
                Ok(CommitOrAbort::<_, ()>::Commit(()))
            })
            .unwrap();
        }
        let e = Environment::open(options(&path), []).expect_err("a newer format");
        assert!(e.is_newer_version(), "{e}");
        let message = e.to_string();
        assert!(message.contains(&format!("data format {}", FORMAT + 1)), "{message}");
        assert!(message.contains("upgrade"), "{message}");
        assert!(message.contains("naxos-lmdb-newer"), "names the directory: {message}");
        // Refused again: nothing was rewritten.
        assert!(Environment::open(options(&path), []).unwrap_err().is_newer_version());
        fs::remove_dir_all(&path).unwrap();
    }

    /// A temporary environment's directory is gone once it is closed.
    #[test]
    fn a_temporary_directory_is_removed_on_close() {
        let path = crate::temporary_path("gone");
        let (environment, [_]) = Environment::open(
            Options {
                temporary: true,
                ..options(&path)
            },
            ["x"],
        )
        .unwrap();
        assert!(path.join("data.mdb").is_file());
        drop(environment);
        assert!(!path.exists());
    }
}
