/// A connection setting planrun cannot use. Messages never quote a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnInfoError {
    #[error("{0}")]
    Syntax(String),
    #[error("invalid connection option \"{0}\"")]
    UnknownKeyword(String),
    #[error("invalid value \"{value}\" for {keyword} (from {origin}): {expected}")]
    InvalidValue {
        keyword: &'static str,
        value: String,
        origin: String,
        expected: String,
    },
    #[error("{keyword} is set (from {origin}), but {why}")]
    Unsupported {
        keyword: &'static str,
        origin: String,
        why: &'static str,
    },
    #[error("no database given: none of --database-url, DATABASE_URL (in the environment or ./.env) or the libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER, ... is set")]
    NothingConfigured,
}
