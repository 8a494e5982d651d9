//! What a batched stage that stopped part-way leaves behind (issue 21, item 11).
//! Unlike an atomic stage, it does not roll back whole: its committed batches, its
//! checkpoint and its change capture stay, so a report saying "rolled back" would be
//! false. They are read back from the ledger and the catalog once the stage has
//! stopped, so the report says what is there, not what planrun meant to do.

use planrun_report::{LeftBehind, StageReport, StageStatus};
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::db::interrupt;
use crate::error::EngineError;
use crate::ledger;
use crate::ledger::change_capture;
use crate::prepared::PreparedStage;

/// What remains of `stage` of `plan` (whose file is `plan_path`), or `None` when it
/// left no checkpoint: nothing of it committed.
pub(crate) fn left_behind<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    plan_path: &str,
    stage: &str,
) -> Result<Option<LeftBehind>, EngineError> {
    let Some(checkpoint) = ledger::checkpoints(conn, plan)?.remove(stage) else {
        return Ok(None);
    };
    let capture_on = change_capture::installed_on(conn, plan, stage)
        .map_err(EngineError::database("cannot read the change capture"))?;
    let pending_changes = change_capture::pending(conn, plan, stage)
        .map_err(EngineError::database("cannot count the captured changes"))?;
    Ok(Some(LeftBehind {
        batches: checkpoint.batches,
        rows_read: checkpoint.rows_read,
        rows_written: checkpoint.rows_written,
        rows_quarantined: checkpoint.rows_quarantined,
        last_key: checkpoint.last_key,
        capture_on,
        pending_changes,
        resume: format!("planrun apply {plan_path}"),
        abandon: format!("planrun reset {stage} {plan_path}"),
    }))
}

impl Runner<'_> {
    /// After a stage stopped: a batched stage's report says what remains of it, and
    /// an interrupted stage is marked so, saying what rolled back and what did not.
    pub(crate) fn say_what_remains<C: GenericClient>(
        &self,
        conn: &mut C,
        stage: &PreparedStage<'_>,
        stage_report: &mut StageReport,
    ) -> Result<(), EngineError> {
        if stage_report.status != StageStatus::Failed {
            return Ok(());
        }
        let interrupted = interrupt::requested();
        if interrupted.is_some() {
            // The stage has stopped: from here on the run only records and reports,
            // which the signal watcher's cancels must not break.
            interrupt::acknowledge();
        }
        let left = if stage.batched.is_some() {
            self.read_left_behind(conn, stage)
        } else {
            Ok(None)
        };
        if let Ok(Some(left)) = &left {
            stage_report.rows_affected = u64::try_from(left.rows_written).unwrap_or(0);
            stage_report.left_behind = Some(left.clone());
        }
        let Some(interrupted) = interrupted else {
            return Ok(());
        };
        // Whatever failed, the signal is why: the cancelled statement, or the check
        // before the next step, batch or commit.
        stage_report.status = StageStatus::Interrupted;
        let stage = &stage.stage.id;
        stage_report.note = Some(match left {
            Ok(None) => format!(
                "interrupted by {}; everything the stage did was rolled back",
                interrupted.name()
            ),
            Ok(Some(left)) => format!(
                "interrupted by {}; the transaction in flight rolled back, the rest remains: {}; {}",
                interrupted.name(),
                left.describe(),
                left.next(stage)
            ),
            Err(error) => format!(
                "interrupted by {}; the transaction in flight rolled back, but what the stage committed before could not be read ({error}): `planrun status` shows it",
                interrupted.name()
            ),
        });
        Ok(())
    }

    /// [`left_behind`], tried a second time if the first read met the signal
    /// watcher's last cancel, sent before it was told the stage had stopped.
    fn read_left_behind<C: GenericClient>(
        &self,
        conn: &mut C,
        stage: &PreparedStage<'_>,
    ) -> Result<Option<LeftBehind>, EngineError> {
        let plan = self.plan();
        let path = plan.path.display().to_string();
        left_behind(conn, &plan.name, &path, stage.id())
            .or_else(|_| left_behind(conn, &plan.name, &path, stage.id()))
    }
}
