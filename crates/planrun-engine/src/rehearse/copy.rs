//! The copy of the target: the target's roles and `pg_dump -F c` read with the
//! client tools, then restored into the throwaway cluster.

use std::path::Path;
use std::process::Command;

use planrun_tempdb::TempCluster;

use crate::db::connect::{redact, Target};
use crate::db::pg_tools::{cluster_command, dbname_conninfo, libpq_command};
use crate::rehearse::error::RehearseError;

/// `pg_dump -F c` of `target` into `file`.
pub(crate) fn dump(pg_dump: &Path, target: &Target, file: &Path) -> Result<(), RehearseError> {
    let mut command = libpq_command(pg_dump, target);
    command.arg("--format=custom").arg("--file").arg(file);
    run(command, pg_dump)
}

pub(crate) fn restore(
    pg_restore: &Path,
    cluster: &TempCluster,
    database: &str,
    file: &Path,
    jobs: usize,
) -> Result<(), RehearseError> {
    // With owners and privileges: the target's roles are already in the copy.
    let output = cluster_command(pg_restore, cluster)
        .arg("--no-password")
        .arg(format!("--jobs={}", jobs.max(1)))
        // A conninfo string, so that a database name containing `=` stays a name.
        .arg(format!("--dbname={}", dbname_conninfo(database)))
        .arg(file)
        .output()
        .map_err(|error| {
            RehearseError::Copy(format!("cannot run {}: {error}", pg_restore.display()))
        })?;
    // A copy with errors (a missing extension, say) is not the target: rehearsing on
    // it would prove nothing, so any error stops here.
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        return Err(RehearseError::Copy(format!(
            "{} into the throwaway cluster failed:\n{}",
            pg_restore.display(),
            redact(&tail)
        )));
    }
    Ok(())
}

/// `pg_dumpall --roles-only --no-role-passwords` of `target` into `file`, connected to
/// the target's own database.
pub(crate) fn dump_roles(
    pg_dumpall: &Path,
    target: &Target,
    file: &Path,
) -> Result<(), RehearseError> {
    let mut command = libpq_command(pg_dumpall, target);
    // pg_dumpall ignores the database of --dbname and tries `postgres`, then
    // `template1`, which a hardened server may not let the applying role into. A
    // conninfo string, as libpq would read a name containing `=` as one.
    command
        .args(["--roles-only", "--no-role-passwords", "--file"])
        .arg(file)
        .arg(format!("--database={}", dbname_conninfo(target.database())));
    run(command, pg_dumpall)
}

/// Runs the roles script in the copy, in one transaction; any error stops the
/// rehearsal, as a restore error does, for a copy without the target's roles would
/// prove nothing.
pub(crate) fn restore_roles(
    psql: &Path,
    cluster: &TempCluster,
    file: &Path,
) -> Result<(), RehearseError> {
    let mut command = cluster_command(psql, cluster);
    command
        .args(["-X", "-q", "--no-password", "--single-transaction"])
        .args(["-v", "ON_ERROR_STOP=1"])
        .args(["--dbname=dbname=postgres", "--file"])
        .arg(file);
    run(command, psql)
}

fn run(mut command: Command, program: &Path) -> Result<(), RehearseError> {
    let output = command.output().map_err(|error| {
        RehearseError::Copy(format!(
            "cannot run {}: {error}; install the PostgreSQL client tools or set PG_BIN",
            program.display()
        ))
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(RehearseError::Copy(format!(
        "{} failed: {}",
        program.display(),
        redact(String::from_utf8_lossy(&output.stderr).trim())
    )))
}
