//! A stage's steps in order: the SQL of each read once, when the stage's checksum was
//! computed (so what runs is what the ledger records), run by its kind (`sql_step.rs`,
//! `transform_step.rs`), timed and counted into the stage's report, then the
//! verifications placed after it. A step that fails stops the stage, its error
//! explained by the blocker watch when a timeout fired.

use std::time::Instant;

use planrun_plan::StepKind;
use postgres::GenericClient;

use crate::error::EngineError;
use crate::stage::checks::verify_after_step;
use crate::stage::context::StageContext;
use crate::stage::sql_step::{run_sql, SqlStep};
use crate::stage::stage_failure::{explain_timeout, interrupted_before};
use crate::stage::transform_step::run_transform;

/// Runs the stage's steps in `range`; `Ok(false)` when one failed (the report says
/// where).
pub(crate) fn run_steps<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    range: std::ops::Range<usize>,
) -> Result<bool, EngineError> {
    let stage = cx.stage;
    for position in range {
        let step = &stage.steps[position];
        if interrupted_before(cx.report, &format!("step `{}`", step.name)) {
            return Ok(false);
        }
        let step_started = Instant::now();
        cx.run
            .observer
            .progress()
            .phase(&format!("running {}", step.name));
        // The SQL read once, when the stage's checksum was computed: what runs is
        // what the ledger records.
        let sql = stage
            .definition
            .step_sql(position, &step.name)
            .unwrap_or_default();
        let (kind, result) = match &step.kind {
            StepKind::Sql { .. } => {
                let step = SqlStep {
                    name: &step.name,
                    sql,
                    file: None,
                };
                ("sql", run_sql(conn, cx, &step))
            }
            StepKind::SqlFile { path, .. } => {
                let file = Some(path.as_str());
                let step = SqlStep {
                    name: &step.name,
                    sql,
                    file,
                };
                ("sql_file", run_sql(conn, cx, &step))
            }
            StepKind::Transform { name, params, .. } => {
                ("transform", run_transform(conn, cx, name, params))
            }
        };
        match result {
            Ok(mut step_report) => {
                step_report.kind = kind.into();
                step_report.duration_ms = step_started.elapsed().as_millis() as u64;
                cx.report.rows_affected += step_report.rows_affected;
                cx.report.rows_quarantined += step_report.rows_quarantined.unwrap_or(0);
                cx.report.steps.push(step_report);
            }
            Err(mut error) => {
                explain_timeout(&mut error, cx);
                cx.fail(*error);
                return Ok(false);
            }
        }
        if !verify_after_step(conn, cx, &step.name) {
            return Ok(false);
        }
    }
    Ok(true)
}
