//! Why a rehearsal could not run; a rehearsal that ran and failed is a report.

use planrun_tempdb::TempDbError;

use crate::error::EngineError;
use crate::exit_codes;

/// Why a rehearsal could not run (a rehearsal that ran and failed is a report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RehearseError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot start the throwaway cluster: {0}")]
    Cluster(#[from] TempDbError),
    #[error("cannot copy the target: {0}")]
    Copy(String),
    #[error("cannot write the rehearsal report: {0}")]
    ReportDir(#[from] crate::PrivateDirError),
    #[error("cannot write the rehearsal report {path}: {source}")]
    Report {
        path: String,
        source: std::io::Error,
    },
}

impl RehearseError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RehearseError::Engine(error) => error.exit_code(),
            _ => exit_codes::ERROR,
        }
    }
}
