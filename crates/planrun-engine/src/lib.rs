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
mod revert;
mod stage;

pub use apply::history::History;
pub use apply::run::Runner;
pub use checksum::normalise_line_endings;
pub use db::connect::{Source, Target};
pub use db::interrupt;
pub use db::lock;
pub use db::private_dir::{PrivateDir, PrivateDirError};
pub use error::EngineError;
pub use inspect::preview::status;
pub use observer::{Observer, Silent};
pub use options::{ApplyOptions, HistoryAcceptance, ResetOptions, RevertOptions};
pub use planrun_conninfo::redact;
/// The exit codes live with the JSON contract (`planrun-contract`), whose outcome codes
/// name them; `planrun_engine::exit_codes` is the same module.
pub use planrun_contract::exit_codes;
/// The report model lives in `planrun-report` (no database code); it is re-exported
/// here so that `planrun_engine::RunReport` and the rest name the same types.
pub use planrun_report::*;
pub use rehearse::budget_estimate::budget_estimate;
pub use rehearse::{newest_rehearsal, MeasuredLock};
