//! What a batched attempt leaves when the stage is then run atomically (issue 21):
//! an operator whose online stage failed on a bad row may switch the step to atomic
//! (say with `on_invalid = "quarantine"`) and apply it. The batched attempt's
//! checkpoint, its change capture on the sources and the rows its batches committed
//! are still there.
//!
//! The atomic stage removes them first, in its own transaction, under its locks:
//! the transform of the stage's step removes what the batches wrote
//! (`Transform::reset`, as `planrun reset` does), the capture's triggers and recorded
//! changes go, and the checkpoint goes. The atomic run then starts from the state
//! the batched attempt started from, and everything commits together or not at all:
//! a failed atomic run leaves the half-done attempt as it was. Left in place, the
//! capture would keep firing on the application's writes, `status` would call the
//! applied stage "partial", and a later `planrun reset` would delete the applied
//! stage's rows.
//!
//! A stage with no transform step, or outside a transaction, cannot remove them
//! safely: it refuses and says how (finish the attempt with the batched plan, or
//! abandon it with `planrun reset`).

use planrun_plan::StepKind;
use planrun_report::StageReport;
use planrun_transform::{transform_params, TransformContext};
use postgres::GenericClient;

use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::ledger::{self, Checkpoint};
use crate::stage::context::StageContext;
use crate::stage::stage_failure::plain_error;
use crate::stage::stage_locks::database_error;

/// The leftovers of a batched attempt found before an atomic run of its stage.
struct Leftovers {
    checkpoint: Option<Checkpoint>,
    capture_objects: i64,
    changes: i64,
}

impl Leftovers {
    fn find<C: GenericClient>(
        conn: &mut C,
        plan: &str,
        stage: &str,
    ) -> Result<Option<Self>, EngineError> {
        let checkpoint = ledger::checkpoints(conn, plan)?.remove(stage);
        let (capture_objects, changes) = change_capture::leftovers(conn, plan, stage).map_err(
            EngineError::database("cannot look for a batched attempt's change capture"),
        )?;
        if checkpoint.is_none() && capture_objects == 0 && changes == 0 {
            return Ok(None);
        }
        Ok(Some(Leftovers {
            checkpoint,
            capture_objects,
            changes,
        }))
    }

    /// "the half-done batched attempt of run 3 (5 batches, after key 250; its change
    /// capture with 12 recorded changes)".
    fn describe(&self) -> String {
        let attempt = self.checkpoint.as_ref().map_or_else(
            || "the change capture of an earlier batched attempt".to_owned(),
            |checkpoint| {
                format!(
                    "the half-done batched attempt of run {} ({} batches, after key {})",
                    checkpoint.run_id,
                    checkpoint.batches,
                    checkpoint
                        .last_key
                        .map_or("-".into(), |key| key.to_string())
                )
            },
        );
        if self.capture_objects > 0 || self.changes > 0 {
            format!(
                "{attempt}; its change capture ({} triggers and functions, {} recorded changes)",
                self.capture_objects, self.changes
            )
        } else {
            attempt
        }
    }
}

/// Removes the leftovers of a batched attempt at the stage before it runs atomically
/// in `conn`'s transaction; `false` when the stage must stop (the report says why and
/// how to go on).
pub(crate) fn remove_abandoned_attempt<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
) -> Result<bool, EngineError> {
    let (stage, plan) = (cx.stage, cx.run.plan_name());
    let Some(leftovers) = Leftovers::find(conn, plan, &stage.id)? else {
        return Ok(true);
    };
    let registry = cx.run.prepared.registry;
    let transform = stage.steps.iter().find_map(|step| match &step.kind {
        StepKind::Transform { name, params, .. } => registry
            .get(name)
            .map(|transform| (transform, transform_params(params))),
        _ => None,
    });
    let Some((transform, params)) = transform.filter(|_| cx.in_transaction) else {
        cx.fail(plain_error(
            Some("batched attempt"),
            format!(
                "{} is still in the database, and this stage cannot remove it first ({}); finish it with the plan that started it (`planrun apply`), or abandon it with `planrun reset {}` and that plan; nothing was changed",
                leftovers.describe(),
                if cx.in_transaction { "it has no transform step to remove what the batches wrote" } else { "it runs outside a transaction" },
                stage.id
            ),
        ));
        return Ok(false);
    };
    let failed = || EngineError::database("cannot remove a batched attempt's leftovers");
    change_capture::own_writes(conn).map_err(failed())?;
    let mut savepoint = conn.transaction().map_err(failed())?;
    let removed = transform
        .reset(&mut TransformContext {
            transaction: &mut savepoint,
            params: &params,
            stage_id: &stage.id,
            run_id: cx.run.run_id,
            progress: &planrun_transform::NoProgress,
        })
        .map_err(|error| {
            EngineError::Selection(format!(
                "cannot remove what the batched attempt at `{}` wrote: {error}",
                stage.id
            ))
        })?;
    savepoint.commit().map_err(failed())?;
    let retries = ("change capture removal", &stage.lock_retries);
    cx.with_lock_retries(conn, retries, database_error, |savepoint| {
        change_capture::remove(savepoint, plan, &stage.id)
    })
    .0
    .map_err(failed())?;
    ledger::finish_checkpoint(conn, plan, &stage.id)?;
    change_capture::end_own_writes(conn).map_err(failed())?;
    let note = format!(
        "{} removed first, in this stage's transaction: {}",
        leftovers.describe(),
        removed.notes.join("; ")
    );
    cx.run.observer.note(&format!("{}: {note}", stage.id));
    cx.report.note = Some(note.clone());
    cx.report.recorded_note = Some(note);
    Ok(true)
}

/// Whether a stage whose skip rule holds may commit its skip: not once it removed a
/// batched attempt, whose rows would go with the skip (the report then says why).
pub(crate) fn may_skip(stage_report: &mut StageReport, stage: &str) -> bool {
    if stage_report.recorded_note.is_none() {
        return true;
    }
    stage_report.status = planrun_report::StageStatus::Failed;
    stage_report.error = Some(plain_error(
        Some("batched attempt"),
        format!(
            "the stage's skip rule holds, yet a batched attempt of it is half done; nothing was changed: inspect it, then finish it with the plan that started it or abandon it with `planrun reset {stage}`"
        ),
    ));
    false
}

/// The report of a stage that rolled back after removing a batched attempt: the
/// attempt is still there.
pub(crate) fn rolled_back(stage_report: &mut StageReport) {
    if stage_report.recorded_note.take().is_some() {
        stage_report.note = Some(
            "a half-done batched attempt of this stage was found; its removal rolled back with the stage, so it is still there".into(),
        );
    }
}
