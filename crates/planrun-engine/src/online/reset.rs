//! `planrun reset STAGE`: abandons a half-done batched stage cleanly. Under the plan
//! lock and the stage's locks, in one transaction: the transform removes what it
//! wrote (`Transform::reset`), the change capture's triggers and recorded changes go,
//! the checkpoint goes, and a `reset` row records it in the ledger. Before the commit
//! planrun checks that no trigger, recorded change or checkpoint is left. When the
//! application holds up the capture's removal, the transaction rolls back and is
//! tried again on the stage's schedule (`whole_retries.rs`).
//!
//! A stage the ledger records as applied (or skipped) is refused, whatever
//! checkpoint is found: the transform's reset would delete the applied stage's rows
//! (issue 21). An atomic run of a stage removes a batched attempt's leftovers first
//! (`abandoned.rs`), so an applied stage has none.
//!
//! `reset` is given its own options (`ResetOptions`: how long to wait for the plan
//! lock, `--lock-wait`). A reset that rolls back because of the database (the
//! transform's removal failed, the locks were not had, something would be left)
//! is an error of the run (exit 1), not of the command line (2).

use std::time::{Instant, SystemTime};

use planrun_plan::StepKind;
use planrun_report::{ResetReport, StageReport, StageStatus};
use planrun_transform::{TransformContext, TransformError, TransformReport};

use crate::db::connect::Target;
use crate::db::lock;
use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::ledger::{self, NewRun};
use crate::options::ResetOptions;
use crate::prepared::{BatchedStep, PreparedPlan, PreparedStage};
use crate::stage::atomic::set_timeouts;
use crate::stage::context::StageContext;
use crate::stage::context::{RunContext, StageOptions};
use crate::stage::stage_locks::take_stage_locks;
use crate::stage::stage_record::record;
use crate::stage::whole_retries::retry_whole;
use crate::stage::whole_retries::{lock_busy, Attempt};

/// What a committed reset's transaction did: the application's changes it dropped
/// with the capture, and what the transform removed.
type ResetDone = (i64, Vec<String>);

/// The stage `stage_id` of `prepared` if it can be half done (it has a batched
/// step), with that step; checked before `reset` connects.
pub(crate) fn resettable<'p>(
    prepared: &'p PreparedPlan<'p>,
    stage_id: &str,
) -> Result<(&'p PreparedStage<'p>, &'p BatchedStep), EngineError> {
    let stage = prepared
        .stage(stage_id)
        .ok_or_else(|| EngineError::Selection(format!("the plan has no stage `{stage_id}`")))?;
    let Some(batched) = &stage.batched else {
        return Err(EngineError::Selection(format!(
            "stage `{stage_id}` has no batched step: it commits whole or not at all, so there is nothing half done to reset"
        )));
    };
    Ok((stage, batched))
}

