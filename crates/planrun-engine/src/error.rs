//! Errors that stop planrun before or around the stages (connection, lock, ledger,
//! backup). Failures inside a stage are part of the run report instead.

use planrun_report::LockHolder;

use crate::exit_codes;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("invalid connection string {target}: {reason}")]
    BadConnectionString { target: String, reason: String },
    #[error("{0}")]
    NoTarget(String),
    #[error("cannot connect to {target}: {reason}")]
    CannotConnect { target: String, reason: String },
    #[error("{target} shares server connections between clients ({evidence}): a transaction- or statement-mode pooler such as PgBouncer's pool_mode = transaction; planrun needs one server session for the whole run (its plan lock, its prepared statements, stages outside a transaction) and changed nothing; connect directly to PostgreSQL, or through a session-mode pooler")]
    SharedServerConnections { target: String, evidence: String },
    #[error("plan `{plan}` is locked by another apply{}; waited {waited_ms} ms", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        plan: String,
        holder: Option<LockHolder>,
        waited_ms: u64,
    },
    #[error("{context}: {}", planrun_conninfo::redact(&error_chain(source)))]
    Database {
        context: String,
        source: postgres::Error,
    },
    #[error("backup failed, nothing was changed: {reason}")]
    Backup { reason: String },
    #[error("{0}")]
    NotDryRunnable(String),
    #[error("interrupted by {0}")]
    Interrupted(String),
    #[error("{0}")]
    Selection(String),
    /// `reset` rolled back: its locks were not had, or it would have left part of
    /// the half-done attempt behind. Not a usage error: the command was right.
    #[error("cannot reset `{stage}`: {reason}")]
    ResetFailed { stage: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the ledger was written by a newer planrun (ledger version {found}, this planrun knows {known}); upgrade planrun")]
    LedgerTooNew { found: i32, known: i32 },
    #[error("the ledger's {object} is owned by {owner}, not by {role}, the role planrun runs as: planrun does not read or write a ledger another role can change (its triggers, views and functions would run with {role}'s privileges); inspect it, then run planrun as {owner} or give the schema and everything in it to {role}")]
    LedgerNotOwned {
        object: String,
        owner: String,
        role: String,
    },
    #[error("cannot capture the application's changes to {table}: its key column `{key}` is {found}, not smallint, integer or bigint; the capture records keys of pg_catalog's integer types only, which it stores without running any conversion another role could have written")]
    CaptureKey {
        table: String,
        key: String,
        found: String,
    },
}

impl EngineError {
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::BadConnectionString { .. }
            | EngineError::NoTarget(_)
            | EngineError::CannotConnect { .. }
            | EngineError::SharedServerConnections { .. } => exit_codes::CANNOT_CONNECT,
            EngineError::Locked { .. } => exit_codes::LOCKED,
            EngineError::Backup { .. } => exit_codes::BACKUP_FAILED,
            EngineError::Interrupted(_) => exit_codes::INTERRUPTED,
            EngineError::NotDryRunnable(_) | EngineError::Selection(_) => exit_codes::USAGE,
            _ => exit_codes::ERROR,
        }
    }

    pub(crate) fn database(
        context: impl Into<String>,
    ) -> impl FnOnce(postgres::Error) -> EngineError {
        let context = context.into();
        move |source| EngineError::Database { context, source }
    }
}

/// An error with its sources, e.g. "error connecting to server: Connection refused".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
