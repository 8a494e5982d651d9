//! planrun's machine interface, the part scripts rely on: the exit codes, the
//! outcome codes that name them in JSON, and the envelope every JSON document planrun
//! prints begins with (`format`, `format_version`, `planrun_version`, times,
//! `outcome`, `exit_code`), with the JSON Schema of each document generated from its
//! serde types (`docs/schemas/`, documented in `docs/exit-codes.md`).
//!
//! It depends on no other planrun crate, so that every crate that renders a document
//! (`planrun-plan` for the graph, `planrun-engine` for run reports, the CLI for the
//! rest) uses the same envelope, as nextest's `nextest-metadata` holds its exit codes
//! and machine-readable output for the crates around it.

mod envelope;
pub mod exit_codes;
pub mod format;
mod outcome;
mod schema;

pub use envelope::{Document, Envelope, Timestamp};
pub use format::{Format, Timing};
pub use outcome::OutcomeCode;
pub use schema::document_schema;

/// The version of planrun that prints a document (every crate of the workspace has
/// the same).
pub const PLANRUN_VERSION: &str = env!("CARGO_PKG_VERSION");
