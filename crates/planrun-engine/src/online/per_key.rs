//! A batched stage's checks made incremental, so that the cutover's cost follows the
//! changes since the last catch-up pass, not the table.
//!
//! A verification placed after the batched step may have a per-key form
//! (`per_key_sql`: the keys in `$1`, a row for each key on which the check fails) and
//! name the tables besides the transform's sources whose changes make a key checked
//! again (`per_key_watch`). For such checks the stage verifies in two parts:
//!
//! 1. outside the cutover's locks, after the last catch-up pass, one `REPEATABLE
//!    READ` transaction checks every key of the sources and the watched tables on one
//!    snapshot, except the keys with a change still to redo, and reads the captures no
//!    check at the cutover compares with. On that snapshot each other key's rows are
//!    the transform's output for its source row, so a failure there is a real one and
//!    fails the stage;
//! 2. under the cutover's locks, only the keys that may differ from the snapshot are
//!    checked again: the keys redone since (each redo records its keys) and the keys
//!    of the watched tables' rows written since by anyone but planrun (a trigger, as
//!    for the sources, recording under [`change_capture::recheck_id`]). The watched
//!    tables are locked `SHARE` first, so no write slips in after the check.
//!
//! Per key the check is at least as strong as its whole-table form: equal totals
//! follow from equal parts, as long as every key holding a part is checked, which
//! the union of the tables' keys in 1 and the triggers in 2 ensure. A check without
//! a per-key form runs whole under the locks, as before, and `planrun check` says so.

use std::collections::BTreeSet;

use planrun_plan::{Check, Expectation};
use planrun_report::{CheckResult, StageStatus};
use planrun_transform::SourceTable;
use postgres::GenericClient;

use crate::db::connect::redact;
use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::online::batched::Work;
use crate::online::follow_up;
use crate::online::RedoTotals;
use crate::prepared::{BatchedStep, PreparedStage};
use crate::stage::atomic::set_timeouts;
use crate::stage::context::StageContext;
use crate::stage::gate::take_captures_where;

/// Keys given to one run of a per-key query.
const KEYS_PER_QUERY: usize = 20_000;
/// Failing keys shown per check.
const SHOWN_FAILURES: usize = 10;

/// The verifications run per key at the cutover: those placed after the batched
/// step that have a per-key form.
pub(crate) fn per_key_checks<'s>(stage: &'s PreparedStage<'_>, step_name: &str) -> Vec<&'s Check> {
    stage
        .verify
        .iter()
        .filter(|check| check.per_key.is_some() && is_after(check, step_name))
        .collect()
}

/// Whether `check` runs per key in a batched stage whose batched step is `step_name`.
pub(crate) fn runs_per_key(check: &Check, step_name: &str) -> bool {
    check.per_key.is_some() && is_after(check, step_name)
}

fn is_after(check: &Check, step_name: &str) -> bool {
    check
        .after_step
        .as_ref()
        .is_some_and(|(after, _)| after == step_name)
}

/// The tables the per-key checks watch besides the sources, each once.
pub(crate) fn watched_tables(stage: &PreparedStage<'_>, step_name: &str) -> Vec<SourceTable> {
    let mut tables: Vec<SourceTable> = Vec::new();
    for check in per_key_checks(stage, step_name) {
        for (watched, _) in check.per_key.iter().flat_map(|per_key| &per_key.watch) {
            let table = SourceTable::new(watched.table.clone(), watched.key.clone());
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
    }
    tables
}

/// Whether a capture must be read under the cutover's locks: one of its names is
/// compared with by a check that runs whole there, or it is computed (cheap, and
/// from values that may be read there).
pub(crate) fn read_at_cutover(
    stage: &PreparedStage<'_>,
    step_name: &str,
    capture: &planrun_plan::Capture,
) -> bool {
    if capture.expr.is_some() || per_key_checks(stage, step_name).is_empty() {
        return true;
    }
    let names = capture.names.iter().map(|(name, _)| name.as_str());
    let compared: BTreeSet<&str> = stage
        .verify
        .iter()
        .filter(|check| !runs_per_key(check, step_name))
        .flat_map(|check| check.expect.captures())
        .collect();
    names.into_iter().any(|name| compared.contains(name))
}

/// Which keys a pass outside the cutover's locks checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outside {
    /// Part 1: every key of the sources and the watched tables.
    EveryKey,
    /// A later pass: only the keys redone or written since the last one.
    Changed,
}