/// Abandons the half-done batched stage `stage` on `client` (a session of its own,
/// its setup SQL run), under the plan's lock, waited for as `options` say.
pub(crate) fn reset(
    client: &mut postgres::Client,
    (prepared, target): (&PreparedPlan<'_>, &Target),
    (stage, batched): (&PreparedStage<'_>, &BatchedStep),
    options: &ResetOptions,
) -> Result<ResetReport, EngineError> {
    let plan = &prepared.plan.name;
    lock::acquire(client, plan, options.lock_wait)?;
    let result = reset_locked(client, (prepared, target), (stage, batched));
    lock::release(client, plan);
    result
}

fn reset_locked(
    client: &mut postgres::Client,
    (prepared, target): (&PreparedPlan<'_>, &Target),
    (stage, batched): (&PreparedStage<'_>, &BatchedStep),
) -> Result<ResetReport, EngineError> {
    let plan = &prepared.plan.name;
    ledger::ensure(client)?;
    if let Some(done) = ledger::done_results(client, plan)?.remove(&stage.id) {
        return Err(EngineError::Selection(format!(
            "stage `{}` is {} (run {} at {}): reset abandons only a half-done batched stage, and here it would delete what the stage holds now; nothing was changed",
            stage.id, done.status, done.run_id, done.finished_at
        )));
    }
    let Some(checkpoint) = ledger::checkpoints(client, plan)?.remove(&stage.id) else {
        return Err(EngineError::Selection(format!(
            "stage `{}` is not half done: no checkpoint in the ledger",
            stage.id
        )));
    };
    let run_id = ledger::start_run(
        client,
        &NewRun {
            plan_name: plan,
            plan_checksum: &prepared.plan_checksum(),
            command: &format!("reset {}", stage.id),
            target: &target.to_string(),
        },
    )?;
    // A reset takes no backup: it removes only what the half-done stage wrote.
    let mut run = RunContext::new(
        prepared,
        target,
        StageOptions::default(),
        &crate::observer::Silent,
        run_id,
    );
    let started = Instant::now();
    let mut stage_report = stage.report(StageStatus::Applied);
    let attempted = retry_whole(
        client,
        &mut StageContext::new(stage, &mut run, &mut stage_report, true),
        "reset",
        |_, _| Ok(true),
        |client, cx| {
            let run = &mut *cx.run;
            let report = &mut *cx.report;
            reset_attempt(client, run, (stage, batched), &checkpoint, started, report)
        },
    );
    let (dropped, removed) = match attempted {
        Ok(Some(Some(done))) => done,
        Ok(_) => {
            let _ = ledger::finish_run(client, run_id, "failed", None);
            return Err(EngineError::ResetFailed {
                stage: stage.id.clone(),
                reason: describe_failure(&stage_report),
            });
        }
        Err(error) => {
            let _ = ledger::finish_run(client, run_id, "failed", None);
            return Err(error);
        }
    };
    ledger::finish_run(client, run_id, "reset", None)?;
    Ok(ResetReport {
        plan: plan.clone(),
        stage: stage.id.clone(),
        target: target.to_string(),
        target_source: target.source.to_string(),
        run_id,
        batches: checkpoint.batches,
        last_key: checkpoint.last_key,
        changes_dropped: dropped,
        removed,
    })
}

/// The reset's transaction, committed: under the stage's locks, the transform's
/// work removed, the capture and the checkpoint gone, checked, recorded. The
/// changes dropped and what the transform removed; `LockBusy` when the capture's
/// removal (ACCESS EXCLUSIVE on the sources) was not had within one
/// `lock_timeout`: rolled back, so the application's writers do not wait while
/// the caller pauses before the next attempt.
fn reset_attempt(
    client: &mut postgres::Client,
    run: &mut RunContext<'_>,
    (stage, batched): (&PreparedStage<'_>, &BatchedStep),
    checkpoint: &ledger::Checkpoint,
    started: Instant,
    stage_report: &mut StageReport,
) -> Result<Attempt<Option<ResetDone>>, EngineError> {
    let plan = run.plan_name();
    let mut tx = client
        .transaction()
        .map_err(EngineError::database("cannot begin the reset"))?;
    set_timeouts(&mut tx, stage, true)?;
    // As in the cutover: it holds the stage's locks while it asks for more.
    crate::stage::stage_locks::cap_lock_timeout(&mut tx, stage.lock_budget, true)
        .map_err(EngineError::database("cannot set the reset's lock_timeout"))?;
    // The stage's locks have their own retries, before anything is held.
    if !take_stage_locks(
        &mut tx,
        &mut StageContext::new(stage, run, stage_report, true),
    )? {
        return Ok(Attempt::Done(None));
    }
    let dropped = change_capture::pending(&mut tx, plan, &stage.id)
        .map_err(EngineError::database("cannot count the captured changes"))?;
    let removed = remove_transform_work(&mut tx, run, (stage, batched))?;
    if let Err(error) = change_capture::remove(&mut tx, plan, &stage.id) {
        let _ = tx.rollback();
        return lock_busy(&error, "change capture removal").ok_or(EngineError::Database {
            context: "cannot remove the change capture".into(),
            source: error,
        });
    }
    ledger::finish_checkpoint(&mut tx, plan, &stage.id)?;
    check_reset(&mut tx, plan, &stage.id)?;
    stage_report.duration_ms = started.elapsed().as_millis() as u64;
    stage_report.note = Some(format!(
        "reset: the half-done attempt of run {} ({} batches, after key {}) abandoned; {}",
        checkpoint.run_id,
        checkpoint.batches,
        checkpoint
            .last_key
            .map_or("-".into(), |key| key.to_string()),
        removed.notes.join("; ")
    ));
    stage_report.status = StageStatus::Reset;
    let started_at = SystemTime::now() - started.elapsed();
    record(
        &mut tx,
        &StageContext::new(stage, run, stage_report, true),
        started_at,
    )?;
    tx.commit()
        .map_err(EngineError::database("cannot commit the reset"))?;
    Ok(Attempt::Done(Some((dropped, removed.notes))))
}

/// The transform's work removed (`Transform::reset`), in the reset's transaction; a
/// database failure is the database's (exit 1), not a usage error.
fn remove_transform_work(
    tx: &mut postgres::Transaction<'_>,
    run: &RunContext<'_>,
    (stage, batched): (&PreparedStage<'_>, &BatchedStep),
) -> Result<TransformReport, EngineError> {
    let StepKind::Transform { name, params, .. } = &stage.steps[batched.position].kind else {
        unreachable!("batched_step only returns transform steps");
    };
    let transform =
        run.prepared.registry.get(name).ok_or_else(|| {
            EngineError::Selection(format!("transform `{name}` is not registered"))
        })?;
    change_capture::own_writes(tx).map_err(EngineError::database("cannot begin the reset"))?;
    transform
        .reset(&mut TransformContext {
            transaction: tx,
            params: &planrun_transform::transform_params(params),
            stage_id: &stage.id,
            run_id: run.run_id,
            progress: &planrun_transform::NoProgress,
        })
        .map_err(|error| match error {
            TransformError::Database(source) => EngineError::Database {
                context: format!(
                    "cannot reset `{}`: the transform `{name}` could not remove its work",
                    stage.id
                ),
                source,
            },
            other => EngineError::ResetFailed {
                stage: stage.id.clone(),
                reason: other.to_string(),
            },
        })
}

/// Nothing of the attempt may be left: no trigger, no recorded change, no
/// checkpoint.
fn check_reset<C: postgres::GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
) -> Result<(), EngineError> {
    let (triggers, changes) = change_capture::leftovers(conn, plan, stage)
        .map_err(EngineError::database("cannot check the reset"))?;
    let checkpoint = ledger::checkpoints(conn, plan)?.contains_key(stage);
    if triggers > 0 || changes > 0 || checkpoint {
        return Err(EngineError::ResetFailed {
            stage: stage.to_owned(),
            reason: format!(
                "it left {triggers} capture triggers or functions, {changes} recorded changes and {} checkpoint; nothing was committed",
                u8::from(checkpoint)
            ),
        });
    }
    Ok(())
}

fn describe_failure(stage_report: &StageReport) -> String {
    stage_report
        .error
        .as_ref()
        .map(|error| error.message.clone())
        .unwrap_or_else(|| "its locks could not be taken".into())
}
