//! Helpers shared by the integration tests: psql over TCP, process inspection, and
//! owner processes to kill.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use planrun_tempdb::TempCluster;

/// `psql` over TCP with `conninfo`, never prompting for a password.
pub(crate) fn psql_tcp(
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

pub(crate) fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A certificate and key for `localhost` in `dir`, or `None` without `openssl`.
pub(crate) fn self_signed_certificate(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => Some((cert, key)),
        _ => None,
    }
}

/// Alive and not a zombie (a zombie has exited; only its parent's bookkeeping is left).
pub(crate) fn process_running(pid: u32) -> bool {
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
pub(crate) fn processes_mentioning(path: &Path) -> Vec<String> {
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
pub(crate) fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
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

/// Set when this test binary was re-executed by [`spawn_owner`] to own clusters.
const OWNER_ENV: &str = "PLANRUN_TEMPDB_TEST_OWNER";
/// libtest prints `test name ... ` before the test's own output, on the same line, so
/// the report is found by this marker rather than at a line start.
const MARKER: &str = "PLANRUN-OWNER ";

/// Whether this process is an owner started by [`spawn_owner`]; an owner test does
/// nothing otherwise.
pub(crate) fn is_owner() -> bool {
    std::env::var_os(OWNER_ENV).is_some()
}

/// Tell the parent `report` (one line), then wait to be killed; the parent bounds how
/// long that takes.
pub(crate) fn report_and_wait(report: &str) -> ! {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARKER}{report}").unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Run this test binary again, as an owner running only `test`, and return the
/// process, its report, and the thread reading its output, which ends once nothing
/// holds that output open any more.
pub(crate) fn spawn_owner(test: &str) -> (Child, String, JoinHandle<()>) {
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(OWNER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read on a thread so that an owner that never reports fails the test instead
    // of hanging it.
    let stdout = owner.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, report)) = line.split_once(MARKER) {
                let _ = tx.send(report.to_owned());
            }
        }
    });
    let report = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the owner reports its clusters");
    (owner, report, reader)
}
