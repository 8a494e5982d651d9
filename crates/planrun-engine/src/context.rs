//! What a run carries: the options `apply` was given and the run context every stage
//! of one run shares (target, observer, run id, captures so far, backup, blocker
//! watch).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::db::connect::Target;
use crate::db::watch::BlockerWatch;
use crate::observer::Observer;
use crate::stage::stage_locks::LockRetry;

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
    pub history: crate::apply::history::HistoryAcceptance,
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

/// What one `apply` carries from stage to stage.
pub(crate) struct RunState<'r> {
    pub(crate) target: &'r Target,
    pub(crate) options: &'r ApplyOptions,
    pub(crate) observer: &'r dyn Observer,
    pub(crate) run_id: i64,
    /// Captured values so far: this run's and those recorded by done stages.
    pub(crate) captures: BTreeMap<String, Option<String>>,
    /// Set once the backup is taken (or a stage has changed something).
    pub(crate) changed_anything: bool,
    pub(crate) backup_file: Option<String>,
    /// Names the sessions that block a stage; `None` if it could not connect.
    pub(crate) watch: Option<BlockerWatch>,
    /// The current stage's lock attempts that were retried.
    pub(crate) lock_retries: std::sync::Mutex<Vec<LockRetry>>,
    /// Set while the caller retries the whole transaction on a lock failure (the
    /// cutover): a statement then gets one attempt, since retrying it in a
    /// savepoint would sleep holding the transaction's locks.
    pub(crate) retried_whole: bool,
}

impl<'r> RunState<'r> {
    pub(crate) fn new(
        target: &'r Target,
        options: &'r ApplyOptions,
        observer: &'r dyn Observer,
        run_id: i64,
    ) -> RunState<'r> {
        RunState {
            target,
            options,
            observer,
            run_id,
            captures: BTreeMap::new(),
            changed_anything: false,
            backup_file: None,
            watch: None,
            lock_retries: Default::default(),
            retried_whole: false,
        }
    }
}
