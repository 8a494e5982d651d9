//! The end of a batched stage while the application writes: catch-up passes that
//! transform again the rows the application changed (recorded by
//! `change_capture.rs`), then the cutover, the one transaction in which the
//! application's writers wait. A lock the cutover cannot have within one
//! `lock_timeout` rolls it back whole: the caller lets the application run,
//! catches up and tries again (`whole_retries.rs`), so the writers never wait
//! while planrun sleeps.
//!
//! The folder holds the batched stage whole: `batched.rs` (the stage, its batches),
//! `batched_start.rs`, `batch_transaction.rs`, this file, `per_key.rs` (the checks
//! run per key: every key before the cutover, the changed ones under it), `half_done.rs` (what a
//! stopped stage leaves), `reset.rs` (`planrun reset`), the server's health
//! (`throttle.rs`, `health_wait.rs`) and `moving_tables.rs` (for `plan`). Its pieces
//! are functions over the prepared plan and the contexts (`stage/context.rs`), as
//! `stage/`'s are; `apply/` calls them, never the other way round.

pub(crate) mod batch_transaction;
pub(crate) mod batched;
pub(crate) mod batched_start;
pub(crate) mod follow_up;
pub(crate) mod half_done;
pub(crate) mod health_wait;
pub(crate) mod moving_tables;
pub(crate) mod per_key;
pub(crate) mod reset;
pub(crate) mod throttle;

use std::time::Instant;

use planrun_report::{StageReport, StageStatus, StepReport};
use postgres::{GenericClient, Transaction};

use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::ledger::{self, Checkpoint};
use crate::online::batched::wait_for_health;
use crate::online::batched::{transform_failure, Work};
use crate::online::health_wait::HealthWatch;
use crate::prepared::BatchedStep;
use crate::prepared::PreparedStage;
use crate::stage::atomic::set_timeouts;
use crate::stage::checks::check_deferred_constraints;
use crate::stage::checks::verify_after_step_where;
use crate::stage::checks::verify_stage;
use crate::stage::context::RunContext;
use crate::stage::context::StageContext;
use crate::stage::gate::take_captures_where;
use crate::stage::stage_failure::fail_at;
use crate::stage::stage_locks::take_stage_locks;
use crate::stage::stage_record::record;
use crate::stage::steps::run_steps;
use crate::stage::whole_retries::retry_whole;
use crate::stage::whole_retries::{failed_on_lock, lock_busy, Attempt};

/// A backlog this small is left to the cutover: redoing it under the stage's locks
/// takes about as long as one more pass would.
const CUTOVER_BACKLOG: i64 = 200;
/// Catch-up passes before the cutover goes ahead with whatever is left, so that an
/// application writing faster than planrun catches up cannot hold the stage for ever.
const MAX_PASSES: u32 = 50;

/// What the catch-up passes and the cutover redid, for the report.
#[derive(Debug, Default, Clone)]
pub(crate) struct RedoTotals {
    pub passes: u32,
    pub changes: u64,
    pub keys: u64,
    pub rows_written: u64,
    pub started: Option<Instant>,
    /// Keys the per-key checks passed on a snapshot before the cutover
    /// (`per_key.rs`), for the report.
    pub checked_outside_locks: u64,
    /// Keys checked again outside the locks after that, as they changed.
    pub rechecked_outside_locks: u64,
    /// The steps after the batched one made key by key (`follow_up.rs`), and what
    /// each did before the cutover.
    pub follow_ups: Vec<usize>,
    pub before_cutover: Vec<follow_up::BeforeCutover>,
}

