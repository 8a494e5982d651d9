//! One stage in a run report: what happened to it, its steps, its checks, the locks
//! it held, and where it failed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::checks::CheckResult;
use crate::half_done::LeftBehind;
use crate::locks::{Blocker, HeldLock, LockRetry};

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
    /// `planrun revert`: undone and committed (with `--dry-run`: undone and rolled
    /// back); a later `apply` runs it again.
    Reverted,
    /// Committed with a key `NOT VALID`; what runs after the commit (its validation)
    /// failed or did not finish, and a later `apply` retries only that. Dependent
    /// stages may run: the key already checks every new write.
    ValidationPending,
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
            StageStatus::Reverted => "reverted",
            StageStatus::ValidationPending => "VALIDATION PENDING",
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
    pub locks: Vec<HeldLock>,
    /// Declared tables that did not exist, so were not locked.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub absent_tables: Vec<String>,
    /// Lock attempts that timed out and were tried again.
    pub lock_retries: Vec<LockRetry>,
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
    pub left_behind: Option<LeftBehind>,
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
    pub blocked_by: Vec<Blocker>,
}
