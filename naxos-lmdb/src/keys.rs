//! How keys are laid out: fixed-width big-endian fields, so that LMDB's byte order is the
//! order a scan needs (by time, then execution id, then task position).
//!
//! | database | key | value |
//! | --- | --- | --- |
//! | `definitions` | definition id, `0`, version (u32) | format (u32), the stored definition (JSON) |
//! | `executions` | execution id (16 bytes: a UUIDv7, so creation order), [`SUMMARY`] | its summary (`codec.rs`) |
//! | | execution id, [`PARAMS`] | its params (JSON) |
//! | | execution id, [`PLAN`] | each task's id, name, function and dependencies (`codec.rs`) |
//! | | execution id, [`TASK`], task position (u32) | the rest of the task run, with its output and attempts (`codec.rs`) |
//! | | execution id, [`SIGNALS`] | signals kept for tasks not yet waiting (JSON list; absent when none) |
//! | `by_definition` | definition id, `0`, execution id | — |
//! | `by_definition_status` | definition id, `0`, status (u8), execution id (also the listing by status alone: each definition's range, merged) | — |
//! | `idempotency` | definition id, `0`, key | execution id |
//! | `running` | lease expiry, execution id, task position | — |
//! | `queued` | times republished (u8, capped), queued at, execution id, task position | — |
//! | `retrying` | due at, execution id, task position | — |
//! | `waiting` | due at, execution id, task position (WAITING tasks with a due time) | — |
//! | | scheduled for, execution id (delayed executions not yet started) | — |
//! | `deadlines` | deadline, execution id (unfinished executions only) | — |
//! | `ended` | end time, execution id (finished executions only) | — |
//! | `retained`, `expiring` | see `retention.rs` | |
//! | `nodes` | node id | the node (JSON) |
//! | `slots_held` | scope length (u16), concurrency scope, execution id, task position (runs holding a slot) | — |
//! | `slots_waiting` | scope length (u16), concurrency scope, 9 − priority (one byte: the highest first), queued at, execution id, task position (runs waiting for one, in the order of admission) | — |
//!
//! Times are microseconds since the epoch with the sign bit flipped (so negative times sort
//! first). Definition ids never contain a `0` byte (their charset is `[A-Za-z0-9_.-]`), so
//! `id, 0` is a prefix no other id shares.

use chrono::{DateTime, Utc};
use naxos_core::model::{ExecutionId, ExecutionStatus, Priority};
use naxos_core::Result;
use uuid::Uuid;

use crate::error::LmdbError;

/// The longest key LMDB takes (its default build).
pub(crate) const MAX_KEY: usize = 511;

/// The width of an encoded time.
pub(crate) const TIME: usize = 8;

/// The width of an execution id.
pub(crate) const ID: usize = 16;

