//! [`LmdbCache`]: the node-local definition cache on LMDB.
//!
//! Definition versions are immutable, so an entry is never stale: the cache only has to stay
//! within its size. It keeps at most [`LmdbCacheConfig::max_bytes`] of encoded definitions and
//! forgets the ones put first beyond that (first in, first out: a read never writes, so reads
//! stay lock-free and a hot definition that was forgotten costs one Store read to put back).
//! The map ([`LmdbCacheConfig::map_size`]) is sized well above the budget, for LMDB's
//! copy-on-write pages and free-page reuse.
//!
//! Layout: `entries` maps `definition id, 0, version` to `sequence (u64), definition (JSON)`;
//! `order` maps the sequence to the entry's key; `totals` holds the bytes kept and the next
//! sequence. A put and its evictions are one write transaction; LMDB readers see the state
//! before or after it, never between, and never wait for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use naxos_core::backend::Cache;
use naxos_core::model::StoredDefinition;
use naxos_core::{Error, Result};

use crate::env::{Db, Environment, Kind, Options};
use crate::keys;
use crate::tables::decode;

/// Default map size of a cache: 256 MiB of address space (the file grows as it fills).
pub const DEFAULT_CACHE_MAP_SIZE: usize = 256 << 20;

/// Default budget of a cache: 64 MiB of encoded definitions.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

const TOTAL_BYTES: &[u8] = b"bytes";
const NEXT_SEQUENCE: &[u8] = b"sequence";

/// Where and how big an [`LmdbCache`] is.
#[derive(Debug, Clone)]
pub struct LmdbCacheConfig {
    /// The cache's directory, created if missing. One node's own: two processes cannot share
    /// it (the second is refused), so give each node its own, e.g. under its node id.
    pub path: PathBuf,
    /// The map size in bytes, fixed while open. Default [`DEFAULT_CACHE_MAP_SIZE`].
    pub map_size: usize,
    /// The most bytes of encoded definitions kept. Default [`DEFAULT_CACHE_BYTES`]; keep it
    /// at most a half of `map_size`.
    pub max_bytes: u64,
    temporary: bool,
}

impl LmdbCacheConfig {
    /// Defaults for a cache in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            map_size: DEFAULT_CACHE_MAP_SIZE,
            max_bytes: DEFAULT_CACHE_BYTES,
            temporary: false,
        }
    }

    /// The same, keeping at most `bytes` of encoded definitions.
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Defaults for a cache in a new directory under the system's temporary directory, removed
    /// when the cache is closed (tests, throwaway nodes).
    pub fn temporary() -> Self {
        Self {
            temporary: true,
            ..Self::new(crate::temporary_path("cache"))
        }
    }
}

/// The definition [`Cache`] on LMDB: size-bounded, on local disk, surviving restarts. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct LmdbCache {
    inner: Arc<CacheInner>,
}

#[derive(Debug)]
struct CacheInner {
    env: Environment,
    entries: Db,
    order: Db,
    totals: Db,
    max_bytes: u64,
}

impl LmdbCache {
    /// Opens (creating if needed) a cache in directory `path` with default sizes.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::with_config(LmdbCacheConfig::new(path))
    }

    /// Opens a cache as `config` says (errors as [`LmdbStore::with_config`](crate::LmdbStore::with_config)'s).
    pub fn with_config(config: LmdbCacheConfig) -> Result<Self> {
        let (env, [entries, order, totals]) = Environment::open(
            Options {
                path: &config.path,
                map_size: config.map_size,
                kind: Kind::Cache,
                temporary: config.temporary,
            },
            ["entries", "order", "totals"],
        )?;
        Ok(Self {
            inner: Arc::new(CacheInner {
                env,
                entries,
                order,
                totals,
                max_bytes: config.max_bytes,
            }),
        })
    }

    /// The cache's directory (canonical).
    pub fn path(&self) -> &Path {
        self.inner.env.path()
    }

    /// How many versions are cached, and their encoded size in bytes.
    pub async fn usage(&self) -> Result<(u64, u64)> {
        let inner = self.inner.clone();
        blocking(move || {
            let txn = inner.env.env().read_txn().map_err(|e| inner.env.error(e))?;
            let count = inner.entries.len(&txn).map_err(|e| inner.env.error(e))?;
            Ok((count, inner.total(&txn, TOTAL_BYTES)?))
        })
        .await
    }
}

impl CacheInner {
    fn total(&self, txn: &heed::RoTxn<'_>, name: &[u8]) -> Result<u64> {
        let value = self.totals.get(txn, name).map_err(|e| self.env.error(e))?;
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn get(&self, id: &str, version: u32) -> Result<Option<Arc<StoredDefinition>>> {
        let key = keys::definition(id, version)?;
        let txn = self.env.env().read_txn().map_err(|e| self.env.error(e))?;
        let Some(value) = self.entries.get(&txn, &key).map_err(|e| self.env.error(e))? else {
            return Ok(None);
        };
        let body = value.get(8..).unwrap_or_default();
        decode::<StoredDefinition>(body, "a cached definition").map(|d| Some(Arc::new(d)))
    }

    fn put(&self, definition: &StoredDefinition) -> Result<()> {
        let key = keys::definition(definition.id(), definition.version)?;
        let err = |e| self.env.error(e);
        let body = serde_json::to_vec(definition).map_err(Error::permanent)?;
        let size = (key.len() + body.len()) as u64;
        if size > self.max_bytes {
            return Ok(()); // larger than the whole budget: not worth keeping
        }
        let mut txn = self.env.env().write_txn().map_err(err)?;
        if self.entries.get(&txn, &key).map_err(err)?.is_some() {
            return Ok(()); // immutable: already there
        }
        let sequence = self.total(&txn, NEXT_SEQUENCE)?;
        let mut bytes = self.total(&txn, TOTAL_BYTES)? + size;
        // Forget the first put until the new entry fits.
        while bytes > self.max_bytes {
            let Some((seq, old_key)) = self.order.first(&txn).map_err(err)? else {
                break;
            };
            let (seq, old_key) = (seq.to_vec(), old_key.to_vec());
            if let Some(old) = self.entries.get(&txn, &old_key).map_err(err)? {
                bytes = bytes.saturating_sub((old_key.len() + old.len().saturating_sub(8)) as u64);
            }
            self.entries.delete(&mut txn, &old_key).map_err(err)?;
            self.order.delete(&mut txn, &seq).map_err(err)?;
        }
        let mut value = sequence.to_be_bytes().to_vec();
        value.extend_from_slice(&body);
        self.entries.put(&mut txn, &key, &value).map_err(err)?;
        self.order.put(&mut txn, &sequence.to_be_bytes(), &key).map_err(err)?;
        self.totals
            .put(&mut txn, TOTAL_BYTES, &bytes.to_be_bytes())
            .map_err(err)?;
        self.totals
            .put(&mut txn, NEXT_SEQUENCE, &(sequence + 1).to_be_bytes())
            .map_err(err)?;
        txn.commit().map_err(err)
    }
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::permanent(format!("an LMDB cache task failed: {e}")))?
}

#[async_trait]
impl Cache for LmdbCache {
    async fn get(&self, id: &str, version: u32) -> Result<Option<Arc<StoredDefinition>>> {
        let (inner, id) = (self.inner.clone(), id.to_string());
        blocking(move || inner.get(&id, version)).await
    }

    async fn put(&self, definition: Arc<StoredDefinition>) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.put(&definition)).await
    }
}
