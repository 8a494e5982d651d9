//! The `planrun.reset` document: what `planrun reset` removed of a half-done batched
//! stage.

use serde::Serialize;

/// What `reset` did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ResetReport {
    pub plan: String,
    pub stage: String,
    pub target: String,
    /// Where the target came from: `--database-url`, `DATABASE_URL` (the
    /// environment), `./.env`, `the PG* variables`, or `planrun's throwaway cluster` (one
    /// planrun made).
    pub target_source: String,
    pub run_id: i64,
    /// Batches the abandoned attempt had committed, and its last key.
    pub batches: i64,
    pub last_key: Option<i64>,
    /// Changes by the application recorded and dropped with the capture.
    pub changes_dropped: i64,
    /// What the transform removed.
    pub removed: Vec<String>,
}
