//! The locks a stage runs under, and retries when the application holds a conflicting
//! one.
//!
//! A stage's declared locks (its `locks` key and what its transforms declare) are taken
//! at its start, before skip rules, preconditions, captures and steps, so that every
//! check reads the data the stage is about to change as it will stay until commit.
//! Each attempt is bounded by the stage's `lock_timeout`; an attempt that times out (or
//! loses a deadlock) is rolled back to a savepoint, which releases whatever locks it
//! got, and tried again after the schedule's delay, like GitLab's `with_lock_retries`.
//! When the attempts run out the stage fails, naming the sessions that held the lock,
//! and nothing of it runs: no code path goes on without the lock it asked for.
//!
//! The same schedule retries a statement of a SQL step (or a whole transform step) that
//! hits `lock_timeout` later in the stage, for locks no declaration can take in advance
//! (the ACCESS EXCLUSIVE of a brief `ALTER TABLE` at the end): a short `lock_timeout`
//! keeps the application's queries from queueing long behind the waiting DDL.

use std::time::{Duration, Instant};

use planrun_plan::{LockRetries, TableLock};
use postgres::{GenericClient, Transaction};

use crate::error::EngineError;
use crate::stage::context::StageContext;
use crate::stage::stage_failure::{explain_timeout, plain_error, stage_error};
use planrun_report::HeldLock;

/// SQLSTATEs after which the same work may succeed on another attempt.
const LOCK_NOT_AVAILABLE: &str = "55P03";
const DEADLOCK_DETECTED: &str = "40P01";

/// Whether `error` is a lock that was not had in time, or a deadlock.
pub(crate) fn is_lock_failure(error: &postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| [LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED].contains(&code.code()))
}

/// For [`with_lock_retries`] on work whose error is PostgreSQL's.
pub(crate) fn database_error(error: &postgres::Error) -> Option<&postgres::Error> {
    Some(error)
}

/// Runs `attempt` in a savepoint of `conn` until it succeeds, fails otherwise than on a
/// lock, or `retries` runs out; `on_retry` hears of each failed attempt before the pause.
pub(crate) fn with_lock_retries<C, T, E>(
    conn: &mut C,
    retries: &LockRetries,
    lock_failure: impl Fn(&E) -> Option<&postgres::Error>,
    mut on_retry: impl FnMut(u32, &postgres::Error, Duration),
    mut attempt: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    C: GenericClient,
    E: From<postgres::Error>,
{
    let mut number = 1;
    loop {
        let mut savepoint = conn.transaction()?;
        let error = match attempt(&mut savepoint) {
            Ok(value) => {
                savepoint.commit()?;
                return Ok(value);
            }
            Err(error) => error,
        };
        // When the rollback fails too (the connection is gone), the attempt's own
        // error says more about why.
        if savepoint.rollback().is_err() {
            return Err(error);
        }
        let retryable = lock_failure(&error).filter(|e| is_lock_failure(e));
        match retryable {
            Some(lock_error) if number < retries.attempts => {
                let delay = retries.delay_after(number);
                on_retry(number, lock_error, delay);
                if !crate::db::interrupt::sleep(delay) {
                    // A signal: no more attempts; the stage rolls back.
                    return Err(error);
                }
                number += 1;
            }
            _ => return Err(error),
        }
    }
}

/// Takes the stage's declared locks in its transaction; `false` (and the stage
/// marked failed, naming who held them) when the attempts ran out.
pub(crate) fn take_stage_locks<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
) -> Result<bool, EngineError> {
    let stage = cx.stage;
    let locks = &stage.all_locks;
    if locks.is_empty() {
        return Ok(true);
    }
    let started = Instant::now();
    let (result, attempts) =
        cx.with_lock_retries(conn, ("locks", &stage.lock_retries), database_error, |tx| {
            cap_wait_at_budget(tx, stage.lock_budget, locks)?;
            lock_tables(tx, locks, stage.lock_budget)
        });
    match result {
        Ok(resolved) => {
            hold(cx, resolved, attempts, started);
            Ok(true)
        }
        Err(error) if is_lock_failure(&error) => {
            let mut failure = stage_error(&error, Some("locks".into()), None, "", 0);
            let wanted: Vec<String> = locks
                .iter()
                .map(|lock| format!("{} {}", lock.mode, lock.table))
                .collect();
            failure.message = format!(
                "could not take the stage's locks ({}) in {} attempt{} over {:.1} s: {}",
                wanted.join(", "),
                attempts,
                if attempts == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64(),
                failure.message
            );
            explain_timeout(&mut failure, cx);
            cx.fail(failure);
            Ok(false)
        }
        Err(error) if error.as_db_error().is_some() => {
            cx.fail(stage_error(&error, Some("locks".into()), None, "", 0));
            Ok(false)
        }
        Err(error) => {
            cx.fail(plain_error(
                Some("locks"),
                format!("cannot take the stage's locks: {error}"),
            ));
            Ok(false)
        }
    }
}

