//! W3C trace context: the `traceparent` value that lets a task's span join the trace of the
//! request that submitted its execution.
//!
//! The value is `version-traceid-parentid-flags` in lowercase hex, e.g.
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01` (W3C Trace Context, level 1).
//! [`TraceParent::parse`] follows the specification's parsing rules: version `00` is exactly
//! those four fields (55 characters); a higher version is read for the same three fields at the
//! same places, as long as whatever follows them starts with a dash, and is written back as
//! version `00` (the highest this build knows), keeping only the `sampled` flag; version `ff`,
//! upper-case hex, and an all-zero trace-id or parent-id are invalid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The length of a version-`00` value: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
const LEN: usize = 55;

/// The version this build writes.
const VERSION: u8 = 0;

/// The one flag version `00` defines: the caller may have recorded its span.
const SAMPLED: u8 = 0x01;

/// A W3C `traceparent`: the trace an execution belongs to, and the span (of the request that
/// submitted it, or of a task attempt) that is the parent of what comes next.
///
/// Parsed with [`parse`](Self::parse) (or `str::parse`), written back with `Display`, and
/// serialized as that string. [`child`](Self::child) makes the value to send downstream: same
/// trace, a fresh parent-id naming the span the sender is in.
///
/// ```
/// # use naxos_core as naxos;
/// use naxos::model::TraceParent;
/// let submitted: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// let child = submitted.child();
/// assert_eq!(child.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_ne!(child.parent_id(), submitted.parent_id());
/// assert!(child.is_sampled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A trace context from its parts; `InvalidInput` when the trace-id or the parent-id is all
    /// zeros (the specification forbids both).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Result<Self> {
        if trace_id == [0; 16] {
            return Err(invalid("the trace-id is all zeros"));
        }
        if parent_id == [0; 8] {
            return Err(invalid("the parent-id is all zeros"));
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses a `traceparent` value by the W3C rules (see the module docs); `InvalidInput`
    /// saying what is wrong otherwise. Surrounding whitespace is not trimmed.
    pub fn parse(value: &str) -> Result<Self> {
        let b = value.as_bytes();
        if b.len() < 3 || b[2] != b'-' {
            return Err(invalid("it does not start with a 2-digit version and a dash"));
        }
        let version = hex_byte(&b[..2]).ok_or_else(|| invalid("the version is not 2 lowercase hex digits"))?;
        if version == 0xff {
            return Err(invalid("version ff is not allowed"));
        }
        if version == VERSION && b.len() != LEN {
            return Err(invalid("a version-00 value is 55 characters long"));
        }
        if b.len() < LEN {
            return Err(invalid("it is shorter than 55 characters"));
        }
        if b[35] != b'-' || b[52] != b'-' || (b.len() > LEN && b[LEN] != b'-') {
            return Err(invalid("its fields are not separated by dashes"));
        }
        let trace_id =
            hex_array::<16>(&b[3..35]).ok_or_else(|| invalid("the trace-id is not 32 lowercase hex digits"))?;
        let parent_id =
            hex_array::<8>(&b[36..52]).ok_or_else(|| invalid("the parent-id is not 16 lowercase hex digits"))?;
        let flags = hex_byte(&b[53..55]).ok_or_else(|| invalid("the flags are not 2 lowercase hex digits"))?;
        // A newer version's flags may mean more than this build knows: only `sampled` is kept.
        let flags = if version == VERSION { flags } else { flags & SAMPLED };
        Self::new(trace_id, parent_id, flags)
    }

    /// The trace-id: the whole distributed trace, shared by every span in it.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent-id: the span this value was sent from (8 bytes).
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// True when the `sampled` flag is set: the caller may have recorded its span.
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace-id as 32 lowercase hex digits (how tracing tools show it).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent-id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex(&self.parent_id)
    }

    /// The value to send downstream from a new span of this trace: the same trace-id and flags,
    /// and a fresh random parent-id that names the new span (from the operating system's random
    /// source, through a version-4 UUID).
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_span_id(),
            ..*self
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION:02x}-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn invalid(why: &str) -> Error {
    Error::InvalidInput(format!(
        "not a W3C traceparent (`00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`, lowercase): {why}"
    ))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some((hex_digit(two[0])? << 4) | hex_digit(two[1])?)
}

