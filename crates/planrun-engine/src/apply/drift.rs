//! Drift: an applied stage whose definition has changed since it ran. A recorded
//! checksum matches when it is today's or one an older planrun computed for the
//! same definition (SQL fingerprinted by its text, throttles included), so an upgrade
//! shows no drift; what changed is listed entry by
//! entry, with line diffs of the SQL. Drift is decided before anything runs: without
//! `--allow-drift` the run is refused before it takes a run id, so it leaves no row in
//! the ledger.

use crate::apply::run::Runner;
use crate::checksum::{self, StageDefinition};
use crate::decide::{Decision, Disposition};
use crate::prepared::PreparedStage;
use planrun_report::{RunOutcome, RunReport, SqlDiff, StageStatus};

impl Runner<'_> {
    /// How `stage` differs from `recorded` (its ledger definition), for the
    /// report: one line per changed entry, and line diffs of the changed SQL. The
    /// current definition is taken in the form closest to `recorded`, which is the
    /// form it was written in, so a ledger row from an older planrun (`sha256:`
    /// entries, throttles included) lists only what changed.
    pub(crate) fn drift(
        &self,
        stage: &PreparedStage<'_>,
        recorded: &StageDefinition,
    ) -> (Vec<String>, Vec<SqlDiff>) {
        let current = std::iter::once(&stage.definition)
            .chain(&stage.former_definitions)
            .min_by_key(|form| checksum::differences(recorded, form).len())
            .expect("today's form is always there");
        (
            checksum::differences(recorded, current),
            checksum::sql_diffs(recorded, current),
        )
    }

    /// The report of a run refused for its drifted stages: what changed in each, and
    /// what the others would have been.
    pub(crate) fn refuse_drift(
        &self,
        mut report: RunReport,
        decisions: &[Decision<'_, '_, '_>],
    ) -> RunReport {
        let mut ids: Vec<&str> = Vec::new();
        for Decision { stage, disposition } in decisions {
            let mut stage_report = stage.report(StageStatus::NotRun);
            match disposition {
                Disposition::Drifted(recorded)
                | Disposition::NotSelected {
                    applied: Some(recorded),
                    drifted: true,
                    ..
                } => {
                    stage_report.status = StageStatus::Drifted;
                    (stage_report.drift, stage_report.drift_diff) =
                        self.drift(stage, &recorded.definition);
                    ids.push(stage.id());
                }
                Disposition::NotSelected { why, .. } => {
                    stage_report.status = StageStatus::NotSelected;
                    stage_report.note = why.clone();
                }
                Disposition::Applied(_) => stage_report.status = StageStatus::AlreadyApplied,
                Disposition::Resume(_) | Disposition::Run => {}
            }
            report.stages.push(stage_report);
        }
        report.outcome = RunOutcome::Drift;
        report.summary.push(format!(
            "nothing ran, nothing recorded: applied stage{} {} changed since {} ran",
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", "),
            if ids.len() == 1 { "it" } else { "they" },
        ));
        report.summary.push(
            "next: restore the stage definitions that ran, or accept the change with `planrun apply --allow-drift`".into(),
        );
        report.exit_code = report.outcome.exit_code();
        report
    }
}
