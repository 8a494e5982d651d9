//! The backup before the first change: `pg_dump -F c` of the target into a new file
//! `<dir>/<plan>-<database>-<YYYYmmdd_HHMMSS_micros>.dump`, created exclusively with
//! mode 0600 in a directory only planrun's user controls (`private_dir.rs`), written
//! by pg_dump to the descriptor planrun opened, recorded by its absolute path. If it
//! fails, nothing runs and its partial file is removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::db::connect::{redact, Target};
use crate::db::pg_tools::{libpq_command, pg_tool};
use crate::db::private_dir::{file_name_part, PrivateDir, PrivateDirError};
use crate::error::EngineError;

/// The file a backup taken now would get (before making it unique): the plan, the
/// database and a microsecond timestamp, so two applies of one plan to two databases,
/// or in the same second, never share a name.
pub(crate) fn backup_path(dir: &Path, plan: &str, database: &str) -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S_%6f");
    dir.join(format!(
        "{}-{}-{stamp}.dump",
        file_name_part(plan),
        file_name_part(database)
    ))
}

/// A new backup file in `dir` (see [`PrivateDir`]) that no other file had the name of:
/// its name and the open file, which pg_dump writes to.
fn create_private_file(
    dir: &PrivateDir,
    plan: &str,
    database: &str,
) -> Result<(String, std::fs::File), EngineError> {
    let first = backup_path(Path::new(""), plan, database)
        .to_string_lossy()
        .into_owned();
    let stem = first.trim_end_matches(".dump");
    for attempt in 0..100 {
        let name = if attempt == 0 {
            first.clone()
        } else {
            format!("{stem}.{attempt}.dump")
        };
        match dir.create_new(&name) {
            Ok(file) => return Ok((name, file)),
            Err(PrivateDirError::CreateFile { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(failed(error)),
        }
    }
    Err(EngineError::Backup {
        reason: format!(
            "cannot find a free name for {}",
            dir.path().join(first).display()
        ),
    })
}

fn failed(error: PrivateDirError) -> EngineError {
    EngineError::Backup {
        reason: error.to_string(),
    }
}

/// Dumps the target into a new private file in `dir`, returning its absolute path.
/// `pg_dump` waits at most `lock_wait` for each table's ACCESS SHARE lock (a session
/// holding ACCESS EXCLUSIVE, or queued for it, would otherwise hang the apply before
/// its first stage); then the backup fails, and nothing runs.
pub(crate) fn take(
    target: &Target,
    dir: &Path,
    plan: &str,
    lock_wait: Option<&planrun_plan::PgDuration>,
) -> Result<PathBuf, EngineError> {
    let dir = PrivateDir::open_or_create(dir, "backup directory").map_err(failed)?;
    let (name, output_file) = create_private_file(&dir, plan, target.database())?;
    let file = dir.path().join(&name);
    let pg_dump = pg_tool("pg_dump");
    // pg_dump writes to the file planrun opened, given as its stdout: with no name to
    // open, nothing can swap the file for a link between planrun and pg_dump.
    let output = libpq_command(&pg_dump, target)
        .arg("--format=custom")
        .args(lock_wait.map(|wait| format!("--lock-wait-timeout={}", wait.millis())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(output_file))
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|child| {
            // A signal to planrun stops pg_dump too, rather than leaving it reading.
            let _watch = crate::db::interrupt::watch_child(child.id());
            child.wait_with_output()
        })
        .map_err(|error| {
            dir.remove(&name);
            EngineError::Backup {
                reason: format!(
                    "cannot run {}: {error}; install the PostgreSQL client tools or set PG_BIN",
                    pg_dump.display()
                ),
            }
        })?;
    if let Some(interrupted) = crate::db::interrupt::requested() {
        dir.remove(&name);
        return Err(EngineError::Interrupted(format!(
            "{} during the backup: pg_dump was stopped and its partial file removed; nothing was changed",
            interrupted.name()
        )));
    }
    if !output.status.success() {
        dir.remove(&name);
        let stderr = redact(String::from_utf8_lossy(&output.stderr).trim());
        let locked_table = stderr
            .split("LOCK TABLE ")
            .nth(1)
            .and_then(|rest| rest.split(" IN ").next())
            .filter(|_| stderr.contains("timeout") || stderr.contains("could not obtain lock"));
        let reason = if let Some(table) = locked_table {
            let holders: Vec<String> = lock_holders(target, table)
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "pg_dump could not lock {table} within --lock-wait-timeout={}{}; wait for that session or end it, then apply again",
                lock_wait.map_or_else(|| "unbounded".to_owned(), ToString::to_string),
                if holders.is_empty() {
                    String::new()
                } else {
                    format!(": held by {}", holders.join("; "))
                }
            )
        } else if stderr.contains("server version mismatch") {
            format!(
                "{} is older than the server: {stderr}; install a pg_dump at least as new as the server, or set PG_BIN to its directory",
                pg_dump.display()
            )
        } else {
            format!("{} failed: {stderr}", pg_dump.display())
        };
        return Err(EngineError::Backup { reason });
    }
    Ok(file)
}

/// The sessions holding or queued for ACCESS EXCLUSIVE on `table` (as pg_dump printed
/// it), to name in the error; none when they cannot be read.
fn lock_holders(target: &Target, table: &str) -> Vec<planrun_report::Blocker> {
    let Ok(mut client) = target.connect("planrun backup") else {
        return Vec::new();
    };
    let Ok(mut tx) = client.transaction() else {
        return Vec::new();
    };
    if crate::db::trusted_sql::trust_for_transaction(&mut tx).is_err() {
        return Vec::new();
    }
    let rows = tx.query(
        &format!(
            "SELECT {} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.relation = to_regclass($1) AND l.mode = 'AccessExclusiveLock' \
             ORDER BY a.pid",
            crate::db::watch::SESSION_COLUMNS
        ),
        &[&table],
    );
    rows.map(|rows| rows.iter().map(crate::db::watch::blocker).collect())
        .unwrap_or_default()
}