fn hex_array<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Eight random bytes, not all zero: the random bytes of a version-4 UUID (bytes 6 and 8 carry
/// its version and variant bits, so they are left out).
fn random_span_id() -> [u8; 8] {
    loop {
        let b = uuid::Uuid::new_v4().into_bytes();
        let id = [b[0], b[1], b[2], b[3], b[4], b[5], b[7], b[9]];
        if id != [0; 8] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn reason(value: &str) -> String {
        match TraceParent::parse(value) {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("`{value}` should be invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_value_parses_and_displays_back() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(tp.parent_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(tp.trace_id()[0], 0x4b);
        assert_eq!(tp.flags(), 1);
        assert!(tp.is_sampled());
        assert_eq!(tp.to_string(), VALID);
        let unsampled: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap();
        assert!(!unsampled.is_sampled());
        // Version 00 flags other than `sampled` are kept as they came.
        let other_flags = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert_eq!(other_flags.flags(), 3);
        assert!(other_flags.to_string().ends_with("-03"));
    }

    #[test]
    fn malformed_values_are_refused_saying_why() {
        let cases = [
            ("", "2-digit version"),
            ("00", "2-digit version"),
            (
                "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "2-digit version",
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version is not",
            ),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                "55 characters",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "55 characters",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                "55 characters",
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "2-digit version",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "2-digit version",
            ),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", "dashes"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", "dashes"),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace-id is not",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
                "trace-id is not",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "parent-id is not",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                "flags are not",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-AB",
                "flags are not",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace-id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent-id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
                "55 characters",
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "shorter than 55",
            ),
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "dashes"),
        ];
        for (value, why) in cases {
            let message = reason(value);
            assert!(message.contains(why), "`{value}`: {message}");
            assert!(message.starts_with("not a W3C traceparent"), "{message}");
        }
        assert!(TraceParent::new([0; 16], [1; 8], 0).is_err());
        assert!(TraceParent::new([1; 16], [0; 8], 0).is_err());
    }

    #[test]
    fn a_higher_version_is_read_for_its_known_fields_and_written_as_00() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later";
        let tp = TraceParent::parse(future).unwrap();
        assert_eq!(tp.to_string(), VALID);
        let exact = TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09").unwrap();
        assert_eq!(exact.flags(), 1, "only the sampled flag of a newer version is kept");
        // The known fields are checked as strictly as in version 00.
        assert!(TraceParent::parse("01-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0").is_err());
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_fresh_parent_id() {
        let tp = TraceParent::parse(VALID).unwrap();
        let (a, b) = (tp.child(), tp.child());
        for c in [a, b] {
            assert_eq!((c.trace_id(), c.flags()), (tp.trace_id(), tp.flags()));
            assert_ne!(c.parent_id(), tp.parent_id());
            assert_ne!(c.parent_id(), [0; 8]);
            assert_eq!(
                TraceParent::parse(&c.to_string()).unwrap(),
                c,
                "a child displays as a valid value"
            );
        }
        assert_ne!(a.parent_id(), b.parent_id(), "every child is a span of its own");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let tp = TraceParent::parse(VALID).unwrap();
        let json = serde_json::to_value(tp).unwrap();
        assert_eq!(json, serde_json::Value::String(VALID.into()));
        assert_eq!(serde_json::from_value::<TraceParent>(json).unwrap(), tp);
        let bad = serde_json::from_str::<TraceParent>(r#""00-zz""#).unwrap_err();
        assert!(bad.to_string().contains("not a W3C traceparent"), "{bad}");
        assert!(serde_json::from_str::<TraceParent>("42").is_err());
    }
}
