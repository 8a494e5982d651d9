//! What can be wrong with a fleet file, every problem at once, each a `miette`
//! diagnostic with a span into the file; and the errors of a rollout around the
//! targets (a variable that is not set).

use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// One problem in a fleet file.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(fleet::invalid))]
pub struct FleetProblem {
    pub message: String,
    #[source_code]
    pub source_code: NamedSource<Arc<String>>,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// Every problem of a fleet file, in file order.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("the fleet file {file} is invalid ({} problem{})", problems.len(), if problems.len() == 1 { "" } else { "s" })]
#[diagnostic(code(fleet::invalid_file))]
pub struct FleetErrors {
    pub file: String,
    #[related]
    pub problems: Vec<FleetProblem>,
}

/// A rollout that could not start, or a target that could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    #[error("cannot read the fleet file {file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] FleetErrors),
    #[error("target `{target}`: the variable {variable} that its url_env names is not set")]
    UnsetVariable { target: String, variable: String },
    #[error("target `{target}`: {reason}")]
    Target { target: String, reason: String },
}
