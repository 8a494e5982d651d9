//! The ledger against the plan, as Flyway's validation does: a stage the ledger has
//! applied that the plan no longer holds, a pending stage whose definition is an
//! applied stage's under another id (a rename), and a pending stage placed before
//! stages already applied. `plan` and `status` report them; `apply` refuses to run
//! until each is accepted (`--accept-missing`, `--rename OLD=NEW`,
//! `--allow-out-of-order`), and records the decisions in the ledger and the report.

use std::collections::BTreeMap;
use std::time::SystemTime;

use planrun_report::{RunOutcome, RunReport, StageStatus};
use serde::Serialize;

use crate::apply::run::Runner;
use crate::apply::selection::is_selected;
use crate::error::EngineError;
use crate::ledger::{self, RecordedStage, ResultStatus, StageRecord};
use crate::options::{ApplyOptions, HistoryAcceptance};
use crate::prepared::PreparedStage;

/// Where the ledger and the plan disagree about history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    /// Applied (or skipped) stages that are not in the plan, and not renamed.
    pub missing: Vec<String>,
    /// `(old, new)`: an applied stage no longer in the plan whose definition is that
    /// of the pending stage `new`.
    pub renamed: Vec<(String, String)>,
    /// `(pending, applied)`: a pending stage the plan orders before an applied one.
    pub out_of_order: Vec<(String, String)>,
}

impl History {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.renamed.is_empty() && self.out_of_order.is_empty()
    }

    /// One line per finding, for reports.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (old, new) in &self.renamed {
            lines.push(format!(
                "stage `{new}` is applied stage `{old}` under a new id (the same definition; `{old}` is no longer in the plan): record the rename with `--rename {old}={new}`, or it runs again"
            ));
        }
        for id in &self.missing {
            lines.push(format!(
                "applied stage `{id}` is no longer in the plan: its changes stay in the database; accept with `--accept-missing`"
            ));
        }
        for (pending, applied) in &self.out_of_order {
            lines.push(format!(
                "pending stage `{pending}` comes before applied stage `{applied}` in the plan's order, which ran without it: it would run after it; accept with `--allow-out-of-order`"
            ));
        }
        lines
    }
}

impl Runner<'_> {
    /// Compares `done` (the ledger's applied and skipped stages) with the plan; only a
    /// stage that `would_run` (selected by the command) can be out of order.
    pub(crate) fn history(
        &self,
        done: &BTreeMap<String, RecordedStage>,
        would_run: &dyn Fn(&PreparedStage<'_>) -> bool,
    ) -> History {
        let plan = self.plan();
        let mut history = History::default();
        let gone: Vec<(&String, &RecordedStage)> = done
            .iter()
            .filter(|(id, _)| plan.stage(id).is_none())
            .collect();
        for (id, recorded) in gone {
            let renamed_to = self.prepared().stages.iter().find(|stage| {
                !done.contains_key(&stage.id) && stage.matches_recorded(&recorded.checksum)
            });
            match renamed_to {
                Some(stage) => history.renamed.push((id.clone(), stage.id.clone())),
                None => history.missing.push(id.clone()),
            }
        }
        // Out of order: a pending stage placed before an applied one in the plan's
        // order (dependencies first, then file position). The applied one ran
        // without it; running it now reverses the order the plan declares.
        let order = self.dag().order();
        let renamed_new: Vec<&str> = history
            .renamed
            .iter()
            .map(|(_, new)| new.as_str())
            .collect();
        let is_done = |id: &str| done.contains_key(id) || renamed_new.contains(&id);
        for (position, stage) in self.prepared().in_order().enumerate() {
            if is_done(&stage.id) || !would_run(stage) {
                continue;
            }
            let applied_later = order[position + 1..]
                .iter()
                .map(|&later| &plan.stages[later].id)
                .find(|id| is_done(id));
            if let Some(applied) = applied_later {
                history
                    .out_of_order
                    .push((stage.id.clone(), applied.clone()));
            }
        }
        history
    }
}

impl HistoryAcceptance {
    /// The findings these flags do not accept.
    pub fn refused(&self, history: &History) -> History {
        History {
            missing: if self.accept_missing {
                Vec::new()
            } else {
                history.missing.clone()
            },
            renamed: history
                .renamed
                .iter()
                .filter(|pair| !self.renames.contains(pair))
                .cloned()
                .collect(),
            out_of_order: if self.allow_out_of_order {
                Vec::new()
            } else {
                history.out_of_order.clone()
            },
        }
    }
}

