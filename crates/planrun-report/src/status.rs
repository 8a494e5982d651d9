//! The `planrun.status` document: the ledger's view of a plan.

use serde::Serialize;

/// The ledger's view of a plan, for `planrun status`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusReport {
    pub plan: String,
    pub target: String,
    /// Where the target came from: `--database-url`, `DATABASE_URL` (the
    /// environment), `./.env`, `the PG* variables`, or `planrun's throwaway cluster` (one
    /// planrun made).
    pub target_source: String,
    pub ledger_exists: bool,
    pub stages: Vec<StageStatusLine>,
    pub recent_runs: Vec<RunSummary>,
    /// Where the ledger and the plan disagree: applied stages gone from the plan,
    /// renamed, or pending ones placed before applied ones.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub history: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StageStatusLine {
    pub id: String,
    pub optional: bool,
    /// `pending`, `applied`, `skipped`, `failed`, `drifted`, `partial`, `reset`,
    /// `reverted` or `validation_pending` (committed with a key `NOT VALID` whose
    /// validation after the commit has not passed yet; `apply` retries it).
    pub state: String,
    pub run_id: Option<i64>,
    /// RFC 3339: when its latest result was recorded (a half-done stage: its last batch).
    #[schemars(extend("format" = "date-time"))]
    pub finished_at: Option<String>,
    pub rows_affected: Option<i64>,
    pub rows_quarantined: Option<i64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunSummary {
    pub id: i64,
    pub command: String,
    /// As the ledger records it: `success`, `nothing_to_do`, `step_failed`, ...,
    /// `running`, or `abandoned` for a run whose session is gone.
    pub outcome: String,
    /// RFC 3339, as every time the ledger gives (`to_char` with `TZH:TZM`).
    #[schemars(extend("format" = "date-time"))]
    pub started_at: String,
    pub backup_file: Option<String>,
    pub user: String,
    pub host: String,
}
