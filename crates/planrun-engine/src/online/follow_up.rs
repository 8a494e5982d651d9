//! The transform steps right after a batched step whose output is made key by key
//! (`Transform::per_key_inputs`), taken off the cutover's locks: they run in batches
//! before the cutover, like the batched step, and under its locks redo only the
//! keys changed since, so that the cutover's cost follows the changes, not the table.
//!
//! A step qualifies when each table it reads for a key is a source of the batched
//! step or a table the per-key checks watch (`per_key.rs`): every write to those
//! rows since is then recorded. The batched step's redone keys are noted for the
//! checks (`change_capture::note_recheck`), and the watched tables' triggers record
//! the application's own writes, in the same recheck list. That list is read twice:
//! on the snapshot before the cutover (the keys changed since the step's batches,
//! redone there) and under the cutover's locks (the keys changed since the
//! snapshot, redone there, after which nothing changes before the commit). A key
//! still waiting to be redone by the batched step at the snapshot is redone by it
//! later, and so noted again. Only steps placed one after another right after the
//! batched step qualify, so that nothing the plan runs between them is skipped
//! over; any other step runs whole at the cutover, as before.

use std::time::Instant;

use planrun_plan::StepKind;
use planrun_report::StepReport;
use planrun_transform::{transform_params, TransformContext, TransformError, TransformReport};
use postgres::{GenericClient, Transaction};

use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::online::batched::Work;
use crate::online::per_key::{per_key_checks, watched_tables};
use crate::prepared::{BatchedStep, PreparedStage};
use crate::stage::atomic::set_timeouts;
use crate::stage::checks::verify_after_step;
use crate::stage::context::StageContext;
use crate::stage::stage_failure::{plain_error, stage_error};

/// What the steps' batches before the cutover did, per step, for its report.
#[derive(Debug, Default, Clone)]
pub(crate) struct BeforeCutover {
    pub batches: u32,
    pub rows_written: u64,
    pub keys_redone: u64,
}

/// The positions of the steps after `batched` that run key by key: those right
/// after it, one after another, whose inputs are all recorded.
pub(crate) fn positions(
    stage: &PreparedStage<'_>,
    batched: &BatchedStep,
    work: &Work<'_>,
    registry: &planrun_transform::Registry,
) -> Vec<usize> {
    if per_key_checks(stage, work.step_name).is_empty() {
        return Vec::new();
    }
    let mut recorded = batched.sources.clone();
    recorded.extend(watched_tables(stage, work.step_name));
    let mut found = Vec::new();
    for position in batched.position + 1..stage.steps_before_commit() {
        let StepKind::Transform { name, params, .. } = &stage.steps[position].kind else {
            break;
        };
        let Some(transform) = registry.get(name) else {
            break;
        };
        let inputs = transform.per_key_inputs(&transform_params(params));
        if inputs.is_empty() || !inputs.iter().all(|input| recorded.contains(input)) {
            break;
        }
        found.push(position);
    }
    found
}

/// The step at `position` as a [`Work`].
fn work_at<'s>(
    stage: &'s PreparedStage<'s>,
    registry: &'s planrun_transform::Registry,
    position: usize,
) -> Option<Work<'s>> {
    let step = &stage.steps[position];
    let StepKind::Transform { name, params, .. } = &step.kind else {
        return None;
    };
    let transform = registry.get(name)?;
    Some(Work {
        transform: transform.as_ref(),
        name,
        step_name: &step.name,
        params: transform_params(params),
    })
}

/// Runs each step of `positions` in batches of `size` keys, each batch a
/// transaction; `false` when one failed (the stage is marked failed).
pub(crate) fn run_batches<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    positions: &[usize],
    size: u64,
) -> Result<Option<Vec<BeforeCutover>>, EngineError> {
    let mut done = Vec::new();
    for &position in positions {
        let Some(work) = work_at(cx.stage, cx.run.prepared.registry, position) else {
            return Ok(None);
        };
        cx.run.observer.progress().phase(&format!(
            "running {} in batches, outside the cutover's locks",
            work.name
        ));
        let mut before = BeforeCutover::default();
        let mut after = None;
        loop {
            if crate::stage::stage_failure::interrupted_before(cx.report, "a batch") {
                return Ok(None);
            }
            let mut tx = conn
                .transaction()
                .map_err(EngineError::database("cannot begin a batch"))?;
            set_timeouts(&mut tx, cx.stage, true)?;
            change_capture::own_writes(&mut tx)
                .map_err(EngineError::database("cannot begin a batch"))?;
            let outcome = work
                .transform
                .run_batch(&mut context(&mut tx, cx, &work), after, size);
            let outcome = match outcome.and_then(|outcome| Ok(tx.commit().map(|_| outcome)?)) {
                Ok(outcome) => outcome,
                Err(error) => {
                    cx.fail(failure(error, &work));
                    return Ok(None);
                }
            };
            let Some(last) = outcome.last_key else {
                break;
            };
            after = Some(last);
            before.batches += 1;
            before.rows_written += outcome.report.rows_written;
        }
        done.push(before);
    }
    Ok(Some(done))
}

