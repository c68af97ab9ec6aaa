//! The format version of a message, carried in its `x-naxos-version` header.
//!
//! The body stays the JSON that the original naxos and other services read (a task message is
//! `{"executionId","taskId","attempt"}`), so the version travels beside it: a reader learns it
//! before it parses a body whose shape it may not know, and bindings of other services see the
//! events they always saw. A message without the header is version 1: what the original naxos,
//! and naxos before versions were written, published.

use std::collections::BTreeSet;
use std::sync::Mutex;

use deadpool_lapin::lapin::types::{AMQPValue, FieldTable};
use deadpool_lapin::lapin::BasicProperties;

/// The header that carries a message's format version.
pub(crate) const HEADER: &str = "x-naxos-version";

/// The version of a message without the header.
const UNMARKED: u32 = 1;

/// Properties with the header set to `version`, on top of `properties`.
pub(crate) fn mark(properties: BasicProperties, version: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(HEADER.into(), AMQPValue::LongUInt(version));
    properties.with_headers(headers)
}

/// What a reader makes of a message's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// One this build reads.
    Known,
    /// Newer than this build knows: written by a newer release.
    Newer(u64),
    /// Not a version at all (not a positive integer): the message is not naxos's.
    Invalid,
}

/// Reads the version from `properties`, for a reader that knows versions up to `known`.
pub(crate) fn read(properties: &BasicProperties, known: u32) -> Version {
    let value = properties.headers().as_ref().and_then(|h| h.inner().get(HEADER));
    let version = match value {
        None => Some(u64::from(UNMARKED)),
        Some(value) => number(value),
    };
    match version {
        Some(0) | None => Version::Invalid,
        Some(v) if v <= u64::from(known) => Version::Known,
        Some(v) => Version::Newer(v),
    }
}

/// A header value as a number: any AMQP integer, or a decimal string (what a management UI or a
/// script tends to send).
fn number(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

/// The versions already warned about, so that each is logged loudly once per queue.
#[derive(Debug, Default)]
pub(crate) struct Seen(Mutex<BTreeSet<u64>>);

impl Seen {
    /// True the first time `version` is met.
    pub(crate) fn first(&self, version: u64) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_lapin::lapin::types::LongString;

    fn with(value: AMQPValue) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(HEADER.into(), value);
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn no_header_is_version_1() {
        assert_eq!(read(&BasicProperties::default(), 1), Version::Known);
        let other = {
            let mut headers = FieldTable::default();
            headers.insert("x-other".into(), AMQPValue::LongUInt(7));
            BasicProperties::default().with_headers(headers)
        };
        assert_eq!(read(&other, 1), Version::Known);
    }

    #[test]
    fn what_mark_writes_reads_back() {
        assert_eq!(read(&mark(BasicProperties::default(), 1), 1), Version::Known);
        assert_eq!(read(&mark(BasicProperties::default(), 2), 1), Version::Newer(2));
        assert_eq!(read(&mark(BasicProperties::default(), 2), 2), Version::Known);
    }

    #[test]
    fn any_integer_or_decimal_string_counts() {
        assert_eq!(read(&with(AMQPValue::ShortShortInt(1)), 1), Version::Known);
        assert_eq!(read(&with(AMQPValue::LongLongInt(3)), 1), Version::Newer(3));
        assert_eq!(
            read(&with(AMQPValue::LongString(LongString::from(" 2 "))), 1),
            Version::Newer(2)
        );
        assert_eq!(read(&with(AMQPValue::ShortString("1".into())), 1), Version::Known);
    }

    #[test]
    fn anything_else_is_invalid() {
        assert_eq!(read(&with(AMQPValue::LongInt(0)), 1), Version::Invalid);
        assert_eq!(read(&with(AMQPValue::LongInt(-1)), 1), Version::Invalid);
        assert_eq!(
            read(&with(AMQPValue::LongString(LongString::from("v2"))), 1),
            Version::Invalid
        );
        assert_eq!(read(&with(AMQPValue::Boolean(true)), 1), Version::Invalid);
    }

    #[test]
    fn each_version_is_first_once() {
        let seen = Seen::default();
        assert!(seen.first(2));
        assert!(!seen.first(2));
        assert!(seen.first(3));
    }
}
