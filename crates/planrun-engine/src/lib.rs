//! Running a plan against PostgreSQL: connection, ledger, lock, backup, checks and
//! the stage runner. Everything that touches a database lives here, behind the
//! offline model of `planrun-plan`.

mod apply;
mod checksum;
mod db;
mod decide;
mod error;
mod inspect;
pub mod ledger;
mod observer;
mod online;
mod options;
mod prepared;
pub mod rehearse;
mod report;
mod stage;

pub use apply::history::History;
pub use apply::run::Runner;
pub use checksum::normalise_line_endings;
pub use db::connect::{redact, Source, Target};
pub use db::interrupt;
pub use db::lock;
pub use db::private_dir::{PrivateDir, PrivateDirError};
pub use db::watch::Blocker;
pub use error::EngineError;
pub use inspect::lock_weight::{StageLockWeight, TableNow, Weight};
pub use inspect::preview::{status, StatusReport};
pub use observer::{Observer, Silent};
pub use online::half_done::LeftBehind;
pub use online::moving_tables::{ChangedTable, NotRecheckable};
pub use online::reset::ResetReport;
pub use options::{ApplyOptions, HistoryAcceptance};
/// The exit codes live with the JSON contract (`planrun-contract`), whose outcome codes
/// name them; `planrun_engine::exit_codes` is the same module.
pub use planrun_contract::exit_codes;
pub use rehearse::budget_estimate::{budget_estimate, newest_rehearsal, BudgetEstimate};
pub use rehearse::lock_trace::MeasuredLock;
pub use report::{
    CheckResult, CheckStatus, RunBody, RunOutcome, RunReport, SqlDiff, StageError, StageReport,
    StageStatus, StepReport, Supersession,
};
pub use stage::stage_locks::{HeldLock, LockRetry};
