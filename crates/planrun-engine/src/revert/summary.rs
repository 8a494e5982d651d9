//! The lines that end a revert's report, and its outcome: what was reverted (or
//! would be, in a dry run), the losses the plan declared, a refusal with the rows
//! that caused it, what did not commit and why, and the command to run next.

use planrun_report::{RevertRefusal, RunOutcome, RunReport, StageStatus};

use crate::apply::run::Runner;
use crate::db::interrupt;
use crate::options::RevertOptions;
use crate::revert::preflight::Judgement;
use crate::revert::stage::Findings;
use crate::revert::Chosen;

impl Runner<'_> {
    /// The report of a revert refused before it changed anything (exit 20), or of one
    /// with nothing to revert.
    pub(crate) fn refuse_or_nothing(
        &self,
        mut report: RunReport,
        chosen: &Chosen<'_, '_>,
        judgement: Judgement,
    ) -> RunReport {
        let revert = report.revert.get_or_insert_with(Default::default);
        if chosen.is_empty() {
            report.summary.push(format!(
                "nothing to revert: no stage after `{}` is applied",
                revert.to
            ));
            report.outcome = RunOutcome::NothingToDo;
            report.exit_code = report.outcome.exit_code();
            return report;
        }
        for refusal in &judgement.refusals {
            report
                .summary
                .push(format!("refused: {}", describe(refusal)));
        }
        report.summary.push(format!(
            "nothing was changed; next: make the revert possible (carry or remove the rows named, or declare the loss with [stage.revert_loss] and `loss = true` on the check), then run `planrun revert {} --to {}` again",
            self.plan().path.display(),
            revert.to
        ));
        revert.refusals = judgement.refusals;
        revert.declared_losses = judgement.declared_losses;
        report.stages = chosen
            .iter()
            .map(|(stage, _, _)| stage.report(StageStatus::NotRun))
            .collect();
        report.outcome = RunOutcome::RevertRefused;
        report.exit_code = report.outcome.exit_code();
        report
    }

    /// The outcome and summary of a revert that ran.
    pub(crate) fn summarise_revert(
        &self,
        report: &mut RunReport,
        findings: Findings,
        options: &RevertOptions,
    ) {
        let Findings { losses, refusals } = findings;
        let ids = |status: StageStatus| -> Vec<String> {
            report
                .stages
                .iter()
                .filter(|stage| stage.status == status)
                .map(|stage| stage.id.clone())
                .collect()
        };
        let mut reverted = ids(StageStatus::Reverted);
        reverted.extend(ids(StageStatus::WouldRun));
        let not_run = ids(StageStatus::NotRun);
        let mut summary = Vec::new();
        if !reverted.is_empty() {
            let verb = if options.dry_run {
                "would revert (dry run, rolled back)"
            } else {
                "reverted"
            };
            summary.push(format!("{verb}: {}", reverted.join(", ")));
        }
        summary.extend(findings_lines(&losses, &refusals));
        let again = format!(
            "`planrun revert {} --to {}`",
            self.plan().path.display(),
            options.to.as_deref().unwrap_or("start")
        );
        let failed = report.stages.iter().find(|stage| {
            !matches!(
                stage.status,
                StageStatus::Reverted | StageStatus::WouldRun | StageStatus::NotRun
            )
        });
        report.outcome = match failed {
            None => RunOutcome::Success,
            Some(stage) => {
                let mut line = format!("not reverted (still applied): {}", stage.id);
                if !not_run.is_empty() {
                    line.push_str(&format!("; not run: {}", not_run.join(", ")));
                }
                summary.push(line);
                match stage.status {
                    StageStatus::Interrupted => RunOutcome::Interrupted,
                    StageStatus::Blocked => RunOutcome::RevertRefused,
                    _ if stage.verification_failed() => RunOutcome::VerificationFailed,
                    _ => RunOutcome::StepFailed,
                }
            }
        };
        summary.push(match report.outcome {
            RunOutcome::Success if options.dry_run => format!("next: {again} reverts them"),
            RunOutcome::Success => format!(
                "next: `planrun apply {}` applies them again",
                self.plan().path.display()
            ),
            RunOutcome::Interrupted => format!(
                "interrupted by {}: the stage in progress rolled back and is still applied; run {again} again to finish; reverted stages will not be reverted twice",
                interrupt::requested().map_or("a signal", |signal| signal.name())
            ),
            _ => format!(
                "next: fix the cause above, then run {again} again; reverted stages will not be reverted twice"
            ),
        });
        if let Some(revert) = &mut report.revert {
            revert.declared_losses = losses;
            revert.refusals = refusals;
        }
        report.summary.extend(summary);
        report.exit_code = report.outcome.exit_code();
    }
}

/// The declared losses and the refusals a revert's stages found, one line each.
fn findings_lines<'f>(
    losses: &'f [RevertRefusal],
    refusals: &'f [RevertRefusal],
) -> impl Iterator<Item = String> + 'f {
    let lost = losses
        .iter()
        .map(|loss| format!("lost, as the plan declares: {}", describe(loss)));
    lost.chain(
        refusals
            .iter()
            .map(|refusal| format!("refused: {}", describe(refusal))),
    )
}

/// A refusal or declared loss in words: the stage, the check, why, and the rows.
fn describe(refusal: &RevertRefusal) -> String {
    let mut text = match &refusal.check {
        Some(check) => format!(
            "stage `{}`: revert precondition `{check}`: {}",
            refusal.stage, refusal.reason
        ),
        None => refusal.reason.clone(),
    };
    if !refusal.rows.is_empty() {
        text.push_str(&format!(" (rows: {})", refusal.rows));
    }
    text
}
