//! A check in a run report (skip rule, precondition, verification): what it
//! expected and read, or why it was not evaluated or not judged now.

use planrun_plan::Outcome;
use schemars::JsonSchema;
use serde::Serialize;

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
    pub not_recheckable: Option<NotRecheckable>,
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

/// Why a check cannot be re-checked now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NotRecheckable {
    /// The captures the expectation compares with.
    pub captures: Vec<String>,
    /// When the check's stage committed, and its captures with it (RFC 3339).
    /// Rows are counted as written since from the end of the stage's run.
    pub captured_at: String,
    /// The tables the check reads that hold rows written since, as the check names
    /// them.
    pub changed: Vec<ChangedTable>,
}

/// A table and how many of its rows were inserted or updated after a stage committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ChangedTable {
    pub table: String,
    pub rows_written_since: i64,
}

impl NotRecheckable {
    /// In words, for the report.
    pub fn reason(&self) -> String {
        let captures: Vec<String> = self.captures.iter().map(|c| format!("{{{c}}}")).collect();
        let changed: Vec<String> = self
            .changed
            .iter()
            .map(|t| format!("{} rows of {}", t.rows_written_since, t.table))
            .collect();
        format!(
            "not re-checkable: compares with {} captured when its stage committed at {}; {} written since",
            captures.join(", "),
            self.captured_at,
            changed.join(", ")
        )
    }
}