/// The stage's locks, taken after `attempts` since `started`, as the report and the
/// observer hear of them; `resolved` is the server's name of each table (`None` for
/// one that does not exist).
fn hold(
    cx: &mut StageContext<'_, '_>,
    resolved: Vec<Option<String>>,
    attempts: u32,
    started: Instant,
) {
    let locks = &cx.stage.all_locks;
    let taken: Vec<String> = locks
        .iter()
        .zip(&resolved)
        .filter_map(|(lock, table)| {
            let table = table.as_ref()?;
            Some(format!("LOCK TABLE {table} IN {} MODE", lock.mode.sql()))
        })
        .collect();
    cx.run
        .observer
        .statement_finished(&taken.join("; "), started.elapsed());
    let waited_ms = started.elapsed().as_millis() as u64;
    for (lock, table) in locks.iter().zip(resolved) {
        let Some(table) = table else {
            cx.report.absent_tables.push(lock.table.clone());
            continue;
        };
        cx.report.locks.push(HeldLock {
            table,
            mode: lock.mode.sql().to_owned(),
            declared_by: lock.declared_by.clone(),
            attempts,
            waited_ms,
        });
    }
}

/// `LOCK TABLE` for each lock in order; the server's spelling of each table, or `None`
/// for one that does not exist. The server resolves and quotes the name, so a name is
/// never pasted into SQL as written; it resolves with the plan's search_path, so the
/// function that resolves it is named with its schema.
pub(crate) fn lock_tables(
    tx: &mut Transaction<'_>,
    locks: &[TableLock],
    budget: Option<&planrun_plan::LockBudget>,
) -> Result<Vec<Option<String>>, postgres::Error> {
    let mut resolved = Vec::with_capacity(locks.len());
    for lock in locks {
        // Every operator schema-qualified: the application's roles may own operators
        // on the search path (tests/search_path.rs).
        let row = tx.query_opt(
            "SELECT c.oid::pg_catalog.regclass::pg_catalog.text, c.relkind::pg_catalog.text \
             FROM pg_catalog.pg_class c \
             WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[&lock.table],
        )?;
        let (table, kind): (Option<String>, Option<String>) =
            row.map_or((None, None), |row| (row.get(0), row.get(1)));
        // `LOCK TABLE` takes tables, views and foreign tables; an index or a sequence a
        // revert's SQL names is locked by its statement, under its table's lock.
        let lockable = kind
            .as_deref()
            .is_none_or(|kind| matches!(kind, "r" | "p" | "v" | "f"));
        if !lockable && lock.declared_by == crate::prepared::REVERT_SQL {
            resolved.push(None);
            continue;
        }
        if let Some(table) = &table {
            let lock_table = format!("LOCK TABLE {table} IN {} MODE", lock.mode.sql());
            if crate::stage::autovacuum::holds(tx, table)? {
                let budget_ms = budget_for(budget, lock).map(planrun_plan::PgDuration::millis);
                crate::stage::autovacuum::lock_despite_autovacuum(
                    tx,
                    table,
                    &lock_table,
                    budget_ms,
                )?;
            } else {
                tx.batch_execute(&lock_table)?;
            }
        }
        resolved.push(table);
    }
    Ok(resolved)
}