/// Redoes the keys the application changed, a pass per transaction, until at
/// most [`CUTOVER_BACKLOG`] changes are left; `false` when the stage stops.
pub(crate) fn catch_up<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    checkpoint: &Checkpoint,
    watch: &mut HealthWatch,
    totals: &mut RedoTotals,
) -> Result<bool, EngineError> {
    let (stage, run, stage_report) = (cx.stage, &mut *cx.run, &mut *cx.report);
    let plan = run.plan_name();
    totals.started.get_or_insert_with(Instant::now);
    let limit = i64::try_from(batched.settings.batch_size).unwrap_or(i64::MAX);
    for pass in 1..=MAX_PASSES {
        if crate::stage::stage_failure::interrupted_before(stage_report, "a catch-up pass") {
            return Ok(false);
        }
        if wait_for_health(conn, run, stage, &batched.settings, watch, stage_report)?.is_none() {
            return Ok(false);
        }
        let pending = change_capture::pending(conn, plan, &stage.id)
            .map_err(EngineError::database("cannot count the captured changes"))?;
        if pending <= CUTOVER_BACKLOG {
            return Ok(true);
        }
        let eta = match (totals.changes, totals.started) {
            (done, Some(started)) if done > 0 => {
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                format!(
                    ", about {:.0} s at {rate:.0} changes/s",
                    pending as f64 / rate
                )
            }
            _ => String::new(),
        };
        run.observer.note(&format!(
            "{}: catching up, pass {pass}: {pending} changes by the application to redo{eta}",
            stage.id
        ));
        let mut tx = conn
            .transaction()
            .map_err(EngineError::database("cannot begin a catch-up pass"))?;
        set_timeouts(&mut tx, stage, true)?;
        let redone = redo_backlog(&mut tx, run, stage, work, limit, totals);
        match redone.and_then(|_| Ok(tx.commit()?)) {
            Ok(()) => {}
            Err(error) => {
                stage_report.status = StageStatus::Failed;
                stage_report.error = Some(transform_failure(error, work.name, checkpoint));
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// After the check of every key before the cutover: catch-up passes, each followed
/// by the per-key checks of the keys changed since the last check, outside the
/// cutover's locks, until at most [`CUTOVER_BACKLOG`] keys wait to be checked again.
/// The check of every key takes time that grows with the table, and what changed
/// meanwhile would otherwise all be redone and checked under the locks (issue 23).
/// `false` when the stage stops.
pub(crate) fn recheck_until_small<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    checkpoint: &Checkpoint,
    watch: &mut HealthWatch,
    totals: &mut RedoTotals,
) -> Result<bool, EngineError> {
    if per_key::per_key_checks(cx.stage, work.step_name).is_empty() {
        return Ok(true);
    }
    let recheck = change_capture::recheck_id(&cx.stage.id);
    for _ in 1..=MAX_PASSES {
        if !catch_up(conn, cx, (batched, work), checkpoint, watch, totals)? {
            return Ok(false);
        }
        let waiting = change_capture::pending(conn, cx.run.plan_name(), &recheck).map_err(
            EngineError::database("cannot count the keys to check again"),
        )?;
        if waiting <= CUTOVER_BACKLOG {
            break;
        }
        match per_key::verify_outside_locks(
            conn,
            cx,
            (batched, work),
            totals,
            per_key::Outside::Changed,
        )? {
            Some(keys) => totals.rechecked_outside_locks += keys,
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Takes at most `limit` recorded changes in `tx`, redoes their keys and forgets
/// exactly those changes; returns how many it took.
fn redo_backlog(
    tx: &mut Transaction<'_>,
    run: &RunContext<'_>,
    stage: &PreparedStage<'_>,
    work: &Work<'_>,
    limit: i64,
    totals: &mut RedoTotals,
) -> Result<usize, planrun_transform::TransformError> {
    let plan = run.plan_name();
    change_capture::own_writes(tx)?;
    let backlog = change_capture::take(tx, plan, &stage.id, limit)?;
    if backlog.ids.is_empty() {
        return Ok(0);
    }
    let report = work.transform.redo_keys(
        &mut planrun_transform::TransformContext {
            transaction: tx,
            params: &work.params,
            stage_id: &stage.id,
            run_id: run.run_id,
            progress: &planrun_transform::NoProgress,
        },
        &backlog.keys,
    )?;
    change_capture::forget(tx, &backlog.ids)?;
    if !per_key::per_key_checks(stage, work.step_name).is_empty() {
        change_capture::note_recheck(tx, plan, &stage.id, &backlog.keys)?;
    }
    totals.passes += 1;
    totals.changes += backlog.ids.len() as u64;
    totals.keys += backlog.keys.len() as u64;
    totals.rows_written += report.rows_written;
    Ok(backlog.ids.len())
}

/// The cutover, tried again on the stage's schedule while a lock it needs is
/// held by the application: between attempts, nothing held, it catches up.
/// `false` when it rolled back for good (the report says why).
pub(crate) fn cut_over_retried<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    checkpoint: &Checkpoint,
    totals: RedoTotals,
    started: Instant,
) -> Result<bool, EngineError> {
    // The cutover's catch-up passes say a wait once per state, as the batches do.
    let mut online = (conn, totals, HealthWatch::default());
    let outcome = retry_whole(
        &mut online,
        cx,
        "cutover",
        |(conn, totals, watch), cx| catch_up(*conn, cx, (batched, work), checkpoint, watch, totals),
        |(conn, totals, _), cx| {
            cx.report.duration_ms = started.elapsed().as_millis() as u64;
            cut_over(*conn, cx, (batched, work), checkpoint, totals)
        },
    )?;
    Ok(outcome.unwrap_or(false))
}

/// The cutover: under the stage's locks, the last backlog, captures read again,
/// the checks placed after the batched step, the steps after it, the stage's
/// verification of the data as it is now, the capture's and the checkpoint's
/// removal and the ledger row, committed together. `Done(false)` when it rolled
/// back for good; `LockBusy` when a lock it needs once it holds the stage's
/// (the column drop's, the trigger removal's) was not had within one
/// `lock_timeout`: it rolled back rather than keep the application waiting, and
/// the caller catches up and tries again (`whole_retries.rs`).
pub(crate) fn cut_over<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    checkpoint: &Checkpoint,
    totals: &RedoTotals,
) -> Result<Attempt<bool>, EngineError> {
    let stage = cx.stage;
    let mut totals = totals.clone();
    let mut tx = conn.transaction().map_err(EngineError::database(format!(
        "cannot begin the cutover of stage `{}`",
        stage.id
    )))?;
    set_timeouts(&mut tx, stage, true)?;
    // Everything the cutover waits for, it waits for holding EXCLUSIVE (writers
    // queue) or asking ACCESS EXCLUSIVE (readers queue too).
    crate::stage::stage_locks::cap_lock_timeout(&mut tx, stage.lock_budget, true).map_err(
        EngineError::database("cannot set the cutover's lock_timeout"),
    )?;
    cx.report.locks.clear();
    let cutover_started = Instant::now();
    if !take_stage_locks(&mut tx, cx)? {
        let _ = tx.rollback();
        return Ok(Attempt::Done(false));
    }
    // The application's writers of the sources now wait: what is left of the
    // backlog is all there will be.
    loop {
        match redo_backlog(&mut tx, cx.run, stage, work, 10_000, &mut totals) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                let _ = tx.rollback();
                if let planrun_transform::TransformError::Database(db) = &error {
                    if let Some(busy) = lock_busy(db, work.name) {
                        return Ok(busy);
                    }
                }
                cx.fail(transform_failure(error, work.name, checkpoint));
                return Ok(Attempt::Done(false));
            }
        }
    }
    cx.report
        .steps
        .push(catch_up_report(&totals, cutover_started));
    if !after_batched(&mut tx, cx, (batched, work), &totals)? {
        let _ = tx.rollback();
        if failed_on_lock(cx.report) {
            if let Some(failure) = cx.report.error.take() {
                return Ok(Attempt::LockBusy(Box::new(failure)));
            }
        }
        return Ok(Attempt::Done(false));
    }
    commit_cutover(tx, cx.run, stage, cx.report)
}

/// The cutover's end: the capture removed (DROP TRIGGER asks ACCESS EXCLUSIVE
/// on the sources: one attempt, as for the steps), the ledger row, the
/// checkpoint's removal, the commit.
fn commit_cutover(
    mut tx: Transaction<'_>,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
    stage_report: &mut StageReport,
) -> Result<Attempt<bool>, EngineError> {
    let plan = run.plan_name();
    if let Err(error) = change_capture::remove(&mut tx, plan, &stage.id) {
        let _ = tx.rollback();
        return lock_busy(&error, "change capture removal").ok_or(EngineError::Database {
            context: "cannot remove the change capture".into(),
            source: error,
        });
    }
    run.observer.progress().phase("committing");
    let started_at =
        std::time::SystemTime::now() - std::time::Duration::from_millis(stage_report.duration_ms);
    record(
        &mut tx,
        &StageContext::new(stage, run, stage_report, true),
        started_at,
    )?;
    ledger::finish_checkpoint(&mut tx, plan, &stage.id)?;
    if let Err(error) = tx.commit() {
        fail_at(stage_report, "COMMIT", &error);
        return Ok(Attempt::Done(false));
    }
    Ok(Attempt::Done(true))
}

/// Under the cutover's locks: captures read again, the checks placed after the
/// batched step, the steps after it (one attempt each: the whole cutover is what is
/// retried), deferred constraints and the stage's verification; whether all passed.
fn after_batched<C: GenericClient>(
    tx: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    totals: &RedoTotals,
) -> Result<bool, EngineError> {
    let (stage, step) = (cx.stage, work.step_name);
    let changed = if take_captures_where(tx, cx, |capture| {
        per_key::read_at_cutover(stage, step, capture)
    }) {
        changed_keys_pass(
            tx,
            cx,
            work,
            (totals.checked_outside_locks, totals.rechecked_outside_locks),
        )
    } else {
        None
    };
    let checked = changed.is_some()
        && verify_after_step_where(tx, cx, step, |check| !per_key::runs_per_key(check, step));
    let keys = changed.unwrap_or_default();
    // The steps made key by key redo the keys changed since the snapshot; the rest
    // run whole.
    let whole = batched.position + 1 + totals.follow_ups.len()..cx.stage.steps_before_commit();
    cx.run.retried_whole = true;
    let steps = if checked
        && follow_up::at_cutover(tx, cx, &totals.follow_ups, &keys, &totals.before_cutover)
    {
        run_steps(tx, cx, whole)
    } else {
        Ok(false)
    };
    cx.run.retried_whole = false;
    Ok(steps?
        && check_deferred_constraints(tx, cx.report)
        && verify_stage(tx, cx)
        && !crate::stage::stage_failure::interrupted_before(cx.report, "COMMIT"))
}

/// The per-key checks of the keys changed since they were checked outside the locks
/// (`per_key.rs`), and those keys; a database error (a watched table's lock not had in time among
/// them) fails the stage as a step's would.
fn changed_keys_pass<C: GenericClient>(
    tx: &mut C,
    cx: &mut StageContext<'_, '_>,
    work: &Work<'_>,
    checked_outside: (u64, u64),
) -> Option<Vec<i64>> {
    match per_key::verify_changed_keys(tx, cx, work, checked_outside) {
        Ok(keys) => keys,
        Err(error) => {
            fail_at(cx.report, "per-key checks", &error);
            None
        }
    }
}

/// The report line of the catch-up: passes, changes, keys, and the cutover's time.
fn catch_up_report(totals: &RedoTotals, cutover_started: Instant) -> StepReport {
    let catch_up_ms = totals
        .started
        .map_or(0, |started| started.elapsed().as_millis() as u64);
    StepReport {
        name: "catch-up: rows the application changed meanwhile".into(),
        kind: "catch-up".into(),
        duration_ms: catch_up_ms,
        rows_affected: totals.rows_written,
        rows_read: Some(totals.keys),
        rows_quarantined: None,
        notes: vec![format!(
            "{} changes by the application, {} keys transformed again in {} passes; the cutover's locks were held {} ms before its checks",
            totals.changes,
            totals.keys,
            totals.passes,
            cutover_started.elapsed().as_millis()
        )],
    }
}
