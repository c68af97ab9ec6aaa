//! sqlx errors as naxos errors: what a retry may fix is transient, the rest permanent.

use naxos_core::Error;

/// SQLSTATEs worth retrying: connection trouble (class 08), serialization failure, deadlock,
/// server shutting down or starting, too many connections, a statement past its
/// `statement_timeout` (57014), a session idle in a transaction too long (25P03).
fn transient_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "57014" | "25P03"
        )
}

/// Maps a driver error.
pub(crate) fn db(e: sqlx::Error) -> Error {
    let transient = match &e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| transient_code(&c)),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        _ => false,
    };
    if transient {
        Error::transient(e)
    } else {
        Error::permanent(e)
    }
}

/// True when a transaction failed only because it raced another (serialization failure or
/// deadlock): running it again is the fix.
pub(crate) fn is_race(e: &Error) -> bool {
    let Error::Backend { cause, .. } = e else {
        return false;
    };
    match cause.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(d)) => d.code().is_some_and(|c| c == "40001" || c == "40P01"),
        _ => false,
    }
}

/// A value in the database that naxos could not have written.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::permanent(format!("unexpected data in the naxos tables: {what}"))
}
