//! Helpers shared by the tests: a directory of one's own, removed at the end.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use naxos_core::Error;
use naxos_lmdb::LmdbError;

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "naxos-lmdb-test-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("create a test directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The LmdbError inside a naxos error, if that is what it carries.
pub fn lmdb_error(e: &Error) -> Option<&LmdbError> {
    match e {
        Error::Backend { cause, .. } => cause.downcast_ref::<LmdbError>(),
        _ => None,
    }
}
