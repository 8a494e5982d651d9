//! The backup before the first change: `pg_dump -F c` of the target into
//! `<dir>/<plan>-<YYYYmmdd_HHMMSS>.dump`. If it fails, nothing runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::connect::{redact, Target};
use crate::error::EngineError;

/// The `pg_dump` to use: `$PG_BIN/pg_dump` when `PG_BIN` is set, else the newest
/// `/usr/lib/postgresql/*/bin`, else `pg_dump` on `PATH`. A newer client can dump an older server, not the reverse.
pub fn pg_tool(name: &str) -> PathBuf {
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

/// libpq environment for a child tool (`pg_dump`, `pg_restore`): the connection
/// travels in variables, so the password never appears in a process listing.
pub fn libpq_env(target: &Target) -> Vec<(&'static str, String)> {
    let config = target.config();
    let mut env = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        env.push(("PGHOST", host));
    }
    if let Some(port) = config.get_ports().first() {
        env.push(("PGPORT", port.to_string()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.to_owned()));
    }
    if let Some(dbname) = config.get_dbname() {
        env.push(("PGDATABASE", dbname.to_owned()));
    }
    if let Some(password) = target.password() {
        env.push(("PGPASSWORD", password));
    }
    env.push(("PGSSLMODE", target.sslmode().to_owned()));
    if let Some(cert) = target.root_cert() {
        env.push(("PGSSLROOTCERT", cert.to_owned()));
    }
    env
}

/// The file name for a backup taken now.
pub fn backup_path(dir: &Path, plan: &str) -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S");
    let safe_plan: String = plan
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe_plan}-{stamp}.dump"))
}

/// Dumps the target into `dir`, returning the file.
pub fn take(target: &Target, dir: &Path, plan: &str) -> Result<PathBuf, EngineError> {
    std::fs::create_dir_all(dir).map_err(|error| EngineError::Backup {
        reason: format!("cannot create backup directory {}: {error}", dir.display()),
    })?;
    let file = backup_path(dir, plan);
    let pg_dump = pg_tool("pg_dump");
    let output = Command::new(&pg_dump)
        .arg("--format=custom")
        .arg("--no-password")
        .arg("--file")
        .arg(&file)
        .env_clear()
        .envs(
            std::env::vars_os()
                .filter(|(key, _)| key.to_str().is_none_or(|key| !key.starts_with("PG"))),
        )
        .envs(libpq_env(target))
        .output()
        .map_err(|error| EngineError::Backup {
            reason: format!(
                "cannot run {}: {error}; install the PostgreSQL client tools or set PG_BIN",
                pg_dump.display()
            ),
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&file);
        let stderr = redact(String::from_utf8_lossy(&output.stderr).trim());
        let reason = if stderr.contains("server version mismatch") {
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
