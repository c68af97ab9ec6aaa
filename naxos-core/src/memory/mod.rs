//! In-memory backends: a complete naxos in one process with no services.
//!
//! They are first-class: the engine's tests, the README example and the example server's
//! default all run on them. Nothing survives the process.

mod cache;
mod queue;
mod schedules;
mod slots;
mod store;

pub use cache::MemoryCache;
pub use queue::MemoryQueue;
pub use store::{MemoryStore, DEFAULT_MAX_FINISHED};
