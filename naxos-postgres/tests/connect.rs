//! Connecting to a PostgreSQL that is not there fails at once, naming where it looked and why.
//! No service needed: a loopback port that nothing listens on.

use std::time::{Duration, Instant};

use naxos_postgres::{ConnectError, PgStore};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn connecting_to_a_closed_port_names_the_host_the_port_and_the_refusal_at_once() {
    let port = closed_port();
    let started = Instant::now();
    let error = PgStore::connect(&format!("postgres://naxos@127.0.0.1:{port}/naxos"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    println!("{elapsed:?}: {error}");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(error.is_transient(), "a server that is down may come up: {message}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

/// A server that answers no: an unknown user, then an unknown database. Both are permanent (a
/// retry gets the same answer) and say which. Against the test PostgreSQL; skipped without it.
#[tokio::test]
async fn a_refusal_by_the_server_is_permanent_and_names_the_user_or_the_database() {
    let Some(url) = naxos_core::testkit::service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let (base, _) = url.rsplit_once('/').unwrap();
    let stranger = base.replacen("postgres@", "nobody_here@", 1);
    let error = PgStore::connect(&format!("{stranger}/postgres")).await.unwrap_err();
    let message = error.to_string();
    assert!(!error.is_transient(), "{message}");
    assert!(
        message.contains("user `nobody_here`") && message.contains("authentication failed"),
        "{message}"
    );
    let naxos_core::Error::Backend { cause, .. } = &error else {
        panic!("{error:?}")
    };
    let cause = cause
        .downcast_ref::<ConnectError>()
        .expect("the cause is a ConnectError");
    assert!(matches!(cause.source, naxos_postgres::sqlx::Error::Database(_)));

    let error = PgStore::connect(&format!("{base}/no_such_database")).await.unwrap_err();
    let message = error.to_string();
    assert!(!error.is_transient(), "{message}");
    assert!(
        message.contains("database `no_such_database`") && message.contains("no such database"),
        "{message}"
    );
}
