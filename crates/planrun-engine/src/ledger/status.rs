//! A stage result's status as the ledger writes it (`planrun.stage_results.status`):
//! typed here, the same strings on disk.

use std::fmt;

/// What a stage result row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    Applied,
    Skipped,
    Failed,
    /// An applied stage the plan no longer holds, accepted with `--accept-missing`.
    Retired,
    /// An applied stage's old id, after `--rename OLD=NEW`.
    Renamed,
    /// A half-done batched stage abandoned with `planrun reset`.
    Reset,
    /// An applied stage undone with `planrun revert`; a later `apply` runs it again.
    Reverted,
    /// Committed, with what runs after its commit (the validation of a key added
    /// `NOT VALID`) still to pass: done for its dependents; `apply` retries only that.
    ValidationPending,
}

impl ResultStatus {
    const ALL: [ResultStatus; 8] = [
        ResultStatus::Applied,
        ResultStatus::Skipped,
        ResultStatus::Failed,
        ResultStatus::Retired,
        ResultStatus::Renamed,
        ResultStatus::Reset,
        ResultStatus::Reverted,
        ResultStatus::ValidationPending,
    ];

    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Applied => "applied",
            ResultStatus::Skipped => "skipped",
            ResultStatus::Failed => "failed",
            ResultStatus::Retired => "retired",
            ResultStatus::Renamed => "renamed",
            ResultStatus::Reset => "reset",
            ResultStatus::Reverted => "reverted",
            ResultStatus::ValidationPending => "validation_pending",
        }
    }

    /// The status the ledger spells `text`; `None` for one this planrun does not know.
    pub fn from_ledger(text: &str) -> Option<ResultStatus> {
        ResultStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Whether the stage's work committed (applied, its validation passed or not): what
    /// `verify` checks and `revert` may undo.
    pub fn is_committed(self) -> bool {
        matches!(
            self,
            ResultStatus::Applied | ResultStatus::ValidationPending
        )
    }

    /// Whether a stage with this latest result counts as done (not run again).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            ResultStatus::Applied | ResultStatus::Skipped | ResultStatus::ValidationPending
        )
    }
}

impl fmt::Display for ResultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_as_the_ledger_writes_it() {
        for status in ResultStatus::ALL {
            assert_eq!(ResultStatus::from_ledger(status.as_str()), Some(status));
        }
        assert_eq!(ResultStatus::from_ledger("drift accepted"), None);
    }
}
