//! The report model planrun renders on a terminal and prints as JSON: a run of
//! `apply`, `plan` or `verify` (its stages, steps, checks, locks and failures), the
//! `status` and `reset` documents, and the plain data they hold. Plain serde and
//! schemars data with pure methods and no database code: the engine fills it in, the
//! CLI renders it, and `planrun-contract` wraps it in the JSON envelope.

mod budget;
mod checks;
mod command;
mod fleet;
mod half_done;
mod lock_weight;
mod locks;
pub mod rehearsal;
mod reset;
mod revert;
mod run;
mod stage;
mod status;

pub use budget::{BudgetEstimate, BudgetLimits, LockEstimate, StageBudgetEstimate};
pub use checks::{ChangedTable, CheckResult, CheckStatus, NotRecheckable, Supersession};
pub use command::Command;
pub use fleet::{
    FingerprintGroup, FleetPlan, FleetRehearsal, FleetReport, FleetStatus, GateCheck, GateLimits,
    RehearsedGroup, TargetPlan, TargetRun, TargetStatus, WavePlan, WaveReport,
};
pub use half_done::LeftBehind;
pub use lock_weight::{StageLockWeight, TableNow, Weight};
pub use locks::{Blocker, HeldLock, LockHolder, LockRetry};
pub use reset::ResetReport;
pub use revert::{RevertPlan, RevertRefusal};
pub use run::{RunBody, RunOutcome, RunReport};
pub use stage::{SqlDiff, StageError, StageReport, StageStatus, StepReport};
pub use status::{RunSummary, StageStatusLine, StatusReport};
