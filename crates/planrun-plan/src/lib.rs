//! Plan files: the model of a planrun plan, loading it from TOML with every problem
//! reported at once as `miette` diagnostics, the stage DAG and its renderings.
//!
//! [`Plan::lock_impact`] lists, per stage, the locks and the lock-impact findings
//! (`allow` accepts a rule with a reason).
//!
//! Nothing here touches a database: `planrun check` and `planrun graph` run on this
//! crate alone, and the engine receives a [`Plan`] that has already passed
//! [`Plan::load`] and [`Plan::check_environment`].

mod after_commit;
mod allow;
mod confine;
mod dag;
mod discover;
mod duration;
mod expect;
mod incremental;
mod load;
mod lock_impact;
#[cfg(test)]
mod lock_impact_tests;
mod locks;
mod model;
mod problem;
mod render;
#[cfg(test)]
mod scaling_tests;
mod sql_rules;
mod suggest;
mod validate;

pub use allow::Allowance;
pub use dag::{Dag, StageIndex};
pub use discover::{discover_plan, DiscoverError};
pub use duration::PgDuration;
pub use expect::{CmpOp, Expectation, Expr, Operand, Outcome, Value};
pub use incremental::WholeAtCutover;
pub use load::is_variable_name;
pub use lock_impact::{is_new_in, StageFinding, StageLock, StageLockImpact};
pub use locks::{merge_locks, LockBudget, LockMode, LockRetries, TableLock};
pub use model::{
    Capture, Check, Operator, PerKeyCheck, Plan, Reversibility, Revert, RevertLoss, SkipRule, Span,
    Stage, Step, StepKind, Timeouts, TransformCatalog, WatchedTable, MAX_NAME_CHARS,
};
pub use planrun_sql::Rule;
pub use problem::{LabelInfo, PlanErrors, PlanProblem, ProblemKind};
pub use render::{render_graph, GraphFormat, GraphStatus, JsonGraph, StageState};
