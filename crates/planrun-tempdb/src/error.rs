//! The one error type of this crate. Messages are lowercase and read after
//! "failed to ...", so callers can wrap them as `failed to {err}`.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a throwaway cluster could not be found, created, started, used or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TempDbError {
    /// No directory holds `initdb`, `pg_ctl` and `postgres` together.
    #[error(
        "find the PostgreSQL server binaries (initdb, pg_ctl and postgres) in {}; install them with `apt-get install -y postgresql`, or set PG_BIN to the directory that holds them",
        list_paths(searched)
    )]
    BinariesNotFound {
        /// Every place that was looked at, in order.
        searched: Vec<PathBuf>,
    },

    /// No PgBouncer binary for a [`TempPooler`](crate::TempPooler).
    #[error(
        "find PgBouncer in {}; install it with `apt-get install -y pgbouncer` (or run .ci/install), or set PGBOUNCER to its path",
        list_paths(searched)
    )]
    PoolerNotFound { searched: Vec<PathBuf> },

    /// We are root, PostgreSQL refuses to run as root, and there is nobody to run it as.
    #[error(
        "find an unprivileged user to run PostgreSQL as: running as root, and neither `postgres` nor `nobody` is in /etc/passwd; create one with `useradd --system postgres`"
    )]
    NoRunUser,

    /// A file system or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "create directory /tmp/x".
        action: String,
        source: io::Error,
    },

    /// `initdb` exited unsuccessfully.
    #[error("initialise a cluster with {}: {output}", program.display())]
    Initdb { program: PathBuf, output: String },

    /// `pg_basebackup` could not copy a primary for a replica.
    #[error("copy the primary for a replica with {}: {output}", program.display())]
    BaseBackup { program: PathBuf, output: String },

    /// A replica did not get where it was waited for in time.
    #[error("wait for {what}: gave up after {waited:?}; last seen: {last_seen}")]
    Timeout {
        what: String,
        waited: Duration,
        /// The state at the last look, e.g. the replica's row in `pg_stat_replication`.
        last_seen: String,
    },

    /// The server did not come up; the tail of its log says why. The log file itself
    /// is usually gone by the time the caller sees this, hence the copy.
    #[error(
        "start PostgreSQL on port {port}: {reason}\n--- end of the server log ---\n{log_tail}"
    )]
    Start {
        port: u16,
        reason: String,
        log_tail: String,
    },

    /// The server could not be signalled or did not go away.
    #[error("stop PostgreSQL (pid {pid}): {reason}")]
    Stop { pid: u32, reason: String },

    /// `psql` exited unsuccessfully.
    #[error("{action} with psql: {output}")]
    Psql { action: String, output: String },

    /// A caller-supplied name or value cannot be passed on safely.
    #[error("use {what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl TempDbError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        TempDbError::Io {
            action: action.into(),
            source,
        }
    }

    /// An [`io`](Self::io) error about one path, the most common shape.
    pub(crate) fn io_at(verb: &str, path: &Path, source: io::Error) -> Self {
        Self::io(format!("{verb} {}", path.display()), source)
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no candidate directory (PG_BIN and PATH are unset and /usr/lib/postgresql is empty)"
            .to_owned();
    }
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", p.display());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_message_says_how_to_fix_it() {
        let err = TempDbError::BinariesNotFound {
            searched: vec![PathBuf::from("/a"), PathBuf::from("/b")],
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("find the PostgreSQL server binaries"),
            "{msg}"
        );
        assert!(msg.contains("/a, /b"), "{msg}");
        assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
        assert!(msg.contains("PG_BIN"), "{msg}");
    }
}