impl Runner<'_> {
    /// Before a run id is taken: refuses the run (`Some` report, exit 14) while a
    /// finding is not accepted, and an `--rename` that names no rename (`Err`). A
    /// refused run changed nothing and leaves no row in the ledger, as `plan` leaves
    /// none.
    pub(crate) fn refuse_history(
        &self,
        done: &BTreeMap<String, RecordedStage>,
        options: &ApplyOptions,
        selection: &[(&PreparedStage<'_>, bool, Option<String>)],
        report: &RunReport,
    ) -> Result<Option<RunReport>, EngineError> {
        let history = self.history(done, &|stage| is_selected(selection, stage));
        let accepted = &options.history;
        for (old, new) in &accepted.renames {
            if !history.renamed.contains(&(old.clone(), new.clone())) {
                return Err(EngineError::Selection(format!(
                    "--rename {old}={new}: the ledger has no applied stage `{old}` missing from the plan whose definition is that of pending stage `{new}`"
                )));
            }
        }
        let refused = accepted.refused(&history);
        if refused.is_empty() {
            return Ok(None);
        }
        let mut refusal = report.clone();
        refusal.history = refused.lines();
        for stage in self.prepared().in_order() {
            let status = if done.contains_key(&stage.id) {
                StageStatus::AlreadyApplied
            } else {
                StageStatus::NotRun
            };
            refusal.stages.push(stage.report(status));
        }
        refusal.outcome = RunOutcome::Drift;
        refusal.exit_code = refusal.outcome.exit_code();
        refusal.summary.push(
            "nothing ran, nothing recorded: the ledger and the plan disagree (see history above)"
                .into(),
        );
        Ok(Some(refusal))
    }

    /// Once [`Runner::refuse_history`] has not refused the run: records the accepted
    /// findings (a `renamed` row for the old id and an `applied` one for the new, a
    /// `retired` row for a stage gone) and notes them in the report.
    pub(crate) fn settle_history<C: postgres::GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        done: &mut BTreeMap<String, RecordedStage>,
        options: &ApplyOptions,
        selection: &[(&PreparedStage<'_>, bool, Option<String>)],
        report: &mut RunReport,
    ) -> Result<(), EngineError> {
        let history = self.history(done, &|stage| is_selected(selection, stage));
        let accepted = &options.history;
        for (old, new) in &history.renamed {
            let recorded = done[old].clone();
            let stage = self
                .prepared()
                .stage(new)
                .expect("a rename's new id is a plan stage");
            self.record_history(
                conn,
                run_id,
                old,
                ResultStatus::Renamed,
                &recorded,
                &format!("renamed to `{new}` (apply --rename)"),
            )?;
            let mut moved = recorded.clone();
            moved.status = ResultStatus::Applied;
            moved.checksum = stage.checksum.clone();
            // Recorded in today's form, with today's checksum for the new id.
            moved.definition = stage.definition.clone();
            self.record_history(
                conn,
                run_id,
                new,
                ResultStatus::Applied,
                &moved,
                &format!("renamed from `{old}` (apply --rename); not run again"),
            )?;
            done.remove(old);
            done.insert(new.clone(), moved);
            report.history.push(format!(
                "recorded the rename of applied stage `{old}` to `{new}`"
            ));
        }
        if accepted.accept_missing {
            for id in &history.missing {
                let recorded = done[id].clone();
                self.record_history(
                    conn,
                    run_id,
                    id,
                    ResultStatus::Retired,
                    &recorded,
                    "no longer in the plan (apply --accept-missing)",
                )?;
                done.remove(id);
                report.history.push(format!(
                    "retired applied stage `{id}`, which the plan no longer holds"
                ));
            }
        }
        if accepted.allow_out_of_order {
            for (pending, applied) in &history.out_of_order {
                report.history.push(format!(
                    "runs pending stage `{pending}` after applied stage `{applied}`, though the plan orders it before (apply --allow-out-of-order)"
                ));
            }
        }
        Ok(())
    }

    fn record_history<C: postgres::GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        stage_id: &str,
        status: ResultStatus,
        recorded: &RecordedStage,
        note: &str,
    ) -> Result<(), EngineError> {
        ledger::record_stage(
            conn,
            &StageRecord {
                run_id,
                plan_name: &self.plan().name,
                stage_id,
                status,
                checksum: &recorded.checksum,
                definition: &recorded.definition,
                drift_accepted: false,
                skip_reason: Some(note),
                started_at: SystemTime::now(),
                duration_ms: 0,
                rows_affected: 0,
                rows_quarantined: 0,
                captures: serde_json::to_value(&recorded.captures).unwrap_or_default(),
                verifications: serde_json::json!([]),
                error: None,
                accepted_findings: serde_json::json!([]),
            },
        )
    }
}
