//! Applying a plan: the orchestration (`run.rs`), which stages a run takes, drift and ledger history refused before a run id is taken, and the summary that ends the report.

pub(crate) mod drift;
pub(crate) mod dry_run_locks;
pub(crate) mod history;
pub(crate) mod run;
pub(crate) mod selection;
pub(crate) mod summary;
