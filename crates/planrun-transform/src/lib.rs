//! Native transforms: the [`Transform`] trait that a stage step names with
//! `transform = "..."`, and the [`Registry`] that maps those names to code.
//!
//! A transform runs inside the stage's transaction and reports what it read and wrote;
//! the engine owns the transaction, the ledger and verification around it.

mod batch;
mod bulk;
mod count;
mod progress;
mod registry;
mod transform;

pub use batch::{
    batch_settings, transform_params, untuned_params, BatchSettings, ReplicaGone, ENGINE_PARAMS,
    TUNABLE_PARAMS,
};
pub use bulk::DeferredConstraints;
pub use count::{count, count_signed};
pub use planrun_plan::{LockMode, TableLock};
/// Quoting lives with the rest of planrun's SQL knowledge; re-exported for transforms.
pub use planrun_sql::quote_identifier;
pub use progress::{NoProgress, Progress};
pub use registry::Registry;
pub use transform::{
    BatchOutcome, SourceTable, Transform, TransformContext, TransformError, TransformReport,
};
