//! The start of a batched stage, or its resume: the first transaction (gate, steps
//! before the batched one, checkpoint, change capture), or, when a checkpoint is
//! found, the captures read again and the capture made sure of. Installing the
//! capture needs SHARE ROW EXCLUSIVE on the sources: an application transaction
//! open on one is waited out on the stage's schedule, the whole transaction rolled
//! back between attempts (`whole_retries.rs`), and named in every retry line.

use std::time::{Instant, SystemTime};

use planrun_plan::StepKind;
use planrun_report::{StageReport, StageStatus};
use planrun_transform::{transform_params, TransformContext};
use postgres::GenericClient;

use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::ledger::{self, Checkpoint};
use crate::online::per_key;
use crate::prepared::BatchedStep;
use crate::prepared::PreparedStage;
use crate::stage::atomic::set_timeouts;
use crate::stage::context::RunContext;
use crate::stage::context::StageContext;
use crate::stage::gate::gate;
use crate::stage::gate::take_captures;
use crate::stage::gate::Gate;
use crate::stage::stage_failure::plain_error;
use crate::stage::stage_locks::take_stage_locks;
use crate::stage::stage_record::record;
use crate::stage::steps::run_steps;
use crate::stage::whole_retries::retry_whole;
use crate::stage::whole_retries::{lock_busy, Attempt};

/// Installs the change capture; `Done(false)` when a source's key is of a type it
/// refuses, which fails the stage (the report says why) rather than the whole run;
/// `LockBusy` when the application held a source too long (the caller rolls back and
/// tries again).
fn install_capture<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &PreparedStage<'_>,
    batched: &BatchedStep,
    stage_report: &mut StageReport,
) -> Result<Attempt<bool>, EngineError> {
    let watched = per_key::watched_tables(stage, &stage.steps[batched.position].name);
    let installed =
        change_capture::install(conn, plan, &stage.id, &batched.sources).and_then(|()| {
            if watched.is_empty() {
                return Ok(());
            }
            change_capture::install(conn, plan, &change_capture::recheck_id(&stage.id), &watched)
        });
    match installed {
        Ok(()) => Ok(Attempt::Done(true)),
        Err(refused @ EngineError::CaptureKey { .. }) => {
            stage_report.status = StageStatus::Failed;
            stage_report.error = Some(plain_error(Some("change capture"), refused.to_string()));
            Ok(Attempt::Done(false))
        }
        Err(EngineError::Database { context, source }) => {
            lock_busy(&source, "change capture").ok_or(EngineError::Database { context, source })
        }
        Err(other) => Err(other),
    }
}

/// The stage's checkpoint: found (a resume), or made by the stage's start. `None`
/// when the stage ends here: skipped (committed), drifted, or failed.
pub(crate) fn start_or_resume<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
    batched: &BatchedStep,
    stage_report: &mut StageReport,
    started: Instant,
) -> Result<Option<Checkpoint>, EngineError> {
    let plan = run.plan_name();
    let existing = ledger::checkpoints(conn, plan)?.remove(&stage.id);
    let Some(mut checkpoint) = existing else {
        return start(conn, run, stage, batched, stage_report, started);
    };
    if !stage.matches_recorded(&checkpoint.checksum) {
        stage_report.status = StageStatus::Drifted;
        stage_report.note =
            Some(format!(
            "half done (run {}, {} batches, after key {}) and its definition has changed since; \
             restore the definition to finish it, or abandon it with `planrun reset {}`",
            checkpoint.run_id,
            checkpoint.batches,
            checkpoint.last_key.map_or("-".into(), |key| key.to_string()),
            stage.id
        ));
        return Ok(None);
    }
    // A checkpoint an older planrun wrote holds a former form of the checksum
    // (throttles included); the next batch records today's, so that from then on
    // the throttles can be retuned.
    stage.checksum.clone_into(&mut checkpoint.checksum);
    let ensured = retry_whole(
        conn,
        &mut StageContext::new(stage, run, stage_report, true),
        "change capture",
        |_, _| Ok(true),
        |conn, cx| {
            let run = &mut *cx.run;
            let report = &mut *cx.report;
            ensure_capture(conn, run, stage, batched, report)
        },
    )?;
    if ensured != Some(true) {
        return Ok(None);
    }
    let pending = change_capture::pending(conn, plan, &stage.id)
        .map_err(EngineError::database("cannot count the captured changes"))?;
    stage_report.note = Some(format!(
        "resumed after key {} ({} batches committed by run {}, {pending} changes by the application to redo); preconditions held when it started",
        checkpoint.last_key.map_or("-".into(), |key| key.to_string()),
        checkpoint.batches,
        checkpoint.run_id
    ));
    run.changed_anything = true;
    Ok(Some(checkpoint))
}

