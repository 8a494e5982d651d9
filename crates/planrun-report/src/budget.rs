//! A rehearsal's lock estimates held against the plan's budgets, for `planrun plan`.

use serde::{Deserialize, Serialize};

/// A rehearsal's lock estimates held against the plan's budgets.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BudgetEstimate {
    /// The rehearsal report read.
    pub file: String,
    pub rehearsed_at: String,
    /// False when the plan changed since the rehearsal: its estimates may be off.
    pub same_plan: bool,
    /// The database the rehearsal copied.
    pub rehearsed_database: String,
    pub stages: Vec<StageBudgetEstimate>,
}

/// One rehearsed stage's locks against its budget.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StageBudgetEstimate {
    pub id: String,
    /// The budget that applies (the stage's, else the plan's), as the plan writes it.
    pub budget: Option<BudgetLimits>,
    pub locks: Vec<LockEstimate>,
    /// The breaches the rehearsal found (tables the plan creates are not counted).
    pub over_budget: Vec<String>,
}

/// A budget's limits, for display.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BudgetLimits {
    pub strongest: Option<String>,
    pub blocks_reads_ms: Option<u64>,
    pub blocks_writes_ms: Option<u64>,
}

/// One table's lock: strongest mode on the copy, blocked times estimated on the target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockEstimate {
    pub table: String,
    pub strongest: String,
    pub rewritten: bool,
    pub estimated_blocked_reads_ms: u64,
    pub estimated_blocked_writes_ms: u64,
    /// A table the plan created and the stage had not filled when it locked it: no
    /// one else uses it, so its lock is not held against the budget.
    #[serde(default)]
    pub new_table: bool,
}
