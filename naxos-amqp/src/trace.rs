//! The W3C trace context of a task message, carried in its `traceparent` header.
//!
//! The header is the one the W3C trace context and OpenTelemetry's AMQP conventions use, so a
//! tool that watches the broker (a tracing plugin, a shovel into another traced system) sees
//! which trace the message belongs to. The body stays `{"executionId","taskId","attempt"}`.
//! A consumer reads the header back into the delivered [`TaskRef`]; one that is missing or
//! not a valid `traceparent` is ignored (a debug log), as the W3C rules say: the message still
//! names its task, and the worker takes the trace context from its claim anyway.

use deadpool_lapin::lapin::types::{AMQPValue, LongString};
use deadpool_lapin::lapin::BasicProperties;
use naxos_core::model::{TaskRef, TraceParent};

/// The header that carries a message's trace context.
pub(crate) const HEADER: &str = "traceparent";

/// `properties` with the header set to `traceparent`, beside the headers already there; the
/// same properties when there is none.
pub(crate) fn mark(properties: BasicProperties, traceparent: Option<TraceParent>) -> BasicProperties {
    let Some(traceparent) = traceparent else {
        return properties;
    };
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        HEADER.into(),
        AMQPValue::LongString(LongString::from(traceparent.to_string())),
    );
    properties.with_headers(headers)
}

/// The trace context in `properties`, if the header holds a valid one.
pub(crate) fn read(properties: &BasicProperties, task: &TaskRef) -> Option<TraceParent> {
    let value = properties.headers().as_ref()?.inner().get(HEADER)?;
    let text = match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    };
    let parsed = text.map(TraceParent::parse);
    match parsed {
        Some(Ok(traceparent)) => Some(traceparent),
        Some(Err(e)) => {
            tracing::debug!(%task, error = %e, "a task message's traceparent header ignored");
            None
        }
        None => {
            tracing::debug!(%task, "a task message's traceparent header is not a string; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_lapin::lapin::types::FieldTable;

    const VALUE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn task() -> TaskRef {
        TaskRef::new(naxos_core::uuid::Uuid::nil(), "t", 1)
    }

    fn with(value: AMQPValue) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(HEADER.into(), value);
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn what_mark_writes_reads_back_beside_the_version() {
        let tp = TraceParent::parse(VALUE).unwrap();
        let marked = mark(crate::version::mark(BasicProperties::default(), 1), Some(tp));
        assert_eq!(read(&marked, &task()), Some(tp));
        assert_eq!(crate::version::read(&marked, 1), crate::version::Version::Known);
        let headers = marked.headers().clone().unwrap();
        assert_eq!(
            headers.inner().get(HEADER),
            Some(&AMQPValue::LongString(LongString::from(VALUE)))
        );
    }

    #[test]
    fn no_trace_context_writes_no_header() {
        let plain = mark(crate::version::mark(BasicProperties::default(), 1), None);
        assert!(!plain.headers().clone().unwrap().inner().contains_key(HEADER));
        assert_eq!(read(&plain, &task()), None);
        assert_eq!(read(&BasicProperties::default(), &task()), None);
    }

    #[test]
    fn an_invalid_header_is_ignored() {
        assert!(read(&with(AMQPValue::ShortString(VALUE.into())), &task()).is_some());
        assert_eq!(
            read(&with(AMQPValue::LongString(LongString::from("00-zz"))), &task()),
            None
        );
        assert_eq!(read(&with(AMQPValue::LongUInt(7)), &task()), None);
    }
}