/// Part 1 (`EveryKey`): every key checked on one snapshot outside the cutover's
/// locks, and the captures no check at the cutover needs read on it; or a later
/// pass (`Changed`): the keys changed since the last pass checked again, still
/// outside the locks, so that the cutover is left only what changes while it waits.
/// The steps made key by key redo the same keys (`follow_up.rs`). How many keys it
/// checked; `None` (the stage marked failed) when a check fails or a query cannot run.
pub(crate) fn verify_outside_locks<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    totals: &mut RedoTotals,
    which: Outside,
) -> Result<Option<u64>, EngineError> {
    let stage = cx.stage;
    let checks = per_key_checks(stage, work.step_name);
    if checks.is_empty() {
        return Ok(Some(0));
    }
    let plan = cx.run.plan_name().to_owned();
    cx.run.observer.progress().phase(&format!(
        "checking {} on a snapshot, outside the cutover's locks ({} checks)",
        if which == Outside::EveryKey {
            "every key"
        } else {
            "the keys changed since"
        },
        checks.len()
    ));
    let mut tx = conn
        .transaction()
        .and_then(|mut tx| {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
            Ok(tx)
        })
        .map_err(EngineError::database(
            "cannot begin the checks outside the locks",
        ))?;
    set_timeouts(&mut tx, stage, true)?;
    if which == Outside::EveryKey
        && !take_captures_where(&mut tx, cx, |capture| {
            !read_at_cutover(stage, work.step_name, capture)
        })
    {
        let _ = tx.rollback();
        return Ok(None);
    }
    let (keys, rechecks) = keys_to_check(&mut tx, cx, (batched, work), which, &plan)
        .map_err(EngineError::database("cannot read the keys to check"))?;
    let outcome = run_per_key(&mut tx, &checks, &keys);
    if outcome.iter().any(|result| !result.passed) {
        let _ = tx.rollback();
        report_failures(cx, outcome);
        return Ok(None);
    }
    let (follow_ups, before) = (&totals.follow_ups, &mut totals.before_cutover);
    if let Err(error) = follow_up::redo_keys(&mut tx, cx, follow_ups, &rechecks.keys, before) {
        let _ = tx.rollback();
        cx.fail(*error);
        return Ok(None);
    }
    change_capture::forget(&mut tx, &rechecks.ids)
        .map_err(EngineError::database("cannot forget the keys checked"))?;
    tx.commit().map_err(EngineError::database(
        "cannot commit the checks outside the locks",
    ))?;
    cx.run.observer.note(&format!(
        "{}: {} checks passed for {} keys outside the cutover's locks",
        stage.id,
        checks.len(),
        keys.len()
    ));
    Ok(Some(keys.len() as u64))
}

/// The keys a pass checks (those with a change still to redo left out: they are
/// checked once redone), and the recheck list it takes.
fn keys_to_check<C: GenericClient>(
    tx: &mut C,
    cx: &StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    which: Outside,
    plan: &str,
) -> Result<(Vec<i64>, change_capture::Backlog), postgres::Error> {
    let stage = cx.stage;
    let pending: BTreeSet<i64> = change_capture::take(tx, plan, &stage.id, i64::MAX)?
        .keys
        .into_iter()
        .collect();
    let rechecks =
        change_capture::take(tx, plan, &change_capture::recheck_id(&stage.id), i64::MAX)?;
    let mut keys: BTreeSet<i64> = BTreeSet::new();
    if which == Outside::EveryKey {
        let mut tables = batched.sources.clone();
        tables.extend(watched_tables(stage, work.step_name));
        for table in &tables {
            keys.extend(keys_of(tx, table)?);
        }
    } else {
        keys.extend(rechecks.keys.iter().copied());
    }
    Ok((keys.difference(&pending).copied().collect(), rechecks))
}

