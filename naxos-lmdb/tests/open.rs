//! Opening a data directory: once per process, one process at a time, only naxos data of the
//! right kind; and a full map, which names the setting to raise.

mod common;

use std::fs::File;

use common::{lmdb_error, TestDir};
use naxos_core::backend::{NewExecution, Store};
use naxos_core::serde_json::json;
use naxos_core::testkit::diamond;
use naxos_core::Error;
use naxos_lmdb::{LmdbCache, LmdbConfig, LmdbError, LmdbStore};

fn refused(result: Result<LmdbStore, Error>) -> (Error, LmdbError) {
    let e = result.expect_err("the open must be refused");
    let cause = lmdb_error(&e)
        .unwrap_or_else(|| panic!("not an LMDB error: {e}"))
        .clone();
    assert!(!e.is_transient(), "a refused open is permanent: {e}");
    (e, cause)
}

/// A second open of an open directory is refused, naming it; once the first handle is gone,
/// the directory opens again.
#[test]
fn one_directory_opens_once_per_process() {
    let dir = TestDir::new("twice");
    let first = LmdbStore::open(dir.path()).unwrap();
    let (e, cause) = refused(LmdbStore::open(dir.path()));
    assert!(matches!(cause, LmdbError::AlreadyOpen { .. }), "{e}");
    assert!(e.to_string().contains(&first.path().display().to_string()), "{e}");
    // Through another spelling of the same path, too.
    let (_, cause) = refused(LmdbStore::open(dir.path().join(".")));
    assert!(matches!(cause, LmdbError::AlreadyOpen { .. }));
    // A clone is the way to share it.
    let clone = first.clone();
    drop(first);
    assert!(LmdbStore::open(dir.path()).is_err(), "a clone still holds it");
    drop(clone);
    LmdbStore::open(dir.path()).expect("free again once every handle is dropped");
}

/// A directory whose lock another process holds is refused with the path and the holder.
#[test]
fn a_directory_locked_by_another_process_is_refused() {
    let dir = TestDir::new("locked");
    // Another process's lock, as far as this one can tell (an flock on its own descriptor).
    let lock = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("naxos.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    std::fs::write(dir.join("naxos.lock"), "4242").unwrap();
    let (e, cause) = refused(LmdbStore::open(dir.path()));
    assert!(matches!(cause, LmdbError::Locked { .. }), "{e}");
    let message = e.to_string();
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    assert!(message.contains("pid 4242"), "{message}");
    drop(lock);
    LmdbStore::open(dir.path()).expect("free once the other holder lets go");
}

/// Something other than a naxos store at the path is refused clearly, and left as it was.
#[test]
fn foreign_or_corrupt_data_is_refused() {
    let dir = TestDir::new("foreign");

    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let (e, cause) = refused(LmdbStore::open(&file));
    assert!(matches!(cause, LmdbError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("not a directory"), "{e}");

    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(corrupt.join("data.mdb"), &garbage).unwrap();
    let (e, cause) = refused(LmdbStore::open(&corrupt));
    assert!(matches!(cause, LmdbError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert_eq!(
        std::fs::read(corrupt.join("data.mdb")).unwrap(),
        garbage,
        "left untouched"
    );

    let cache = dir.join("cache");
    drop(LmdbCache::open(&cache).unwrap());
    let (e, cause) = refused(LmdbStore::open(&cache));
    assert!(matches!(cause, LmdbError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("naxos cache"), "{e}");
    // And the other way round.
    let store = dir.join("store");
    drop(LmdbStore::open(&store).unwrap());
    let e = LmdbCache::open(&store).expect_err("a store is no cache");
    assert!(e.to_string().contains("naxos store"), "{e}");
}

/// A write that does not fit in the map fails with a permanent error naming the setting to
/// raise; the store keeps serving reads and the writes that fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_map_names_the_setting() {
    let store = LmdbStore::with_config(LmdbConfig::temporary().with_map_size(1 << 20)).unwrap();
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let big = json!({ "blob": "x".repeat(100 * 1024) });
    let mut created = Vec::new();
    let full = loop {
        match store.create_execution(NewExecution::new(&def, big.clone())).await {
            Ok(c) => created.push(c.execution_id),
            Err(e) => break e,
        }
        assert!(created.len() < 100, "a 1 MiB map never filled");
    };
    assert!(!full.is_transient(), "{full}");
    assert!(matches!(lmdb_error(&full), Some(LmdbError::MapFull { .. })), "{full}");
    let message = full.to_string();
    assert!(
        message.contains("LmdbConfig::map_size") && message.contains("NAXOS_LMDB_MAP_SIZE"),
        "{message}"
    );
    assert!(!created.is_empty());
    for id in &created {
        assert_eq!(
            store.get_execution(*id).await.unwrap().data,
            big,
            "earlier writes intact"
        );
    }
    store
        .stop_execution(created[0], naxos_core::backend::StopReason::Cancelled)
        .await
        .expect("a small write still fits");
}
