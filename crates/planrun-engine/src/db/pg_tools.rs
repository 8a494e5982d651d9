//! The PostgreSQL client tools planrun runs (`pg_dump`, `pg_dumpall`, `psql`,
//! `pg_restore`): which binary to run, and a [`Command`] for each that connects with
//! the settings planrun chose alone. The caller's `PG*` variables are never passed
//! on: a tool would read them where planrun's settings leave a gap, and reach another
//! server, as another user, than the one planrun resolved.

use std::path::{Path, PathBuf};
use std::process::Command;

use planrun_conninfo::quote_value;
use planrun_tempdb::TempCluster;

use crate::db::connect::Target;

/// The tool `name`: `$PG_BIN/<name>` when `PG_BIN` is set, else the newest
/// `/usr/lib/postgresql/*/bin`, else `name` on `PATH`. A newer client can dump an
/// older server, not the reverse.
pub(crate) fn pg_tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|dir| !dir.is_empty()) {
        // An explicit choice: no silent fallback to another installation.
        return Path::new(&dir).join(name);
    }
    if let Ok(bin_dir) = planrun_tempdb::find_bin_dir() {
        let candidate = bin_dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from(name)
}

/// A command for the libpq tool `program` (`pg_dump`) that connects to `target` with
/// exactly the settings planrun connects with: every setting but the password goes
/// in `--dbname`, the password in `PGPASSWORD`, so it never appears in a process
/// listing.
pub(crate) fn libpq_command(program: &Path, target: &Target) -> Command {
    let (conninfo, env) = target.libpq_tool_settings();
    let mut command = without_libpq_environment(program);
    command
        .envs(env)
        .arg("--no-password")
        .arg("--dbname")
        .arg(conninfo);
    command
}

/// A command for the libpq tool `program` that connects to the throwaway `cluster` as
/// its superuser over the socket.
pub(crate) fn cluster_command(program: &Path, cluster: &TempCluster) -> Command {
    let mut command = without_libpq_environment(program);
    command
        .env("PGHOST", cluster.host())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", cluster.user())
        .env("PGSSLMODE", "disable");
    command
}

/// `dbname='<database>'`: a conninfo string, so that a tool reads a database name
/// containing `=` as a name, not as connection settings.
pub(crate) fn dbname_conninfo(database: &str) -> String {
    format!("dbname={}", quote_value(database))
}

fn without_libpq_environment(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear().envs(
        std::env::vars_os()
            .filter(|(key, _)| key.to_str().is_none_or(|key| !key.starts_with("PG"))),
    );
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_with_quotes_and_equals_signs_stays_one_name() {
        assert_eq!(dbname_conninfo("app"), "dbname='app'");
        assert_eq!(dbname_conninfo(r"it's=a\name"), r"dbname='it\'s=a\\name'");
    }

    #[test]
    fn the_callers_libpq_variables_are_not_passed_on() {
        let command = without_libpq_environment(Path::new("pg_dump"));
        let passed: Vec<_> = command.get_envs().collect();
        assert!(passed
            .iter()
            .all(|(key, _)| !key.to_string_lossy().starts_with("PG")));
    }
}
