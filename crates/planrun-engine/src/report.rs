//! The run report: one serde model that the CLI renders as a table on a terminal
//! and as JSON with `--format json`, the `planrun.apply`, `planrun.plan` and
//! `planrun.verify` documents ([`RunReport::document`]; fields documented in
//! `docs/exit-codes.md`, schemas in `docs/schemas/`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Local};
use planrun_contract::{format, Document, Envelope, Format, OutcomeCode};
use planrun_plan::Outcome;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exit_codes;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunReport {
    /// `apply`, `plan`, `verify`.
    pub command: String,
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
    pub lock_impact: Vec<crate::inspect::lock_weight::StageLockWeight>,
    /// `plan`: the newest (or given) rehearsal's lock estimates against the budgets.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lock_budget: Option<crate::BudgetEstimate>,
}

impl RunReport {
    /// An empty report of `command` on `plan`; stages and outcome are filled in as it runs.
    /// `target` is shown as it displays (password redacted), with where it came from.
    pub fn new(
        command: &str,
        plan: &str,
        target: &impl fmt::Display,
        target_source: &impl fmt::Display,
        dry_run: bool,
    ) -> RunReport {
        RunReport {
            command: command.to_owned(),
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
        }
    }
}

impl RunReport {
    /// The document this report is: `planrun.plan`, `planrun.verify`, else
    /// `planrun.apply` (a dry run included).
    pub fn format(&self) -> &'static Format {
        match self.command.as_str() {
            "plan" => &format::PLAN,
            "verify" => &format::VERIFY,
            _ => &format::APPLY,
        }
    }

    /// [`RunReport::outcome`] as the JSON documents say it.
    pub fn outcome_code(&self) -> OutcomeCode {
        self.outcome.code(&self.command, self.dry_run)
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
        let commits = report.command == "apply" && !report.dry_run;
        let committed = report
            .stages
            .iter()
            .filter(|stage| {
                commits
                    && matches!(
                        stage.status,
                        StageStatus::Applied | StageStatus::Skipped | StageStatus::DriftAccepted
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
        }
    }

    /// The outcome code of `command` (`apply`, `plan`, `verify`, `rehearse`) ending
    /// this way: success is `applied`, `would_apply` (a plan or dry run) or `verified`.
    pub fn code(self, command: &str, dry_run: bool) -> OutcomeCode {
        match self {
            RunOutcome::Success if command == "plan" || dry_run => OutcomeCode::WouldApply,
            RunOutcome::Success | RunOutcome::NothingToDo if command == "verify" => {
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
        }
    }
}

/// What happened to (or would happen to) one stage.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Ran and committed in this run.
    Applied,
    /// A skip rule held; recorded as done without running.
    Skipped,
    /// Done in an earlier run with the same checksum.
    AlreadyApplied,
    /// Done earlier, but its definition has changed since.
    Drifted,
    /// Drift accepted with `--allow-drift` and recorded.
    DriftAccepted,
    /// A precondition failed; nothing ran.
    Blocked,
    /// A step or verification failed; rolled back.
    Failed,
    /// SIGINT or SIGTERM stopped it: rolled back, or for a batched stage, the batch
    /// in flight rolled back and `left_behind` says what remains.
    Interrupted,
    /// `planrun reset`: a half-done batched attempt abandoned and undone.
    Reset,
    /// Not reached because an earlier stage stopped the run.
    NotRun,
    /// Optional, or outside `--stage`/`--until`.
    NotSelected,
    /// `planrun plan`: would run now.
    WouldRun,
    /// `planrun plan`: a skip rule holds now.
    WouldSkip,
    /// `planrun plan`: waits for stages that have not run yet.
    Waiting,
    /// `planrun verify`: every check passed.
    Verified,
    /// `planrun verify`: every check of the stage read what later applied stages
    /// changed on purpose, so none was run (see [`CheckStatus::Superseded`]).
    Superseded,
}

impl StageStatus {
    pub fn label(self) -> &'static str {
        match self {
            StageStatus::Applied => "applied",
            StageStatus::Skipped => "skipped",
            StageStatus::AlreadyApplied => "already applied",
            StageStatus::Drifted => "DRIFT",
            StageStatus::DriftAccepted => "drift accepted",
            StageStatus::Blocked => "BLOCKED",
            StageStatus::Failed => "FAILED",
            StageStatus::Interrupted => "INTERRUPTED",
            StageStatus::Reset => "reset",
            StageStatus::NotRun => "not run",
            StageStatus::NotSelected => "not selected",
            StageStatus::WouldRun => "would run",
            StageStatus::WouldSkip => "would skip",
            StageStatus::Waiting => "waits",
            StageStatus::Verified => "verified",
            StageStatus::Superseded => "superseded",
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StageReport {
    pub id: String,
    pub title: Option<String>,
    pub status: StageStatus,
    pub optional: bool,
    /// False for stages that ran outside a transaction.
    pub transaction: bool,
    pub checksum: String,
    pub duration_ms: u64,
    pub rows_affected: u64,
    pub rows_quarantined: u64,
    /// Why it was skipped, is waiting, or was not selected.
    pub note: Option<String>,
    pub skip_rules: Vec<CheckResult>,
    pub preconditions: Vec<CheckResult>,
    pub captures: BTreeMap<String, Option<String>>,
    /// The captures computed with `expr` (also in `captures`), in plan order: values
    /// worth showing, such as what the application changed since an earlier stage.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub computed: Vec<(String, Option<String>)>,
    /// The locks the stage held from its start to its commit.
    pub locks: Vec<crate::stage::stage_locks::HeldLock>,
    /// Declared tables that did not exist, so were not locked.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub absent_tables: Vec<String>,
    /// Lock attempts that timed out and were tried again.
    pub lock_retries: Vec<crate::stage::stage_locks::LockRetry>,
    pub steps: Vec<StepReport>,
    pub verifications: Vec<CheckResult>,
    /// For drift: what changed since the stage was applied.
    pub drift: Vec<String>,
    /// For drift: the changed SQL, line by line (none for SQL whose applied text the
    /// ledger does not hold).
    pub drift_diff: Vec<SqlDiff>,
    pub error: Option<StageError>,
    /// A note the ledger keeps with the stage's result, which `status` shows: what
    /// an atomic run removed of an abandoned batched attempt first (`abandoned.rs`).
    #[serde(skip)]
    pub recorded_note: Option<String>,
    /// A batched stage that stopped part-way: what of it remains (committed batches,
    /// checkpoint, change capture) and the commands that resume or abandon it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub left_behind: Option<crate::online::half_done::LeftBehind>,
}

impl StageReport {
    pub fn new(id: &str, title: Option<&str>, status: StageStatus) -> StageReport {
        StageReport {
            id: id.to_owned(),
            title: title.map(str::to_owned),
            status,
            optional: false,
            transaction: true,
            checksum: String::new(),
            duration_ms: 0,
            rows_affected: 0,
            rows_quarantined: 0,
            note: None,
            recorded_note: None,
            skip_rules: Vec::new(),
            preconditions: Vec::new(),
            captures: BTreeMap::new(),
            computed: Vec::new(),
            locks: Vec::new(),
            absent_tables: Vec::new(),
            lock_retries: Vec::new(),
            steps: Vec::new(),
            verifications: Vec::new(),
            drift: Vec::new(),
            drift_diff: Vec::new(),
            error: None,
            left_behind: None,
        }
    }

    /// Whether this stage's verification failed (as opposed to a step).
    pub fn verification_failed(&self) -> bool {
        self.error.is_none() && self.verifications.iter().any(CheckResult::failed)
    }
}

/// How one SQL entry of a drifted stage changed: a unified diff from the SQL that was
/// applied (`-`) to the SQL the plan holds now (`+`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SqlDiff {
    /// The definition entry, as in `drift`: `step 1 (02_load.sql)`, `verify name`, ...
    pub entry: String,
    /// `@@` hunk headers, then lines prefixed `-`, `+` or a space (context).
    pub lines: Vec<String>,
    /// Lines of the diff left out after the first `lines`.
    pub more_lines: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckResult {
    pub name: String,
    /// True only for a check that ran and passed.
    pub passed: bool,
    pub expected: String,
    pub actual: String,
    /// Why it could not be decided (a SQL error, a missing capture), if so.
    pub problem: Option<String>,
    /// The plan's `message`, for a check whose query ran and returned something other
    /// than expected: the failure the message was written for. Not for a query that
    /// could not run, whose `problem` says why.
    pub message: Option<String>,
    /// `passed`, `failed`, or why it was not evaluated or judged: `evaluated_after`,
    /// `superseded` or `not_recheckable`. Only `failed` is a failure.
    pub status: CheckStatus,
    /// `evaluated_after`: the stages that would run first; the check is evaluated
    /// after them.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub evaluated_after: Vec<String>,
    /// `superseded`: the later applied stages that changed what the check reads.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub superseded_by: Vec<Supersession>,
    /// `not_recheckable`: the captures it compares with, when they were captured,
    /// and the tables it reads that were written since.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub not_recheckable: Option<crate::online::moving_tables::NotRecheckable>,
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// `planrun plan`: its stage waits for stages that would run first, which change
    /// what it reads; `apply` evaluates it after them. Not a failure.
    EvaluatedAfter,
    /// `planrun verify`: a stage applied later changed, on purpose, a relation the
    /// check reads, so what held when its stage committed need not hold now; not run,
    /// not a failure.
    Superseded,
    /// `planrun verify`: it compares with a capture, taken when its stage committed,
    /// rows of a table it reads were written since, and it does not hold now: what
    /// it compares no longer describes the migration (`moving_tables.rs`). Not a
    /// failure; `not_recheckable` says why.
    NotRecheckable,
}

/// A later applied stage, and the relations it changed that a check reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Supersession {
    pub stage: String,
    /// As the check names them.
    pub relations: Vec<String>,
}

impl CheckResult {
    pub fn from_outcome(name: &str, outcome: Outcome, message: Option<&str>) -> CheckResult {
        let wrong_answer = !outcome.passed && outcome.problem.is_none();
        CheckResult {
            name: name.to_owned(),
            passed: outcome.passed,
            expected: outcome.expected,
            actual: outcome.actual,
            problem: outcome.problem,
            message: message.filter(|_| wrong_answer).map(str::to_owned),
            status: if outcome.passed {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            },
            evaluated_after: Vec::new(),
            superseded_by: Vec::new(),
            not_recheckable: None,
        }
    }

    /// A check whose query could not run: `problem` says why.
    pub fn error(name: &str, expected: String, problem: String) -> CheckResult {
        CheckResult {
            name: name.to_owned(),
            passed: false,
            expected,
            actual: "error".into(),
            problem: Some(problem),
            message: None,
            status: CheckStatus::Failed,
            evaluated_after: Vec::new(),
            superseded_by: Vec::new(),
            not_recheckable: None,
        }
    }

    /// `planrun plan`: a check of a stage that waits for `stages`, not evaluated now.
    pub fn evaluated_after(name: &str, expected: String, stages: Vec<String>) -> CheckResult {
        CheckResult {
            name: name.to_owned(),
            passed: false,
            expected,
            actual: String::new(),
            problem: None,
            message: None,
            status: CheckStatus::EvaluatedAfter,
            evaluated_after: stages,
            superseded_by: Vec::new(),
            not_recheckable: None,
        }
    }

    /// `planrun verify`: a check that later applied stages superseded, not run.
    pub fn superseded(name: &str, expected: String, by: Vec<Supersession>) -> CheckResult {
        CheckResult {
            name: name.to_owned(),
            passed: false,
            expected,
            actual: String::new(),
            problem: None,
            message: None,
            status: CheckStatus::Superseded,
            evaluated_after: Vec::new(),
            superseded_by: by,
            not_recheckable: None,
        }
    }

    /// Whether the check ran and failed (a check not evaluated is no failure).
    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Failed
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StepReport {
    pub name: String,
    /// `sql`, `sql_file` or `transform`.
    pub kind: String,
    pub duration_ms: u64,
    pub rows_affected: u64,
    pub rows_read: Option<u64>,
    pub rows_quarantined: Option<u64>,
    pub notes: Vec<String>,
}

/// Where and why a stage failed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StageError {
    pub step: Option<String>,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub sqlstate: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The statement (or its first line) that failed.
    pub statement: Option<String>,
    /// For a lock or statement timeout: the sessions that blocked this one.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub blocked_by: Vec<crate::db::watch::Blocker>,
}
