//! Store conformance checks. Each takes a fresh backend and the fake clock it reads, and
//! panics on a broken rule.

mod admission;
mod batches;
mod concurrency;
mod conditions;
mod control;
mod delays;
mod fanout;
mod rates;
mod records;
mod retention;
mod runs;
mod schedules;
mod subjobs;
mod trace;
mod waits;

pub use admission::*;
pub use batches::*;
pub use concurrency::*;
pub use conditions::*;
pub use control::*;
pub use delays::*;
pub use fanout::*;
pub use rates::*;
pub use records::*;
pub use retention::*;
pub use runs::*;
pub use schedules::*;
pub use subjobs::*;
pub use trace::*;
pub use waits::*;