/// A millisecond setting as `pg_settings` gives it (0 for none).
pub(crate) fn setting_ms<C: GenericClient>(
    conn: &mut C,
    name: &str,
) -> Result<u64, postgres::Error> {
    let value: String = conn
        .query_one(
            "SELECT setting FROM pg_catalog.pg_settings WHERE name = $1",
            &[&name],
        )?
        .get(0);
    Ok(value.parse().unwrap_or(0))
}

/// `lock_timeout` for the rest of the transaction; 0 waits for ever.
pub(crate) fn set_local_lock_timeout(
    tx: &mut Transaction<'_>,
    ms: u64,
) -> Result<(), postgres::Error> {
    tx.execute(
        "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
        &[&format!("{ms}ms")],
    )
    .map(drop)
}

/// The longest the budget lets planrun wait for `lock`: `blocks_reads` for a mode
/// that blocks reads (or `blocks_writes` if that is all there is), `blocks_writes`
/// for one that blocks writes; `None` for a mode that blocks neither.
fn budget_for<'b>(
    budget: Option<&'b planrun_plan::LockBudget>,
    lock: &TableLock,
) -> Option<&'b planrun_plan::PgDuration> {
    let budget = budget?;
    if lock.mode.blocks_reads() {
        budget
            .blocks_reads
            .as_ref()
            .or(budget.blocks_writes.as_ref())
    } else if lock.mode.blocks_writes() {
        budget.blocks_writes.as_ref()
    } else {
        None
    }
}

/// While planrun waits for a lock, the application's queries that conflict with it
/// queue behind the request: so no attempt waits longer than the budget allows for
/// the mode asked (`blocks_reads` for ACCESS EXCLUSIVE, `blocks_writes` for SHARE and
/// stronger), when that is shorter than `lock_timeout`. The retry schedule then goes on
/// as for any lock timeout.
fn cap_wait_at_budget(
    tx: &mut Transaction<'_>,
    budget: Option<&planrun_plan::LockBudget>,
    locks: &[TableLock],
) -> Result<(), postgres::Error> {
    let Some(budget) = budget else {
        return Ok(());
    };
    let cap = locks
        .iter()
        .filter_map(|lock| budget_for(Some(budget), lock))
        .map(planrun_plan::PgDuration::millis)
        .min();
    let Some(cap) = cap else {
        return Ok(());
    };
    let current = setting_ms(tx, "lock_timeout")?;
    if current == 0 || cap < current {
        set_local_lock_timeout(tx, cap.max(1))?;
    }
    Ok(())
}

/// Caps `lock_timeout` for the rest of the transaction (`local`) or of the session at
/// the shortest wait the budget allows (`blocks_reads` or `blocks_writes`): for a
/// transaction that holds locks blocking writes and asks for ones blocking reads, such
/// as the cutover, and for what runs after a stage's commit.
pub(crate) fn cap_lock_timeout<C: GenericClient>(
    conn: &mut C,
    budget: Option<&planrun_plan::LockBudget>,
    local: bool,
) -> Result<(), postgres::Error> {
    let Some(budget) = budget else {
        return Ok(());
    };
    let cap = [&budget.blocks_reads, &budget.blocks_writes]
        .into_iter()
        .flatten()
        .map(planrun_plan::PgDuration::millis)
        .min();
    let Some(cap) = cap else {
        return Ok(());
    };
    let current = setting_ms(conn, "lock_timeout")?;
    if current == 0 || cap < current {
        conn.execute(
            "SELECT pg_catalog.set_config('lock_timeout', $1, $2)",
            &[&format!("{}ms", cap.max(1)), &local],
        )?;
    }
    Ok(())
}
