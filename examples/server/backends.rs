//! The Store, Queue and Cache the environment chose, opened.
//!
//! - No backend variable: LmdbStore in `<NAXOS_LMDB_PATH>/store` and LmdbCache in
//!   `<NAXOS_LMDB_PATH>/cache` (`./naxos-data` by default, created on first start), with the
//!   in-memory queue: durable, no service to run. A directory another process holds, or one that
//!   holds something else, stops the start naming the path.
//! - `NAXOS_STORE=memory`: everything in memory, gone at exit.
//! - `NAXOS_POSTGRES_URL`: PgStore, with an LmdbCache of definitions per node: in
//!   `<NAXOS_LMDB_PATH>/cache-<NAXOS_NODE_ID>` when the node has a fixed id (kept across restarts),
//!   else in a temporary directory removed at exit (a random id would leave a new one per start).
//! - `NAXOS_AMQP_URL`: the RabbitMQ queue; the in-memory one otherwise.

use std::sync::Arc;

use anyhow::Context;
use naxos::backend::{Cache, Queue, Store};
use naxos::EngineBuilder;
use naxos_lmdb::{LmdbCache, LmdbCacheConfig, LmdbConfig, LmdbStore};

use crate::config::{ServerConfig, StoreKind};

/// What the banner says of the backends, e.g. `store lmdb (/srv/naxos-data/store), queue memory,
/// cache lmdb (/srv/naxos-data/cache)`.
pub(crate) struct Described(pub(crate) String);

/// Opens the backends `config` names and gives them to `builder`.
pub(crate) async fn open(config: &ServerConfig, builder: EngineBuilder) -> anyhow::Result<(EngineBuilder, Described)> {
    let (store, store_name): (Option<Arc<dyn Store>>, String) = match config.store {
        StoreKind::Memory => (None, "memory".into()),
        StoreKind::Lmdb => {
            let mut lmdb = LmdbConfig::new(config.lmdb_path.join("store"));
            if let Some(bytes) = config.lmdb_map_size {
                lmdb = lmdb.with_map_size(bytes);
            }
            let store = LmdbStore::with_config(lmdb).with_context(|| {
                format!(
                    "NAXOS_LMDB_PATH: cannot open the LMDB store in {}",
                    config.lmdb_path.join("store").display()
                )
            })?;
            let name = format!("lmdb ({})", store.path().display());
            (Some(Arc::new(store)), name)
        }
        StoreKind::Postgres => {
            let url = config.postgres_url.as_deref().unwrap_or_default();
            let store = naxos_postgres::PgStore::connect(url)
                .await
                .context("NAXOS_POSTGRES_URL: cannot use the PostgreSQL store")?;
            (Some(Arc::new(store)), "postgres".into())
        }
    };
    let cache_config = match (config.store, &config.node_id) {
        (StoreKind::Memory, _) => None,
        (StoreKind::Lmdb, _) => Some(LmdbCacheConfig::new(config.lmdb_path.join("cache"))),
        (StoreKind::Postgres, Some(node)) => Some(LmdbCacheConfig::new(config.lmdb_path.join(format!("cache-{node}")))),
        (StoreKind::Postgres, None) => Some(LmdbCacheConfig::temporary()),
    };
    let (cache, cache_name): (Option<Arc<dyn Cache>>, String) = match cache_config {
        None => (None, "memory".into()),
        Some(c) => {
            let path = c.path.clone();
            let cache = LmdbCache::with_config(c).with_context(|| {
                format!(
                    "NAXOS_LMDB_PATH: cannot open the definition cache in {}",
                    path.display()
                )
            })?;
            let name = format!("lmdb ({})", cache.path().display());
            (Some(Arc::new(cache)), name)
        }
    };
    let (queue, queue_name): (Option<Arc<dyn Queue>>, &str) = match &config.amqp_url {
        Some(url) => {
            let mut amqp = naxos_amqp::AmqpConfig::new(url.clone());
            if let Some(prefix) = &config.amqp_prefix {
                amqp.prefix = prefix.clone();
            }
            let queue = naxos_amqp::AmqpQueue::with_config(amqp)
                .await
                .context("NAXOS_AMQP_URL: cannot use the RabbitMQ queue")?;
            (Some(Arc::new(queue)), "rabbitmq")
        }
        None => (None, "memory"),
    };
    let mut builder = builder;
    if let Some(store) = store {
        builder = builder.store(store);
    }
    if let Some(cache) = cache {
        builder = builder.cache(cache);
    }
    if let Some(queue) = queue {
        builder = builder.queue(queue);
    }
    let described = format!("store {store_name}, queue {queue_name}, cache {cache_name}");
    Ok((builder, Described(described)))
}
