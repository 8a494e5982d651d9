//! A stage's steps in order: the SQL of each read once, when the stage's checksum was
//! computed (so what runs is what the ledger records), run by its kind (`sql_step.rs`,
//! `transform_step.rs`), timed and counted into the stage's report, then the
//! verifications placed after it. A step that fails stops the stage, its error
//! explained by the blocker watch when a timeout fired.

use std::time::Instant;

use planrun_plan::StepKind;
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::context::RunState;
use crate::error::EngineError;
use crate::prepared::PreparedStage;
use crate::report::{StageReport, StageStatus};
use crate::stage::stage_failure::{explain_timeout, interrupted_before};

impl Runner<'_> {
    /// Runs the stage's steps in `range`; `Ok(false)` when one failed (the report
    /// says where).
    pub(crate) fn run_steps<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        stage: &PreparedStage<'_>,
        range: std::ops::Range<usize>,
        stage_report: &mut StageReport,
        in_transaction: bool,
    ) -> Result<bool, EngineError> {
        for position in range {
            let step = &stage.steps[position];
            if interrupted_before(stage_report, &format!("step `{}`", step.name)) {
                return Ok(false);
            }
            let step_started = Instant::now();
            run.observer
                .progress()
                .phase(&format!("running {}", step.name));
            // The SQL read once, when the stage's checksum was computed: what runs is
            // what the ledger records.
            let sql = stage
                .definition
                .step_sql(position, &step.name)
                .unwrap_or_default();
            let (kind, result) = match &step.kind {
                StepKind::Sql { .. } => (
                    "sql",
                    self.run_sql(conn, run, stage, sql, None, in_transaction, &step.name),
                ),
                StepKind::SqlFile { path, .. } => {
                    let file = Some(path.as_str());
                    (
                        "sql_file",
                        self.run_sql(conn, run, stage, sql, file, in_transaction, &step.name),
                    )
                }
                StepKind::Transform { name, params, .. } => (
                    "transform",
                    self.run_transform(conn, run, name, params, stage),
                ),
            };
            match result {
                Ok(mut step_report) => {
                    step_report.kind = kind.into();
                    step_report.duration_ms = step_started.elapsed().as_millis() as u64;
                    stage_report.rows_affected += step_report.rows_affected;
                    stage_report.rows_quarantined += step_report.rows_quarantined.unwrap_or(0);
                    stage_report.steps.push(step_report);
                }
                Err(mut error) => {
                    explain_timeout(&mut error, run, stage);
                    stage_report.status = StageStatus::Failed;
                    stage_report.error = Some(*error);
                    return Ok(false);
                }
            }
            if !self.verify_after_step(conn, run, stage, &step.name, stage_report) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
