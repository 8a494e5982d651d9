//! Native transforms: the [`Transform`] trait that a stage step names with
//! `transform = "..."`, and the [`Registry`] that maps those names to code.
//!
//! A transform runs inside the stage's transaction and reports what it read and wrote;
//! the engine owns the transaction, the ledger and verification around it.

mod progress;
mod registry;
mod transform;

pub use progress::{NoProgress, Progress};
pub use registry::Registry;
pub use transform::{Transform, TransformContext, TransformError, TransformReport};
