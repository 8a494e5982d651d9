//! A lock attempt that meets autovacuum on a table, within the stage's budget.
//!
//! Autovacuum gives way to a lock request that has waited `deadlock_timeout` (the
//! server's deadlock check cancels it), but a `lock_timeout` shorter than that gives
//! up first, every attempt: at a million rows the batches leave enough dead rows for
//! autovacuum to hold the tables for minutes, and the stage's attempts ran out. So
//! against autovacuum an attempt may wait `deadlock_timeout` + 0.5 s, but only where
//! the budget allows a wait that long: while planrun waits, the application's queries
//! that conflict with the lock queue behind it (readers waited 1.0 s against
//! `blocks_reads = "200ms"`). Where it does not, planrun cancels the worker when its
//! role may (a superuser's; autovacuum comes back later by itself), and otherwise
//! makes an ordinary attempt within the budget, retried on the stage's schedule.

use postgres::Transaction;

/// The margin over `deadlock_timeout` for the server's deadlock check to run.
const OUTWAIT_MARGIN_MS: u64 = 500;

/// What one lock attempt does against autovacuum holding the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgainstAutovacuum {
    /// Wait this long: the server cancels the worker after `deadlock_timeout`.
    Outwait { lock_timeout_ms: u64 },
    /// Cancel the worker, then attempt with the `lock_timeout` set.
    Cancel,
    /// An ordinary attempt with the `lock_timeout` set (within the budget).
    Attempt,
}

/// Decides for a `deadlock_timeout` of `deadlock_ms`, a budget for the lock's mode
/// of `budget_ms` (none: no budget) and whether planrun's role may cancel the worker.
pub(crate) fn against_autovacuum(
    deadlock_ms: u64,
    budget_ms: Option<u64>,
    may_cancel: bool,
) -> AgainstAutovacuum {
    let outwait = deadlock_ms + OUTWAIT_MARGIN_MS;
    match budget_ms {
        Some(budget) if outwait > budget && may_cancel => AgainstAutovacuum::Cancel,
        Some(budget) if outwait > budget => AgainstAutovacuum::Attempt,
        _ => AgainstAutovacuum::Outwait {
            lock_timeout_ms: outwait,
        },
    }
}

/// The autovacuum workers (not those preventing wraparound, which the server does
/// not cancel either) that hold a lock on `table` now.
const WORKERS_ON: &str = "SELECT a.pid FROM pg_catalog.pg_locks l
     JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.relation = pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid
       AND a.backend_type = 'autovacuum worker'
       AND a.query NOT LIKE '%to prevent wraparound%'";

/// Whether an autovacuum worker holds a lock on `table` now.
pub(crate) fn holds(tx: &mut Transaction<'_>, table: &str) -> Result<bool, postgres::Error> {
    Ok(!tx.query(WORKERS_ON, &[&table])?.is_empty())
}

/// Takes `lock_table` (a `LOCK TABLE` statement on `table`) while autovacuum holds
/// the table, waiting no longer than `budget_ms`.
pub(crate) fn lock_despite_autovacuum(
    tx: &mut Transaction<'_>,
    table: &str,
    lock_table: &str,
    budget_ms: Option<u64>,
) -> Result<(), postgres::Error> {
    let deadlock_ms = crate::stage::stage_locks::setting_ms(tx, "deadlock_timeout")?;
    let may_cancel: bool = tx
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )?
        .get(0);
    match against_autovacuum(deadlock_ms, budget_ms, may_cancel) {
        AgainstAutovacuum::Outwait { lock_timeout_ms } => {
            let saved = crate::stage::stage_locks::setting_ms(tx, "lock_timeout")?;
            crate::stage::stage_locks::set_local_lock_timeout(tx, lock_timeout_ms)?;
            tx.batch_execute(lock_table)?;
            crate::stage::stage_locks::set_local_lock_timeout(tx, saved)
        }
        AgainstAutovacuum::Cancel => {
            tx.query(
                &format!("SELECT pg_catalog.pg_cancel_backend(pid) FROM ({WORKERS_ON}) workers"),
                &[&table],
            )?;
            tx.batch_execute(lock_table)
        }
        AgainstAutovacuum::Attempt => tx.batch_execute(lock_table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autovacuum_is_outwaited_only_within_the_budget() {
        use AgainstAutovacuum::*;
        let outwait = Outwait {
            lock_timeout_ms: 1500,
        };
        assert_eq!(against_autovacuum(1000, None, false), outwait);
        assert_eq!(against_autovacuum(1000, Some(1500), false), outwait);
        assert_eq!(against_autovacuum(1000, Some(30_000), true), outwait);
        assert_eq!(against_autovacuum(1000, Some(200), true), Cancel);
        assert_eq!(against_autovacuum(1000, Some(1499), false), Attempt);
    }
}