/// Redoes `keys` for each step of `positions` in `tx`, adding to `before`.
pub(crate) fn redo_keys(
    tx: &mut Transaction<'_>,
    cx: &mut StageContext<'_, '_>,
    positions: &[usize],
    keys: &[i64],
    before: &mut [BeforeCutover],
) -> Result<(), Box<planrun_report::StageError>> {
    for (index, &position) in positions.iter().enumerate() {
        let work = work_at(cx.stage, cx.run.prepared.registry, position)
            .ok_or_else(|| not_registered(cx, position))?;
        let report = work
            .transform
            .redo_keys(&mut context(tx, cx, &work), keys)
            .map_err(|error| Box::new(failure(error, &work)))?;
        if let Some(before) = before.get_mut(index) {
            before.keys_redone += keys.len() as u64;
            before.rows_written += report.rows_written;
        }
    }
    Ok(())
}

/// Under the cutover's locks: each step's `keys` redone, its report, and the checks
/// placed after it; `false` when one failed (the stage is marked failed).
pub(crate) fn at_cutover<C: GenericClient>(
    tx: &mut C,
    cx: &mut StageContext<'_, '_>,
    positions: &[usize],
    keys: &[i64],
    before: &[BeforeCutover],
) -> bool {
    for (index, &position) in positions.iter().enumerate() {
        let started = Instant::now();
        let Some(work) = work_at(cx.stage, cx.run.prepared.registry, position) else {
            cx.fail(*not_registered(cx, position));
            return false;
        };
        let redone = tx
            .transaction()
            .map_err(TransformError::from)
            .and_then(|mut savepoint| {
                let report = work
                    .transform
                    .redo_keys(&mut context(&mut savepoint, cx, &work), keys)?;
                savepoint.commit()?;
                Ok(report)
            });
        let report = match redone {
            Ok(report) => report,
            Err(error) => {
                cx.fail(failure(error, &work));
                return false;
            }
        };
        let before = before.get(index).cloned().unwrap_or_default();
        cx.report.rows_affected += before.rows_written + report.rows_written;
        cx.report
            .steps
            .push(step_report(&work, &report, &before, keys.len(), started));
        if !verify_after_step(tx, cx, work.step_name) {
            return false;
        }
    }
    true
}

fn step_report(
    work: &Work<'_>,
    report: &TransformReport,
    before: &BeforeCutover,
    keys: usize,
    started: Instant,
) -> StepReport {
    let mut notes = vec![format!(
        "made key by key: {} rows in {} batches and {} keys redone before the cutover, outside its locks; {keys} keys changed since redone under them",
        before.rows_written, before.batches, before.keys_redone
    )];
    notes.extend(report.notes.iter().cloned());
    StepReport {
        name: work.name.to_owned(),
        kind: "transform".into(),
        duration_ms: started.elapsed().as_millis() as u64,
        rows_affected: before.rows_written + report.rows_written,
        rows_read: Some(report.rows_read),
        rows_quarantined: Some(report.rows_quarantined),
        notes,
    }
}

fn context<'a, 't>(
    tx: &'a mut Transaction<'t>,
    cx: &'a StageContext<'_, '_>,
    work: &'a Work<'_>,
) -> TransformContext<'a, 't> {
    TransformContext {
        transaction: tx,
        params: &work.params,
        stage_id: &cx.stage.id,
        run_id: cx.run.run_id,
        progress: &planrun_transform::NoProgress,
    }
}

fn failure(error: TransformError, work: &Work<'_>) -> planrun_report::StageError {
    match error {
        TransformError::Database(error) => {
            stage_error(&error, Some(work.name.to_owned()), None, "", 0)
        }
        error => plain_error(Some(work.name), error.to_string()),
    }
}

fn not_registered(cx: &StageContext<'_, '_>, position: usize) -> Box<planrun_report::StageError> {
    Box::new(plain_error(
        Some(&cx.stage.steps[position].name),
        "its transform is not registered in this planrun".into(),
    ))
}
