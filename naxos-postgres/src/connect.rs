//! The first connection, made alone before the pool: when PostgreSQL cannot be reached or
//! refuses this node, the error names where it looked and why, at once, instead of a pool
//! timing out later with no more than "pool timed out".

use std::fmt;
use std::io::ErrorKind;
use std::time::Duration;

use naxos_core::backend::within;
use naxos_core::Error;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// A failed connection to PostgreSQL: where to (host and port, or socket), as whom, and why.
/// [`PgStore::connect`](crate::PgStore::connect) returns it as the cause of a
/// [`naxos_core::Error::Backend`]: transient when the server may yet come up (refused, no
/// answer, network trouble), permanent when it answered no (authentication failed, no such
/// database).
#[derive(Debug)]
pub struct ConnectError {
    /// `host:port`, or the Unix socket's path.
    pub target: String,
    /// The database asked for.
    pub database: String,
    /// The user connecting.
    pub user: String,
    /// The driver's error.
    pub source: sqlx::Error,
}

impl ConnectError {
    /// What went wrong, in words an operator can act on.
    fn reason(&self) -> String {
        match &self.source {
            sqlx::Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused => {
                "connection refused (is PostgreSQL running, and listening there?)".into()
            }
            sqlx::Error::Database(d) => match d.code().as_deref() {
                Some("28P01" | "28000") => format!("authentication failed: {}", d.message()),
                Some("3D000") => format!("no such database: {}", d.message()),
                _ => d.message().to_string(),
            },
            other => other.to_string(),
        }
    }

    /// True when the server refused this node for good: trying again will not help.
    fn is_permanent(&self) -> bool {
        match &self.source {
            // Class 08 (connection exception) and 57P (server shutting down or starting) pass.
            sqlx::Error::Database(d) => !d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            sqlx::Error::Configuration(_) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect to PostgreSQL at {} (database `{}`, user `{}`): {}",
            self.target,
            self.database,
            self.user,
            self.reason()
        )
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Opens one connection as `options` say, waiting at most `deadline` for the server (past it,
/// a transient error naming where it looked).
pub(crate) async fn first_connection(options: &PgConnectOptions, deadline: Duration) -> Result<PgConnection, Error> {
    let target = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username().to_string();
    let database = options.get_database().unwrap_or(&user).to_string();
    let what = format!("a connection at {target} (database `{database}`, user `{user}`)");
    within(deadline, "PostgreSQL", &what, async {
        options.connect().await.map_err(|source| {
            let error = ConnectError {
                target,
                database,
                user,
                source,
            };
            if error.is_permanent() {
                Error::permanent(error)
            } else {
                Error::transient(error)
            }
        })
    })
    .await
}