/// Part 2, under the cutover's locks: the watched tables locked `SHARE`, then the
/// keys redone or written since part 1 checked again; those keys, for the steps
/// made key by key (`follow_up.rs`). `Err` is the database's (a lock not had in
/// time among them); `Ok(None)` when a check fails.
pub(crate) fn verify_changed_keys<C: GenericClient>(
    tx: &mut C,
    cx: &mut StageContext<'_, '_>,
    work: &Work<'_>,
    (checked_outside, rechecked): (u64, u64),
) -> Result<Option<Vec<i64>>, postgres::Error> {
    let stage = cx.stage;
    let checks = per_key_checks(stage, work.step_name);
    if checks.is_empty() {
        return Ok(Some(Vec::new()));
    }
    for table in watched_tables(stage, work.step_name) {
        let name: String = tx
            .query_one("SELECT $1::text::regclass::text", &[&table.table])?
            .get(0);
        tx.batch_execute(&format!("LOCK TABLE {name} IN SHARE MODE"))?;
    }
    let plan = cx.run.plan_name().to_owned();
    let rechecks =
        change_capture::take(tx, &plan, &change_capture::recheck_id(&stage.id), i64::MAX)?;
    let outcome = run_per_key(tx, &checks, &rechecks.keys);
    change_capture::forget(tx, &rechecks.ids)?;
    let mut all_passed = true;
    for mut result in outcome {
        if result.passed {
            let again = if rechecked > 0 {
                format!(", {rechecked} changed since checked again before it")
            } else {
                String::new()
            };
            result.actual = format!(
                "no rows ({checked_outside} keys before the cutover{again}, {} under its locks)",
                rechecks.keys.len()
            );
        }
        all_passed &= result.passed;
        cx.report.verifications.push(result);
    }
    if !all_passed {
        cx.report.status = StageStatus::Failed;
        return Ok(None);
    }
    Ok(Some(rechecks.keys))
}

/// The failing checks of part 1, as the stage's verifications.
fn report_failures(cx: &mut StageContext<'_, '_>, outcome: Vec<CheckResult>) {
    for mut result in outcome {
        if !result.passed {
            result.name = format!("{} (on a snapshot before the cutover)", result.name);
        }
        cx.report.verifications.push(result);
    }
    cx.report.status = StageStatus::Failed;
}

/// The distinct keys of `table`, its name and key column quoted by the server.
fn keys_of<C: GenericClient>(
    conn: &mut C,
    table: &SourceTable,
) -> Result<Vec<i64>, postgres::Error> {
    let query: String = conn
        .query_one(
            "SELECT format('SELECT DISTINCT %I::bigint FROM %s WHERE %I IS NOT NULL', $2::text, $1::text::regclass, $2::text)",
            &[&table.table, &table.key],
        )?
        .get(0);
    Ok(conn
        .query(&query, &[])?
        .into_iter()
        .map(|row| row.get(0))
        .collect())
}

/// Each check's per-key form over `keys`, a chunk at a time, each query in a
/// savepoint so that one failing does not abort the transaction.
fn run_per_key<C: GenericClient>(
    conn: &mut C,
    checks: &[&Check],
    keys: &[i64],
) -> Vec<CheckResult> {
    let no_rows = Expectation::NoRows;
    let mut outcome = Vec::new();
    for check in checks {
        let Some(per_key) = &check.per_key else {
            continue;
        };
        let sql = format!(
            "SELECT failing::text FROM ({}) failing LIMIT {SHOWN_FAILURES}",
            per_key.sql.trim().trim_end_matches(';')
        );
        let mut rows: Vec<Vec<Option<String>>> = Vec::new();
        let mut problem = None;
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            match failing_rows(conn, &sql, chunk) {
                Ok(found) => rows.extend(found),
                Err(error) => {
                    problem = Some(
                        error
                            .as_db_error()
                            .map(|db| format!("{} (SQLSTATE {})", db.message(), db.code().code()))
                            .unwrap_or_else(|| error.to_string()),
                    );
                    break;
                }
            }
            if rows.len() >= SHOWN_FAILURES {
                break;
            }
        }
        let result = match problem {
            Some(text) => CheckResult::error(&check.name, no_rows.to_string(), redact(&text)),
            None => CheckResult::from_outcome(
                &check.name,
                no_rows.evaluate(&rows, &|_: &str| None),
                check.message.as_deref(),
            ),
        };
        outcome.push(result);
    }
    outcome
}

fn failing_rows<C: GenericClient>(
    conn: &mut C,
    sql: &str,
    keys: &[i64],
) -> Result<Vec<Vec<Option<String>>>, postgres::Error> {
    let mut savepoint = conn.transaction()?;
    match savepoint.query(sql, &[&keys]) {
        Ok(rows) => {
            savepoint.commit()?;
            Ok(rows
                .into_iter()
                .map(|row| vec![row.get::<_, Option<String>>(0)])
                .collect())
        }
        Err(error) => {
            let _ = savepoint.rollback();
            Err(error)
        }
    }
}
