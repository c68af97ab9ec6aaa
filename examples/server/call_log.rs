//! `NAXOS_CALL_LOG`: a file every demo function call is appended to, and synced, before the call
//! returns its result — so a count of calls survives a `kill -9`. The chaos tests compare it with
//! the attempts the Store recorded: none may be recorded that no call made.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// An append-only call log, shared by the node's task functions. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct CallLog {
    file: Arc<Mutex<File>>,
    node: Arc<str>,
}

impl CallLog {
    /// Opens (creates) `path` for appending; lines name `node`.
    pub(crate) fn open(path: &Path, node: &str) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
            node: node.into(),
        })
    }

    /// Appends `<executionId> <taskId> <attempt> <node> <ok|error>` and syncs it to disk.
    pub(crate) async fn append(&self, execution: naxos::ExecutionId, task: &str, attempt: u32, ok: bool) {
        let line = format!(
            "{execution} {task} {attempt} {} {}\n",
            self.node,
            if ok { "ok" } else { "error" }
        );
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!(?written, "the call log could not be written");
        }
    }
}
