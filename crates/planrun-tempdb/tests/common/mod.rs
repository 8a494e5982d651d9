//! Helpers shared by the integration tests: psql over TCP and process inspection.

#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use planrun_tempdb::TempCluster;

/// `psql` over TCP with `conninfo`, never prompting for a password.
pub fn psql_tcp(
    cluster: &TempCluster,
    conninfo: &str,
    password: Option<&str>,
    sql: &str,
) -> Output {
    let mut cmd = Command::new(cluster.bin_dir().join("psql"));
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-w",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        sql,
    ]);
    cmd.env_remove("PGPASSWORD");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.output().expect("run psql")
}

pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Alive and not a zombie (a zombie has exited; only its parent's bookkeeping is left).
pub fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Processes (other than zombies) whose command line mentions `path`: the server,
/// its backends are children of it, and the watchdog gets the path as an argument.
pub fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && process_running(pid) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Poll `cond` until it holds or `limit` passes; bounded polling, not a sleep.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
