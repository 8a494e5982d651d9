//! Plan files: the model of a planrun plan, loading it from TOML with every problem
//! reported at once as `miette` diagnostics, the stage DAG and its renderings.
//!
//! Nothing here touches a database: `planrun check` and `planrun graph` run on this
//! crate alone, and the engine receives a [`Plan`] that has already passed
//! [`Plan::load`] and [`Plan::check_environment`].

mod confine;
mod dag;
mod discover;
mod duration;
mod expect;
mod load;
mod locks;
mod model;
mod problem;
mod render;
mod sql_rules;
mod suggest;
mod validate;

pub use dag::{Dag, StageIndex};
pub use discover::{discover_plan, DiscoverError};
pub use duration::PgDuration;
pub use expect::{CmpOp, Expectation, Expr, Operand, Outcome, Value};
pub use locks::{merge_locks, LockMode, LockRetries, TableLock};
pub use model::{
    Capture, Check, Plan, SkipRule, Span, Stage, Step, StepKind, Timeouts, TransformCatalog,
};
pub use problem::{LabelInfo, PlanErrors, PlanProblem, ProblemKind};
pub use render::{render_graph, GraphFormat, GraphStatus, StageState};
