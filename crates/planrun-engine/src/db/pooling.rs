//! Refusing a connection pooler that shares server connections between clients
//! (PgBouncer's `pool_mode = transaction` or `statement`), before planrun changes
//! anything.
//!
//! planrun needs one server session for the whole run: the plan lock is a session
//! advisory lock, a stage outside a transaction runs statement after statement in it,
//! and the driver prepares named statements in one transaction and runs them in the
//! next. Behind transaction pooling each of those lands on whichever server
//! connection is free: the lock guards nothing, a statement fails with `prepared
//! statement "s3" does not exist`, and a session setting planrun or the plan makes
//! stays on a connection the application gets next.
//!
//! The probe needs two client connections open at once and reads only
//! `pg_backend_pid()`, in simple-query messages (no prepared statement), before any
//! setting is made: A reads its backend; B reads its own, then again in a transaction
//! it keeps open; A reads its own twice more. Directly or through a session-mode
//! pooler, each client keeps one backend for its whole life. A pooler that shares
//! them gives B the backend A just released (PgBouncer reuses the last released
//! connection first), moves B between its two reads, or moves A while B holds one;
//! a statement-mode pooler refuses B's transaction block, which PostgreSQL never
//! does. Its limit: with `server_round_robin = 1` and exactly the right idle server
//! connections, a transaction pooler can look like a session pooler to this probe;
//! the run then fails on its first lost prepared statement, and what planrun set
//! still ends with its transaction.

use postgres::{Client, SimpleQueryMessage};

use crate::error::EngineError;

/// How many times the first client asks for its backend while the second holds one.
const FIRST_CLIENT_PROBES: usize = 2;

/// Refuses when `first` and a second connection `second` (opened by the caller,
/// both fresh) do not each keep a backend of their own; `target` names the
/// connection in the message.
pub(crate) fn refuse_shared_server_connections(
    first: &mut Client,
    mut second: Client,
    target: &str,
) -> Result<(), EngineError> {
    let before = backend_pid(first, "SELECT pg_catalog.pg_backend_pid()")?;
    let beside = backend_pid(&mut second, "SELECT pg_catalog.pg_backend_pid()")?;
    let held = match backend_pid(&mut second, "BEGIN; SELECT pg_catalog.pg_backend_pid()") {
        Ok(pid) => pid,
        // PostgreSQL itself never refuses a transaction block; a statement-mode
        // pooler does ("transaction blocks not allowed in statement pooling mode"),
        // and closes the connection with it.
        Err(EngineError::Database { source, .. })
            if source.as_db_error().is_some() || source.is_closed() =>
        {
            return Err(EngineError::SharedServerConnections {
                target: target.to_owned(),
                evidence: format!(
                    "a transaction block was refused: {}",
                    crate::error::error_chain(&source)
                ),
            });
        }
        Err(error) => return Err(error),
    };
    let mut seen = vec![before, beside, held];
    let mut shared = beside == before || held == before || held != beside;
    for _ in 0..FIRST_CLIENT_PROBES {
        let again = backend_pid(first, "SELECT pg_catalog.pg_backend_pid()")?;
        shared |= again != before;
        seen.push(again);
    }
    // Closing `second` ends its transaction; nothing of it was written.
    drop(second);
    if shared {
        return Err(EngineError::SharedServerConnections {
            target: target.to_owned(),
            evidence: format!(
                "backend pids seen: {}",
                seen.iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(())
}

/// The backend pid the last statement of `sql` returns.
fn backend_pid(client: &mut Client, sql: &str) -> Result<i32, EngineError> {
    let messages = client.simple_query(sql).map_err(EngineError::database(
        "cannot check for a transaction-mode pooler",
    ))?;
    let pid = messages.iter().rev().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).and_then(|pid| pid.parse().ok()),
        _ => None,
    });
    // A server always answers the query with one row; a pooler could not change that.
    Ok(pid.unwrap_or(-1))
}
