//! Running a plan against PostgreSQL: connection, ledger, lock, backup, checks and
//! the stage runner. Everything that touches a database lives here, behind the
//! offline model of `planrun-plan`.

pub mod backup;
mod batched;
mod captures;
mod change_capture;
mod checksum;
pub mod connect;
mod error;
pub mod exit_codes;
mod history;
pub mod interrupt;
pub mod ledger;
pub mod lock;
mod lock_trace;
mod lock_weight;
mod online;
mod preview;
pub mod rehearse;
mod report;
mod reset;
mod run;
mod sql;
mod sql_step;
mod stage_locks;
mod throttle;
mod tls;
mod trusted_sql;
mod watch;

pub use checksum::normalise_line_endings;
pub use connect::{redact, Source, Target};
pub use error::EngineError;
pub use history::{History, HistoryAcceptance};
pub use lock_trace::MeasuredLock;
pub use lock_weight::{StageLockWeight, TableNow, Weight};
pub use preview::{status, StatusReport};
pub use report::{
    CheckResult, RunOutcome, RunReport, SqlDiff, StageError, StageReport, StageStatus, StepReport,
};
pub use reset::ResetReport;
pub use run::{ApplyOptions, Observer, Runner, Silent};
pub use stage_locks::{HeldLock, LockRetry};
pub use watch::Blocker;
