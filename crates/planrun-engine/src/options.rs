//! The options `apply`, `revert` and `reset` are given.

use std::path::PathBuf;
use std::time::Duration;

/// How `apply` runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Everything in one transaction, rolled back at the end.
    pub dry_run: bool,
    /// With `dry_run`: hold the locks until the final rollback even where that blocks
    /// the application longer than the real run would (`dry_run_locks.rs`).
    pub hold_locks: bool,
    pub include_optional: bool,
    /// `--stage`: run these (and what they depend on) only.
    pub stages: Vec<String>,
    /// `--until`: stop after this stage.
    pub until: Option<String>,
    pub allow_drift: bool,
    /// Where to write the backup; `None` for `--no-backup`.
    pub backup_dir: Option<PathBuf>,
    /// How long to wait for another apply's lock.
    pub lock_wait: Duration,
    /// Ledger history the user accepted: missing stages, renames, order.
    pub history: HistoryAcceptance,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            dry_run: false,
            hold_locks: false,
            include_optional: false,
            stages: Vec::new(),
            until: None,
            allow_drift: false,
            backup_dir: None,
            lock_wait: Duration::from_secs(5),
            history: Default::default(),
        }
    }
}

/// How `revert` runs.
#[derive(Debug, Clone)]
pub struct RevertOptions {
    /// `--to`: the stage to keep (every applied stage after it in the plan's order
    /// is reverted); `None` for `--to start`, every applied stage.
    pub to: Option<String>,
    /// Everything in one transaction, rolled back at the end.
    pub dry_run: bool,
    /// Where to write the backup; `None` for `--no-backup`.
    pub backup_dir: Option<PathBuf>,
    /// How long to wait for another apply's (or revert's) lock of the plan.
    pub lock_wait: Duration,
}

impl Default for RevertOptions {
    fn default() -> Self {
        RevertOptions {
            to: None,
            dry_run: false,
            backup_dir: None,
            lock_wait: ApplyOptions::default().lock_wait,
        }
    }
}

/// How `reset` runs.
#[derive(Debug, Clone)]
pub struct ResetOptions {
    /// How long to wait for another apply's (or reset's) lock of the plan.
    pub lock_wait: Duration,
}

impl Default for ResetOptions {
    fn default() -> Self {
        ResetOptions {
            lock_wait: ApplyOptions::default().lock_wait,
        }
    }
}

/// Ledger history the user accepted on the command line (`apply/history.rs` compares
/// the ledger with the plan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryAcceptance {
    pub accept_missing: bool,
    /// `(old, new)` pairs from `--rename OLD=NEW`.
    pub renames: Vec<(String, String)>,
    pub allow_out_of_order: bool,
}
