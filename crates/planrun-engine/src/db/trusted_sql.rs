//! planrun's own SQL, out of reach of roles that can create objects in the database:
//! a search_path no other role can write to, and a ledger no other role owns.
//!
//! An unqualified name resolves through `search_path`, and a function or operator
//! resolves to the best match among every one visible there. With PostgreSQL's default
//! `"$user", public`, a role that may create in `public` (or in a schema named after
//! the role planrun runs as) can add, say, an `=(oid, regclass)` that fits
//! `attrelid = to_regclass($1)` better than pg_catalog's `=(oid, oid)`: planrun would
//! run it with its own privileges, often a superuser's (CVE-2018-1058). pg_dump sets
//! `search_path = ''` for its whole session; planrun's main session also runs the
//! plan's SQL, which must keep the user's search_path, so planrun switches to
//! [`TRUSTED_SEARCH_PATH`] around its own statements ([`TrustedSearchPath`]), always
//! for a transaction only ([`trust_for_transaction`]): nothing of it is left on the
//! session, which a pooler may hand to the application next.
//!
//! Statements that resolve a name the plan gave (a table to lock, an index a step
//! builds, a transform's tables) cannot switch: they keep the user's search_path and
//! name every function, operator and catalog with `pg_catalog.` instead.
//!
//! A schema-qualified name is no defence when someone else owns the schema: another
//! role that creates `planrun` before planrun does owns its tables' triggers and can
//! make `stage_results` a view over a function of hers. So every ledger statement
//! starts with [`own_ledger`], which refuses a `planrun` schema, or anything in it,
//! that the role running planrun does not own.

use std::ops::{Deref, DerefMut};

use postgres::GenericClient;

use crate::error::EngineError;

/// Only pg_catalog, then the session's own temporary schema: no other role can create
/// in either. `pg_temp` is named last so that even a temporary table cannot shadow a
/// catalog (functions and operators are never looked up in it).
pub(crate) const TRUSTED_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// A connection with [`TRUSTED_SEARCH_PATH`] until dropped; then the connection's
/// own search_path comes back, so the plan's next statement sees what it saw before.
///
/// The path is set for the transaction only (`set_config(..., true)`), never for the
/// session: a session setting outlives planrun's transaction, and on a server
/// connection a pooler hands to the application next it would hide the application's
/// tables (`relation "chapters" does not exist`). Inside the caller's transaction the
/// guard puts the path back, for the rest of that transaction, when dropped, and a
/// rollback does so by itself (the one case the restore cannot cover: a transaction the
/// guarded work left aborted). Outside one, a local setting would end with the
/// statement that makes it, so the guard opens a transaction of its own and commits it
/// when dropped: the guarded statements commit together, and the path ends with them.
pub(crate) struct TrustedSearchPath<'a, C: GenericClient> {
    conn: &'a mut C,
    /// `Some(path)` inside the caller's transaction: the path to put back. `None`: the
    /// guard's own transaction, whose end ends the setting.
    saved: Option<String>,
}

impl<'a, C: GenericClient> TrustedSearchPath<'a, C> {
    /// Switches `conn` to the trusted search_path until dropped.
    pub(crate) fn enter(conn: &'a mut C) -> Result<TrustedSearchPath<'a, C>, postgres::Error> {
        let row = conn.query_one(
            "SELECT pg_catalog.current_setting('search_path'), \
                    pg_catalog.set_config('search_path', $1, true)",
            &[&TRUSTED_SEARCH_PATH],
        )?;
        let (saved, trusted): (String, String) = (row.get(0), row.get(1));
        // Outside a transaction block the statement above was a transaction of its
        // own, and its local setting is already gone.
        let now: String = conn
            .query_one("SELECT pg_catalog.current_setting('search_path')", &[])?
            .get(0);
        if now == trusted {
            return Ok(TrustedSearchPath {
                conn,
                saved: Some(saved),
            });
        }
        conn.batch_execute(&format!(
            "BEGIN; SELECT pg_catalog.set_config('search_path', '{TRUSTED_SEARCH_PATH}', true)"
        ))?;
        Ok(TrustedSearchPath { conn, saved: None })
    }
}

impl<C: GenericClient> Deref for TrustedSearchPath<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.conn
    }
}

