//! `planrun plan --revert --to STAGE`: what a revert would do now, written nowhere.
//! In one rolled-back transaction, without taking the plan's lock or any table's:
//! the stages it would undo (newest first), each with its revert steps and the locks
//! it would hold, its revert preconditions evaluated now, and the refusals and
//! declared losses `revert` would meet before changing anything.

use planrun_plan::StepKind;
use planrun_report::{Command, HeldLock, RunOutcome, RunReport, StageStatus, StepReport};

use crate::apply::run::Runner;
use crate::db::connect::Target;
use crate::error::EngineError;
use crate::ledger;
use crate::options::RevertOptions;
use crate::prepared::PreparedStage;
use crate::revert::{preflight, RevertViews};
use crate::stage::checks::check_now;

impl Runner<'_> {
    /// What `revert` with `options` would do now, stage by stage. Writes nothing.
    pub fn preview_revert(
        &self,
        target: &Target,
        options: &RevertOptions,
    ) -> Result<RunReport, EngineError> {
        let views = RevertViews::of(self);
        let prepared_views = views.prepare(self)?;
        let mut client = target.connect(&format!("planrun plan --revert {}", self.plan().name))?;
        let mut tx = client.transaction().map_err(EngineError::database(
            "cannot begin a read-only transaction",
        ))?;
        self.run_setup(&mut tx)?;
        let done = ledger::done_results(&mut tx, &self.plan().name)?;
        let (chosen, revert_plan) = self.choose(options, &done, &prepared_views)?;
        let mut report = RunReport::new(
            Command::Revert,
            &self.plan().name,
            target,
            &target.source,
            true,
        );
        report.revert = Some(revert_plan);
        let captures = ledger::recorded_captures(&done);
        let judgement = preflight::judge(&mut tx, &chosen, &captures)?;
        if chosen.is_empty() || !judgement.refusals.is_empty() {
            let _ = tx.rollback();
            let mut report = self.refuse_or_nothing(report, &chosen, judgement);
            for (stage_report, (forward, view, _)) in report.stages.iter_mut().zip(&chosen) {
                describe_stage(stage_report, forward, *view);
            }
            return Ok(report);
        }
        for &(forward, view, applied) in &chosen {
            let mut stage_report = forward.report(StageStatus::WouldRun);
            match (view, applied) {
                (Some(view), true) => {
                    for check in &view.preconditions {
                        let result = check_now(&mut tx, check, &captures);
                        stage_report.preconditions.push(result);
                    }
                    describe_stage(&mut stage_report, forward, Some(view));
                }
                _ => stage_report.note = Some("skipped when applied: nothing to undo".into()),
            }
            report.stages.push(stage_report);
        }
        let _ = tx.rollback();
        report.outcome = RunOutcome::Success;
        report.exit_code = report.outcome.exit_code();
        self.summarise_revert(
            &mut report,
            crate::revert::stage::Findings {
                losses: judgement.declared_losses,
                refusals: Vec::new(),
            },
            &RevertOptions {
                dry_run: true,
                ..options.clone()
            },
        );
        Ok(report)
    }
}

/// The revert's steps and the locks it would hold, in `stage_report`.
fn describe_stage(
    stage_report: &mut planrun_report::StageReport,
    forward: &PreparedStage<'_>,
    view: Option<&PreparedStage<'_>>,
) {
    let Some(view) = view else {
        stage_report.note = Some(format!(
            "irreversible: {}",
            match forward.reversibility() {
                planrun_plan::Reversibility::Irreversible(why) => why,
                planrun_plan::Reversibility::Declared => String::new(),
            }
        ));
        return;
    };
    stage_report.steps = view
        .steps
        .iter()
        .map(|step| StepReport {
            name: step.name.clone(),
            kind: match step.kind {
                StepKind::Sql { .. } => "sql",
                StepKind::SqlFile { .. } => "sql_file",
                StepKind::Transform { .. } => "transform",
            }
            .into(),
            duration_ms: 0,
            rows_affected: 0,
            rows_read: None,
            rows_quarantined: None,
            notes: Vec::new(),
        })
        .collect();
    stage_report.locks = view
        .all_locks
        .iter()
        .map(|lock| HeldLock {
            table: lock.table.clone(),
            mode: lock.mode.to_string(),
            declared_by: lock.declared_by.clone(),
            attempts: 0,
            waited_ms: 0,
        })
        .collect();
}
