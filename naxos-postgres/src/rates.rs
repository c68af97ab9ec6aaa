//! Rate-limit windows (naxos-core's `state/rate.rs`) on PostgreSQL: one row per scope in
//! `naxos_rate_limits` (migration 0016), locked by the claim that decides by it — after its
//! execution's row lock, before a concurrency scope's advisory lock: the one order.

use chrono::{DateTime, Utc};
use naxos_core::state::RateWindow;
use naxos_core::Result;
use sqlx::{PgConnection, PgPool};

use crate::error::db;

/// The window of `scope`, its row locked until the end of the transaction (created empty the
/// first time).
pub(crate) async fn lock(conn: &mut PgConnection, scope: &str) -> Result<RateWindow> {
    sqlx::query("INSERT INTO naxos_rate_limits (scope) VALUES ($1) ON CONFLICT (scope) DO NOTHING")
        .bind(scope)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let (starts, booked_until, pending): (Vec<DateTime<Utc>>, Option<DateTime<Utc>>, i32) =
        sqlx::query_as("SELECT starts, booked_until, pending FROM naxos_rate_limits WHERE scope = $1 FOR UPDATE")
            .bind(scope)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
    Ok(RateWindow {
        starts: starts.into(),
        booked_until,
        pending: u32::try_from(pending).unwrap_or_default(),
    })
}

/// Writes the window of `scope` (its row locked by [`lock`]).
pub(crate) async fn save(conn: &mut PgConnection, scope: &str, window: &RateWindow) -> Result<()> {
    let starts: Vec<_> = window.starts.iter().copied().collect();
    sqlx::query("UPDATE naxos_rate_limits SET starts = $2, booked_until = $3, pending = $4 WHERE scope = $1")
        .bind(scope)
        .bind(starts)
        .bind(window.booked_until)
        .bind(i32::try_from(window.pending).unwrap_or(i32::MAX))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Gives back one booked turn of each of `scopes` ([`RateWindow::release`]), after the commit
/// of the transition that released them: one statement each, locking only that row.
pub(crate) async fn release(pool: &PgPool, scopes: Vec<String>) -> Result<()> {
    for scope in scopes {
        sqlx::query(
            "UPDATE naxos_rate_limits SET pending = greatest(pending - 1, 0),
                    booked_until = CASE WHEN pending <= 1 THEN NULL ELSE booked_until END
             WHERE scope = $1",
        )
        .bind(scope)
        .execute(pool)
        .await
        .map_err(db)?;
    }
    Ok(())
}
