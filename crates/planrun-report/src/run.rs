//! The run report: one serde model that the CLI renders as a table on a terminal
//! and as JSON with `--format json`, the `planrun.apply`, `planrun.plan` and
//! `planrun.verify` documents ([`RunReport::document`]; fields documented in
//! `docs/exit-codes.md`, schemas in `docs/schemas/`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Local};
use planrun_contract::{exit_codes, format, Document, Envelope, Format, OutcomeCode};
use schemars::JsonSchema;
use serde::Serialize;

use crate::budget::BudgetEstimate;
use crate::command::Command;
use crate::lock_weight::StageLockWeight;
use crate::revert::RevertPlan;
use crate::stage::{StageReport, StageStatus};

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunReport {
    /// `apply`, `plan`, `verify`, `revert`.
    #[schemars(with = "String")]
    pub command: Command,
    pub plan: String,
    /// The database, password redacted.
    pub target: String,
    /// Where the target came from: `--database-url`, `DATABASE_URL` (the
    /// environment), `./.env`, `the PG* variables`, or `planrun's throwaway cluster` (one
    /// planrun made). Absent from documents written before it was added.
    #[serde(default)]
    pub target_source: String,
    pub dry_run: bool,
    pub run_id: Option<i64>,
    pub backup_file: Option<String>,
    pub stages: Vec<StageReport>,
    /// How the run ended; in JSON the envelope's `outcome` says it as an
    /// [`OutcomeCode`] ([`RunReport::outcome_code`]).
    #[serde(skip)]
    pub outcome: RunOutcome,
    /// In JSON, the envelope's `exit_code`.
    #[serde(skip)]
    pub exit_code: i32,
    /// When the command started: the envelope's `started_at`.
    #[serde(skip)]
    pub started: DateTime<Local>,
    /// What committed, what did not, and the next command to run, in words; for
    /// scripts the same facts are in `outcome`, `committed` and `stage_counts`.
    pub summary: Vec<String>,
    /// Where the ledger and the plan disagreed (a stage gone, renamed, out of order),
    /// and what this run decided about it.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub history: Vec<String>,
    /// `plan`: every stage's locks and lock findings, weighed by the tables' size and
    /// write rate on the target.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub lock_impact: Vec<StageLockWeight>,
    /// `plan`: the newest (or given) rehearsal's lock estimates against the budgets.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lock_budget: Option<BudgetEstimate>,
    /// `revert`: where it reverts to, the stages it undoes, refusals and declared
    /// losses.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revert: Option<RevertPlan>,
}

impl RunReport {
    /// An empty report of `command` on `plan`; stages and outcome are filled in as it runs.
    /// `target` is shown as it displays (password redacted), with where it came from.
    pub fn new(
        command: Command,
        plan: &str,
        target: &impl fmt::Display,
        target_source: &impl fmt::Display,
        dry_run: bool,
    ) -> RunReport {
        RunReport {
            command,
            plan: plan.to_owned(),
            target: target.to_string(),
            target_source: target_source.to_string(),
            dry_run,
            run_id: None,
            backup_file: None,
            stages: Vec::new(),
            outcome: RunOutcome::NothingToDo,
            exit_code: 0,
            started: Local::now(),
            summary: Vec::new(),
            history: Vec::new(),
            lock_impact: Vec::new(),
            lock_budget: None,
            revert: None,
        }
    }
}

impl RunReport {
    /// The document this report is: `planrun.plan`, `planrun.verify`, else
    /// `planrun.apply` (a dry run included).
    pub fn format(&self) -> &'static Format {
        match self.command {
            Command::Plan => &format::PLAN,
            Command::Verify => &format::VERIFY,
            Command::Revert => &format::REVERT,
            _ => &format::APPLY,
        }
    }

    /// [`RunReport::outcome`] as the JSON documents say it.
    pub fn outcome_code(&self) -> OutcomeCode {
        self.outcome.code(self.command, self.dry_run)
    }

    /// The JSON document of this report, finished now.
    pub fn document(&self) -> Document<RunBody> {
        Document::new(
            Envelope::finished_now(self.format(), self.outcome_code(), self.started),
            RunBody::of(self.clone()),
        )
    }
}

/// The body of the `planrun.apply`, `planrun.plan` and `planrun.verify` documents:
/// the report, then what its summary says, as fields.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunBody {
    #[serde(flatten)]
    pub report: RunReport,
    /// The stages this run committed, in order: applied, skipped by a skip rule, or
    /// drift accepted. Empty for `plan`, `verify` and a dry run, which commit nothing.
    pub committed: Vec<String>,
    /// How many stages ended in each `status`.
    #[schemars(extend("propertyNames" = {"$ref": "#/$defs/StageStatus"}))]
    pub stage_counts: BTreeMap<StageStatus, usize>,
}

