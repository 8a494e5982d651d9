//! Drift: an applied stage whose definition has changed since it ran. A recorded
//! checksum matches when it is today's or one an older planrun computed for the
//! same definition (SQL fingerprinted by its text, throttles included), so an upgrade
//! shows no drift; what changed is listed entry by
//! entry, with line diffs of the SQL. Drift is decided before anything runs: without
//! `--allow-drift` the run is refused before it takes a run id, so it leaves no row in
//! the ledger.

use std::collections::BTreeMap;

use crate::apply::run::Runner;
use crate::checksum::{self, StageDefinition};
use crate::ledger::RecordedStage;
use crate::prepared::PreparedStage;
use crate::report::{RunOutcome, RunReport, SqlDiff, StageStatus};

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

    /// The stages of `selection` applied before whose definition has changed since.
    pub(crate) fn drifted(
        &self,
        done: &BTreeMap<String, RecordedStage>,
        selection: &[(&PreparedStage<'_>, bool, Option<String>)],
    ) -> Vec<usize> {
        let mut drifted = Vec::new();
        for &(stage, _, _) in selection {
            if let Some(recorded) = done.get(&stage.id) {
                if !stage.matches_recorded(&recorded.checksum) {
                    drifted.push(stage.position);
                }
            }
        }
        drifted
    }

    /// The report of a run refused for the `drifted` stages: what changed in each, and
    /// what the others would have been.
    pub(crate) fn refuse_drift(
        &self,
        mut report: RunReport,
        done: &BTreeMap<String, RecordedStage>,
        drifted: &[usize],
        selection: &[(&PreparedStage<'_>, bool, Option<String>)],
    ) -> RunReport {
        for &(stage, selected, ref why) in selection {
            let mut stage_report = stage.report(StageStatus::NotRun);
            if drifted.contains(&stage.position) {
                stage_report.status = StageStatus::Drifted;
                (stage_report.drift, stage_report.drift_diff) =
                    self.drift(stage, &done[&stage.id].definition);
            } else if !selected {
                stage_report.status = StageStatus::NotSelected;
                stage_report.note = why.clone();
            } else if done.contains_key(&stage.id) {
                stage_report.status = StageStatus::AlreadyApplied;
            }
            report.stages.push(stage_report);
        }
        let ids: Vec<&str> = drifted
            .iter()
            .map(|&i| self.plan().stages[i].id.as_str())
            .collect();
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
