//! The lines that end a run's report: what committed, what did not and why, and the
//! command to run next, including after an interruption (the stage rolled back, or a
//! batched stage half done with how to resume or abandon it, those not run, the
//! backup). The outcome is settled here too: a failed stage's checks or
//! error decide between a failed precondition, verification or step.

use crate::apply::run::Runner;
use crate::db::interrupt;
use crate::options::ApplyOptions;
use planrun_report::{RunOutcome, RunReport, StageReport, StageStatus};

impl Runner<'_> {
    pub(crate) fn summarise(
        &self,
        report: &mut RunReport,
        committed: &[String],
        options: &ApplyOptions,
    ) {
        let verb = if options.dry_run {
            "would commit (dry run, rolled back)"
        } else {
            "committed"
        };
        if !committed.is_empty() {
            report
                .summary
                .push(format!("{verb}: {}", committed.join(", ")));
        }
        if report.outcome == RunOutcome::Interrupted {
            self.summarise_interruption(report);
            return;
        }
        let failed = report
            .stages
            .iter()
            .find(|stage| matches!(stage.status, StageStatus::Failed | StageStatus::Blocked));
        if let Some(failed) = failed {
            let not_run: Vec<&str> = report
                .stages
                .iter()
                .filter(|stage| stage.status == StageStatus::NotRun)
                .map(|stage| stage.id.as_str())
                .collect();
            report.summary.push(format!(
                "not committed: {}{}",
                failed.id,
                if not_run.is_empty() {
                    String::new()
                } else {
                    format!("; not run: {}", not_run.join(", "))
                }
            ));
            let next = match failed.status {
                StageStatus::Blocked => format!(
                    "next: make the failed precondition of `{}` hold (see above), then run `planrun apply {}` again",
                    failed.id,
                    self.plan().path.display()
                ),
                _ => format!(
                    "next: fix the cause above, check with `planrun plan {}`, then run `planrun apply {}` again; committed stages will not run twice",
                    self.plan().path.display(),
                    self.plan().path.display()
                ),
            };
            report.summary.push(next);
            report.outcome = match (report.outcome, failed.status) {
                (RunOutcome::PreconditionFailed, _) | (_, StageStatus::Blocked) => {
                    RunOutcome::PreconditionFailed
                }
                _ if failed.verifications.iter().any(|v| !v.passed) && failed.error.is_none() => {
                    RunOutcome::VerificationFailed
                }
                _ => RunOutcome::StepFailed,
            };
            report.exit_code = report.outcome.exit_code();
        } else if report.outcome == RunOutcome::NothingToDo {
            report
                .summary
                .push("nothing to do: every selected stage is already applied".into());
        }
    }

    /// What an interrupted run leaves: the stage rolled back or half done, those not
    /// run, the backup, and how to go on.
    fn summarise_interruption(&self, report: &mut RunReport) {
        let signal = interrupt::requested().map_or("a signal", |interrupted| interrupted.name());
        let ids = |status: StageStatus| -> Vec<&str> {
            report
                .stages
                .iter()
                .filter(|stage| stage.status == status)
                .map(|stage| stage.id.as_str())
                .collect()
        };
        let (half_done, rolled_back): (Vec<&StageReport>, Vec<&StageReport>) = report
            .stages
            .iter()
            .filter(|stage| stage.status == StageStatus::Interrupted)
            .partition(|stage| stage.left_behind.is_some());
        let mut line = format!("interrupted by {signal}");
        for (label, stages) in [
            ("half done", names(&half_done)),
            ("rolled back", names(&rolled_back)),
            ("not run", ids(StageStatus::NotRun)),
        ] {
            if !stages.is_empty() {
                line.push_str(&format!("; {label}: {}", stages.join(", ")));
            }
        }
        let resume = half_done
            .iter()
            .filter_map(|stage| Some((stage.id.as_str(), stage.left_behind.as_ref()?)))
            .map(|(id, left)| left.next(id))
            .next()
            .unwrap_or_else(|| {
                format!(
                    "run `planrun apply {}` again to continue",
                    self.plan().path.display()
                )
            });
        let next = format!(
            "next: {resume}; committed stages will not run twice{}",
            report
                .backup_file
                .as_ref()
                .map(|file| format!(" (the backup taken before the first change: {file})"))
                .unwrap_or_default()
        );
        report.summary.push(line);
        report.summary.push(next);
    }
}

fn names<'r>(stages: &[&'r StageReport]) -> Vec<&'r str> {
    stages.iter().map(|stage| stage.id.as_str()).collect()
}