/// A resume's transaction: captures read again (the rows not yet migrated may
/// have been repaired since the stage started, the usual reason for a resume),
/// and the change capture made sure of (it has recorded the application's
/// changes all along). `Done(false)` when the stage stops.
fn ensure_capture<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
    batched: &BatchedStep,
    stage_report: &mut StageReport,
) -> Result<Attempt<bool>, EngineError> {
    let mut tx = conn
        .transaction()
        .map_err(EngineError::database("cannot begin a transaction"))?;
    set_timeouts(&mut tx, stage, true)?;
    if !take_captures(
        &mut tx,
        &mut StageContext::new(stage, run, stage_report, true),
    ) {
        let _ = tx.rollback();
        return Ok(Attempt::Done(false));
    }
    let installed = install_capture(&mut tx, run.plan_name(), stage, batched, stage_report)?;
    if !matches!(installed, Attempt::Done(true)) {
        let _ = tx.rollback();
        return Ok(installed);
    }
    tx.commit().map_err(EngineError::database(
        "cannot make sure of the change capture",
    ))?;
    Ok(Attempt::Done(true))
}

/// The stage's first transaction, tried again on the stage's schedule while the
/// application holds a source the change capture needs.
fn start<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
    batched: &BatchedStep,
    stage_report: &mut StageReport,
    started: Instant,
) -> Result<Option<Checkpoint>, EngineError> {
    let started = retry_whole(
        conn,
        &mut StageContext::new(stage, run, stage_report, true),
        "change capture",
        |_, _| Ok(true),
        |conn, cx| start_attempt(conn, cx, batched, started),
    )?;
    Ok(started.flatten())
}

/// The stage's first transaction: gate, steps before the batched one, checkpoint
/// and change capture.
fn start_attempt<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    batched: &BatchedStep,
    started: Instant,
) -> Result<Attempt<Option<Checkpoint>>, EngineError> {
    let stage = cx.stage;
    let plan = cx.run.plan_name();
    let mut tx = conn.transaction().map_err(EngineError::database(format!(
        "cannot begin the transaction of stage `{}`",
        stage.id
    )))?;
    set_timeouts(&mut tx, stage, true)?;
    // The stage's locks guard the transform's run, which here is the batches and
    // the cutover, where they are taken. Taken now too only for steps that come
    // before the batched one; otherwise the start's checks and captures, which
    // read whole tables, would make the application's writers wait for them.
    let locked = batched.position == 0 || take_stage_locks(&mut tx, cx)?;
    let gate = if locked {
        gate(&mut tx, cx)?
    } else {
        Gate::Stop
    };
    let proceed = match gate {
        Gate::Skip => {
            cx.report.duration_ms = started.elapsed().as_millis() as u64;
            let started_at = SystemTime::now() - started.elapsed();
            record(&mut tx, cx, started_at)?;
            tx.commit()
                .map_err(EngineError::database("cannot commit the skipped stage"))?;
            return Ok(Attempt::Done(None));
        }
        Gate::Stop => false,
        Gate::Proceed => run_steps(&mut tx, cx, 0..batched.position)?,
    };
    if !proceed {
        let _ = tx.rollback();
        return Ok(Attempt::Done(None));
    }
    let checkpoint = Checkpoint {
        stage_id: stage.id.clone(),
        run_id: cx.run.run_id,
        checksum: stage.checksum.clone(),
        total_rows: batch_total(&mut tx, cx.run, stage, batched)?.map(|n| n as i64),
        captures: cx.report.captures.clone(),
        ..Checkpoint::default()
    };
    ledger::start_checkpoint(&mut tx, plan, &checkpoint)?;
    // In the same transaction as the checkpoint: from the first batch on, every
    // change the application makes to a source is recorded.
    match install_capture(&mut tx, plan, stage, batched, cx.report)? {
        Attempt::Done(true) => {}
        Attempt::Done(false) => {
            let _ = tx.rollback();
            return Ok(Attempt::Done(None));
        }
        Attempt::LockBusy(failure) => {
            let _ = tx.rollback();
            return Ok(Attempt::LockBusy(failure));
        }
    }
    tx.commit().map_err(EngineError::database(format!(
        "cannot commit the start of stage `{}`",
        stage.id
    )))?;
    Ok(Attempt::Done(Some(checkpoint)))
}

/// How many source rows the batches will read, if the transform can tell.
fn batch_total<C: GenericClient>(
    conn: &mut C,
    run: &RunContext<'_>,
    stage: &PreparedStage<'_>,
    batched: &BatchedStep,
) -> Result<Option<u64>, EngineError> {
    let StepKind::Transform { name, params, .. } = &stage.steps[batched.position].kind else {
        return Ok(None);
    };
    let Some(transform) = run.prepared.registry.get(name) else {
        return Ok(None);
    };
    let params = transform_params(params);
    let mut savepoint = conn
        .transaction()
        .map_err(EngineError::database("cannot begin a savepoint"))?;
    let total = {
        let mut context = TransformContext {
            transaction: &mut savepoint,
            params: &params,
            stage_id: &stage.id,
            run_id: run.run_id,
            progress: &planrun_transform::NoProgress,
        };
        transform.batch_total(&mut context).ok().flatten()
    };
    let _ = savepoint.rollback();
    Ok(total)
}