/// A time as 8 bytes that sort like the times.
pub(crate) fn time(t: DateTime<Utc>) -> [u8; TIME] {
    ((t.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The row kinds of an execution in `executions`, after its id: all its rows are neighbours,
/// so a transition's writes fall in one or two leaf pages.
pub(crate) const SUMMARY: u8 = 0;
/// See [`SUMMARY`].
pub(crate) const PARAMS: u8 = 1;
/// See [`SUMMARY`].
pub(crate) const PLAN: u8 = 2;
/// See [`SUMMARY`].
pub(crate) const TASK: u8 = 3;
/// See [`SUMMARY`]: the signals an execution keeps (absent when none).
pub(crate) const SIGNALS: u8 = 4;

/// The key of an execution's summary, params or plan row: execution id, then the kind.
pub(crate) fn row(id: ExecutionId, kind: u8) -> [u8; ID + 1] {
    let mut k = [0; ID + 1];
    k[..ID].copy_from_slice(id.as_bytes());
    k[ID] = kind;
    k
}

/// The key of one task run's row: execution id, [`TASK`], then its position.
pub(crate) fn task(id: ExecutionId, index: usize) -> [u8; ID + 5] {
    let mut k = [0; ID + 5];
    k[..ID + 1].copy_from_slice(&row(id, TASK));
    k[ID + 1..].copy_from_slice(&(index as u32).to_be_bytes());
    k
}

/// The task position in a task row's key.
pub(crate) fn position_of(key: &[u8]) -> Option<usize> {
    let position: [u8; 4] = key.get(ID + 1..)?.try_into().ok()?;
    Some(u32::from_be_bytes(position) as usize)
}

/// True for the key of an execution's summary row (one per execution).
pub(crate) fn is_summary(key: &[u8]) -> bool {
    key.len() == ID + 1 && key[ID] == SUMMARY
}

/// The prefix of a concurrency scope's keys in `slots_held` and `slots_waiting`: its length
/// (u16), then its bytes (at most naxos-core's `MAX_SCOPE_LEN`).
pub(crate) fn slot_prefix(scope: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + scope.len() + TIME + ID + 4);
    k.extend_from_slice(&(scope.len() as u16).to_be_bytes());
    k.extend_from_slice(scope.as_bytes());
    k
}

/// The scope of a `slots_held` or `slots_waiting` key, and the rest of the key after it.
pub(crate) fn slot_of(key: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    let scope = std::str::from_utf8(key.get(2..2 + len)?).ok()?;
    Some((scope, &key[2 + len..]))
}

/// The `slots_waiting` key of a run of execution `id` (at `priority`, task position `index`)
/// waiting for a slot of `scope` since `queued_at`: in the order of admission within the scope,
/// the highest priority first, then the oldest.
pub(crate) fn slot_waiting(
    scope: &str,
    priority: Priority,
    queued_at: DateTime<Utc>,
    id: ExecutionId,
    index: usize,
) -> Vec<u8> {
    let mut k = slot_prefix(scope);
    k.push(Priority::HIGHEST.get() - priority.get());
    k.extend_from_slice(&timed(queued_at, id, Some(index)));
    k
}

/// Where the execution id is in a `slots_waiting` key of a scope whose prefix is `prefix_len`
/// bytes (see [`slot_waiting`]).
pub(crate) fn slot_waiting_id_at(prefix_len: usize) -> usize {
    prefix_len + 1 + TIME
}

/// `time, execution id` (and the task position, when given).
pub(crate) fn timed(t: DateTime<Utc>, id: ExecutionId, index: Option<usize>) -> Vec<u8> {
    let mut k = Vec::with_capacity(TIME + ID + 4);
    k.extend_from_slice(&time(t));
    k.extend_from_slice(id.as_bytes());
    if let Some(i) = index {
        k.extend_from_slice(&(i as u32).to_be_bytes());
    }
    k
}

/// The execution id in a key that starts with `offset` bytes before it.
pub(crate) fn id_at(key: &[u8], offset: usize) -> Result<ExecutionId> {
    key.get(offset..offset + ID)
        .and_then(|b| Uuid::from_slice(b).ok())
        .ok_or_else(|| crate::error::corrupt(format!("an index key of {} bytes", key.len())))
}

/// The execution id of an `executions` key or an `idempotency` value.
pub(crate) fn id_of(key: &[u8]) -> Result<ExecutionId> {
    id_at(key, 0)
}

/// A QUEUED task's key: `republished` (capped at `cap`) first, so that each republish wait
/// is its own time-ordered range.
pub(crate) fn queued(republished: u32, cap: u32, at: DateTime<Utc>, id: ExecutionId, index: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + TIME + ID + 4);
    k.push(republished.min(cap) as u8);
    k.extend_from_slice(&timed(at, id, Some(index)));
    k
}

/// `text, 0`: the prefix of every key under a definition id.
pub(crate) fn prefix(text: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(text.len() + 1 + ID + 4);
    k.extend_from_slice(text.as_bytes());
    k.push(0);
    k
}

/// A definition version's key.
pub(crate) fn definition(id: &str, version: u32) -> Result<Vec<u8>> {
    let mut k = prefix(id);
    k.extend_from_slice(&version.to_be_bytes());
    checked(k, "a definition id")
}

/// The version in a definition key.
pub(crate) fn version_of(key: &[u8]) -> Result<u32> {
    key.len()
        .checked_sub(4)
        .and_then(|at| <[u8; 4]>::try_from(&key[at..]).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| crate::error::corrupt("a definition key without a version"))
}

/// An execution's key in `by_definition`.
pub(crate) fn by_definition(definition: &str, id: ExecutionId) -> Vec<u8> {
    let mut k = prefix(definition);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of a definition's executions in one status in `by_definition_status`.
pub(crate) fn definition_status(definition: &str, status: ExecutionStatus) -> Vec<u8> {
    let mut k = prefix(definition);
    k.push(status_byte(status));
    k
}

/// An execution's key in `by_definition_status`.
pub(crate) fn by_definition_status(definition: &str, status: ExecutionStatus, id: ExecutionId) -> Vec<u8> {
    let mut k = definition_status(definition, status);
    k.extend_from_slice(id.as_bytes());
    k
}

/// An idempotency key's key.
pub(crate) fn idempotency(definition: &str, key: &str) -> Result<Vec<u8>> {
    let mut k = prefix(definition);
    k.extend_from_slice(key.as_bytes());
    checked(k, "a definition id and idempotency key")
}

/// A status as one byte (its position in [`ExecutionStatus::ALL`]).
pub(crate) fn status_byte(status: ExecutionStatus) -> u8 {
    ExecutionStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL") as u8
}

/// Refuses a key LMDB would not take, with a clear error instead of LMDB's.
pub(crate) fn checked(key: Vec<u8>, what: &'static str) -> Result<Vec<u8>> {
    if key.len() > MAX_KEY {
        return Err(LmdbError::KeyTooLong {
            what,
            len: key.len(),
            max: MAX_KEY,
        }
        .into());
    }
    Ok(key)
}

/// The smallest key greater than every key that starts with `prefix` (`None`: no such key,
/// or an empty prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_like_their_bytes() {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let times = [
            DateTime::<Utc>::MIN_UTC,
            epoch - chrono::Duration::seconds(1),
            epoch,
            epoch + chrono::Duration::microseconds(1),
            Utc::now(),
            DateTime::<Utc>::MAX_UTC,
        ];
        for pair in times.windows(2) {
            assert!(time(pair[0]) < time(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn definition_keys_keep_ids_apart() {
        // "a" and "a.b": the 0 after an id sorts before every id character.
        let a9 = definition("a", 9).unwrap();
        let ab1 = definition("a.b", 1).unwrap();
        assert!(a9.starts_with(&prefix("a")));
        assert!(!ab1.starts_with(&prefix("a")));
        assert_eq!(version_of(&a9).unwrap(), 9);
        assert!(definition(&"x".repeat(600), 1).is_err());
        assert_eq!(prefix_end(&prefix("a")), Some(b"a\x01".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[]), None);
    }
}