impl RunBody {
    pub fn of(report: RunReport) -> RunBody {
        let commits = matches!(report.command, Command::Apply | Command::Revert) && !report.dry_run;
        let committed = report
            .stages
            .iter()
            .filter(|stage| {
                commits
                    && matches!(
                        stage.status,
                        StageStatus::Applied
                            | StageStatus::Skipped
                            | StageStatus::DriftAccepted
                            | StageStatus::Reverted
                    )
            })
            .map(|stage| stage.id.clone())
            .collect();
        let mut stage_counts = BTreeMap::new();
        for stage in &report.stages {
            *stage_counts.entry(stage.status).or_insert(0) += 1;
        }
        RunBody {
            report,
            committed,
            stage_counts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Success,
    NothingToDo,
    PreconditionFailed,
    VerificationFailed,
    StepFailed,
    Drift,
    /// SIGINT or SIGTERM: the stage in progress rolled back.
    Interrupted,
    /// `rehearse`: every stage passed, but one held a lock over its budget.
    OverBudget,
    /// `revert`: refused before anything changed.
    RevertRefused,
    /// `rehearse --revert`: the apply passed, a stage's revert was not proved.
    RevertUnproved,
    /// `apply`: a stage committed, its validation after the commit failed.
    ValidationPending,
}

impl RunOutcome {
    pub fn exit_code(self) -> i32 {
        match self {
            RunOutcome::Success | RunOutcome::NothingToDo => exit_codes::SUCCESS,
            RunOutcome::PreconditionFailed => exit_codes::PRECONDITION_FAILED,
            RunOutcome::VerificationFailed => exit_codes::VERIFICATION_FAILED,
            RunOutcome::StepFailed => exit_codes::STEP_FAILED,
            RunOutcome::Drift => exit_codes::DRIFT,
            RunOutcome::Interrupted => exit_codes::INTERRUPTED,
            RunOutcome::OverBudget => exit_codes::OVER_BUDGET,
            RunOutcome::RevertRefused => exit_codes::REVERT_REFUSED,
            RunOutcome::RevertUnproved => exit_codes::REVERT_UNPROVED,
            RunOutcome::ValidationPending => exit_codes::VALIDATION_PENDING,
        }
    }

    pub fn ledger_label(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::NothingToDo => "nothing_to_do",
            RunOutcome::PreconditionFailed => "precondition_failed",
            RunOutcome::VerificationFailed => "verification_failed",
            RunOutcome::StepFailed => "step_failed",
            RunOutcome::Drift => "drift",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::OverBudget => "over_budget",
            RunOutcome::RevertRefused => "revert_refused",
            RunOutcome::RevertUnproved => "revert_unproved",
            RunOutcome::ValidationPending => "validation_pending",
        }
    }

    /// The outcome code of `command` (`apply`, `plan`, `verify`, `rehearse`) ending
    /// this way: success is `applied`, `would_apply` (a plan or dry run) or `verified`.
    pub fn code(self, command: Command, dry_run: bool) -> OutcomeCode {
        match self {
            RunOutcome::Success if command == Command::Revert && dry_run => {
                OutcomeCode::WouldRevert
            }
            RunOutcome::Success if command == Command::Revert => OutcomeCode::Reverted,
            RunOutcome::Success if command == Command::Plan || dry_run => OutcomeCode::WouldApply,
            RunOutcome::Success | RunOutcome::NothingToDo if command == Command::Verify => {
                OutcomeCode::Verified
            }
            RunOutcome::Success => OutcomeCode::Applied,
            RunOutcome::NothingToDo => OutcomeCode::NothingToDo,
            RunOutcome::PreconditionFailed => OutcomeCode::PreconditionFailed,
            RunOutcome::VerificationFailed => OutcomeCode::VerificationFailed,
            RunOutcome::StepFailed => OutcomeCode::StepFailed,
            RunOutcome::Drift => OutcomeCode::Drift,
            RunOutcome::Interrupted => OutcomeCode::Interrupted,
            RunOutcome::OverBudget => OutcomeCode::OverBudget,
            RunOutcome::RevertRefused => OutcomeCode::RevertRefused,
            RunOutcome::RevertUnproved => OutcomeCode::RevertUnproved,
            RunOutcome::ValidationPending => OutcomeCode::ValidationPending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(command: Command, dry_run: bool) -> RunReport {
        let mut report = RunReport::new(command, "shop", &"db", &"--database-url", dry_run);
        report.outcome = RunOutcome::Success;
        report.stages = vec![
            StageReport::new("one", None, StageStatus::Applied),
            StageReport::new("two", None, StageStatus::NotSelected),
        ];
        report
    }

    #[test]
    fn only_an_apply_that_is_not_a_dry_run_commits() {
        let committed = |command, dry_run| RunBody::of(report(command, dry_run)).committed;
        assert_eq!(committed(Command::Apply, false), ["one"]);
        assert!(committed(Command::Apply, true).is_empty());
        assert!(committed(Command::Plan, false).is_empty());
        assert!(committed(Command::Verify, false).is_empty());
    }

    #[test]
    fn success_is_named_by_the_command() {
        let code = |command, dry_run| report(command, dry_run).outcome_code();
        assert_eq!(code(Command::Apply, false), OutcomeCode::Applied);
        assert_eq!(code(Command::Apply, true), OutcomeCode::WouldApply);
        assert_eq!(code(Command::Plan, false), OutcomeCode::WouldApply);
        assert_eq!(code(Command::Verify, false), OutcomeCode::Verified);
        assert_eq!(
            report(Command::Plan, false).format().name,
            format::PLAN.name
        );
        assert_eq!(
            report(Command::Apply, true).format().name,
            format::APPLY.name
        );
    }
}
