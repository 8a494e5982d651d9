//! What a `planrun revert` adds to its run report: where it reverts to, which stages
//! it undoes (newest first), why it was refused before changing anything (exit 20),
//! and the losses the plan declared that its checks found.

use schemars::JsonSchema;
use serde::Serialize;

/// The revert part of a `planrun.revert` document.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct RevertPlan {
    /// `--to`: the stage kept, the last one not reverted; `start` to revert every
    /// applied stage.
    pub to: String,
    /// The applied stages after `to`, in the order they are reverted (newest first).
    pub stages: Vec<String>,
    /// Why the revert was refused, before it changed anything: a stage that cannot be
    /// reverted, or a revert precondition that failed (with the rows it returned).
    /// Non-empty exactly when the outcome is `revert_refused`.
    pub refusals: Vec<RevertRefusal>,
    /// Revert preconditions marked `loss = true` that failed in a stage declaring
    /// `[stage.revert_loss]`: the revert went on, losing what they name.
    pub declared_losses: Vec<RevertRefusal>,
}

/// One reason a stage's revert is refused, or one declared loss.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RevertRefusal {
    pub stage: String,
    /// The failing revert precondition; `None` when the stage is irreversible.
    pub check: Option<String>,
    /// Why, in words: the check's message, the stage's `revert_loss` reason, or why
    /// the stage is irreversible.
    pub reason: String,
    /// What the check returned (the rows it names), as text.
    pub rows: String,
}
