//! Running a plan against PostgreSQL: connection, ledger, lock, backup, checks and
//! the stage runner. Everything that touches a database lives here, behind the
//! offline model of `planrun-plan`.

mod abandoned;
mod autovacuum;
pub mod backup;
mod batch_transaction;
mod batched;
mod batched_start;
mod budget_estimate;
mod captures;
mod change_capture;
mod checks;
mod checksum;
pub mod connect;
mod drift;
mod driver;
mod dry_run_locks;
mod error;
mod gate;
mod half_done;
mod health_wait;
mod history;
pub mod interrupt;
pub mod ledger;
pub mod lock;
mod lock_trace;
mod lock_weight;
mod moving_tables;
mod online;
mod pooling;
mod preview;
mod private_dir;
mod rehearsal_gate;
pub mod rehearsal_roles;
pub mod rehearse;
mod report;
mod reset;
mod run;
mod selection;
mod sql;
mod sql_step;
mod stage_failure;
mod stage_locks;
mod stage_record;
mod steps;
mod summary;
mod supersede;
mod throttle;
mod tls;
mod transform_step;
mod trusted_sql;
mod watch;
mod whole_retries;

pub use budget_estimate::{budget_estimate, newest_rehearsal, BudgetEstimate};
pub use checksum::normalise_line_endings;
pub use connect::{redact, Source, Target};
pub use error::EngineError;
pub use half_done::LeftBehind;
pub use history::{History, HistoryAcceptance};
pub use lock_trace::MeasuredLock;
pub use lock_weight::{StageLockWeight, TableNow, Weight};
pub use moving_tables::{ChangedTable, NotRecheckable};
/// The exit codes live with the JSON contract (`planrun-contract`), whose outcome codes
/// name them; `planrun_engine::exit_codes` is the same module.
pub use planrun_contract::exit_codes;
pub use preview::{status, StatusReport};
pub use private_dir::{PrivateDir, PrivateDirError};
pub use report::{
    CheckResult, CheckStatus, RunBody, RunOutcome, RunReport, SqlDiff, StageError, StageReport,
    StageStatus, StepReport, Supersession,
};
pub use reset::ResetReport;
pub use run::{ApplyOptions, Observer, Runner, Silent};
pub use stage_locks::{HeldLock, LockRetry};
pub use watch::Blocker;