impl<C: GenericClient> DerefMut for TrustedSearchPath<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn
    }
}

impl<C: GenericClient> Drop for TrustedSearchPath<'_, C> {
    fn drop(&mut self) {
        // A failure here means an aborted transaction, whose rollback restores the
        // path, or a lost connection, which has no path left to restore. COMMIT of
        // the guard's own transaction, if the guarded work failed in it, rolls back.
        let _ = match &self.saved {
            Some(saved) => self
                .conn
                .execute(
                    "SELECT pg_catalog.set_config('search_path', $1, true)",
                    &[saved],
                )
                .map(drop),
            None => self.conn.batch_execute("COMMIT"),
        };
    }
}

/// Sets [`TRUSTED_SEARCH_PATH`] for the rest of the session, for connections to
/// planrun's own throwaway clusters that run planrun's own statements only (the
/// rehearsal's lock trace). Never on a session to the target: see
/// [`trust_for_transaction`].
pub(crate) fn pin_trusted_search_path<C: GenericClient>(
    conn: &mut C,
) -> Result<(), postgres::Error> {
    conn.execute(
        "SELECT pg_catalog.set_config('search_path', $1, false)",
        &[&TRUSTED_SEARCH_PATH],
    )
    .map(drop)
}

/// Sets [`TRUSTED_SEARCH_PATH`] until the end of the transaction `conn` is in, for a
/// transaction that runs planrun's own statements only (the blocker watch, a report
/// of who holds a lock, the rehearsal's look at the target).
pub(crate) fn trust_for_transaction<C: GenericClient>(conn: &mut C) -> Result<(), postgres::Error> {
    conn.execute(
        "SELECT pg_catalog.set_config('search_path', $1, true)",
        &[&TRUSTED_SEARCH_PATH],
    )
    .map(drop)
}

/// What in the `planrun` schema, the schema itself first, another role owns:
/// `(what, owner, the role planrun runs as)`. Run with the trusted search_path.
const FOREIGN_LEDGER_OBJECT: &str = "
SELECT o.what, pg_get_userbyid(o.owner)::text, current_user::text
FROM (SELECT 0 AS rank, 'schema `planrun`' AS what, n.nspowner AS owner
      FROM pg_namespace n WHERE n.nspname = 'planrun'
      UNION ALL
      SELECT 1, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view'
                               WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index'
                               ELSE 'relation' END
                || ' `planrun.' || c.relname::text || '`',
             c.relowner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'planrun') o
WHERE o.owner <> (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
ORDER BY o.rank, o.what
LIMIT 1";

/// `conn` with the trusted search_path, once it is clear that the ledger is the
/// running role's own: no `planrun` schema yet, or one that it owns with everything
/// in it. Anything else is refused before planrun reads or writes a row of it.
pub(crate) fn own_ledger<C: GenericClient>(
    conn: &mut C,
) -> Result<TrustedSearchPath<'_, C>, EngineError> {
    let mut trusted = TrustedSearchPath::enter(conn).map_err(EngineError::database(
        "cannot set planrun's own search_path",
    ))?;
    check_ledger_owner(&mut *trusted)?;
    Ok(trusted)
}

/// Refuses a `planrun` schema, or anything in it, that another role owns. `conn` must
/// have the trusted search_path: checked again right after creating the ledger, in
/// case another role created the schema between the first check and
/// `CREATE SCHEMA IF NOT EXISTS`.
pub(crate) fn check_ledger_owner<C: GenericClient>(conn: &mut C) -> Result<(), EngineError> {
    let foreign = conn
        .query_opt(FOREIGN_LEDGER_OBJECT, &[])
        .map_err(EngineError::database("cannot check who owns the ledger"))?;
    match foreign {
        Some(row) => Err(EngineError::LedgerNotOwned {
            object: row.get(0),
            owner: row.get(1),
            role: row.get(2),
        }),
        None => Ok(()),
    }
}
