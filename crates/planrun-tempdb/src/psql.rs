//! Running SQL with `psql` as the superuser over a server's Unix socket: how a
//! cluster administers itself, and how a replica watches its primary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::TempDbError;

/// A server's Unix socket and the binaries of its version. It is owned rather
/// than borrowed, so a replica can keep its primary's.
#[derive(Debug, Clone)]
pub(crate) struct ServerSocket {
    pub bin_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    pub superuser: String,
}

impl ServerSocket {
    /// The libpq connection string of the superuser in `dbname`.
    pub(crate) fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_value(&self.superuser),
            conninfo_value(dbname)
        )
    }

    /// Run `sql` in `dbname` (unaligned, tuples only) and return its standard output;
    /// `action` names what was being done should it fail.
    pub(crate) fn psql(
        &self,
        dbname: &str,
        sql: &str,
        action: impl Fn() -> String,
    ) -> Result<String, TempDbError> {
        if dbname.contains('\0') || sql.contains('\0') {
            return Err(TempDbError::Invalid {
                what: action(),
                reason: "NUL cannot be passed to psql".into(),
            });
        }
        let own = self.bin_dir.join("psql");
        let psql = if own.is_file() {
            own
        } else {
            PathBuf::from("psql")
        };
        // A conninfo string rather than -h/-d: psql would otherwise read a database
        // name containing `=` as a connection string.
        let output = Command::new(&psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conninfo(dbname))
            .arg("-c")
            .arg(sql)
            // The caller's environment must not redirect us to another server or
            // inject options.
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env_remove("PGSSLMODE")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TempDbError::io_at("run", &psql, e))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(TempDbError::Psql {
            action: action(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// A single-quoted libpq conninfo value.
pub(crate) fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_value(r"it's\x"), r"'it\'s\\x'");
    }

    #[test]
    fn conninfo_names_the_socket_and_database() {
        let socket = ServerSocket {
            bin_dir: PathBuf::from("/bin"),
            socket_dir: PathBuf::from("/tmp/s"),
            port: 5433,
            superuser: "postgres".into(),
        };
        assert_eq!(
            socket.conninfo("a b"),
            "host='/tmp/s' port=5433 user='postgres' dbname='a b'"
        );
    }
}
