//! Broker errors as naxos errors. Almost everything a broker does wrong is worth a retry.

use naxos_core::Error;

/// A connection, channel or protocol error: transient (reconnecting may fix it).
pub(crate) fn amqp(e: deadpool_lapin::lapin::Error) -> Error {
    Error::transient(e)
}

/// No connection could be had from the pool.
pub(crate) fn pool(e: deadpool_lapin::PoolError) -> Error {
    Error::transient(e)
}

/// Runs `call` with a deadline: past `limit`, it fails as a transient error naming `what`.
pub(crate) async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    call: impl std::future::Future<Output = naxos_core::Result<T>>,
) -> naxos_core::Result<T> {
    naxos_core::backend::within(limit, "RabbitMQ", what, call).await
}
