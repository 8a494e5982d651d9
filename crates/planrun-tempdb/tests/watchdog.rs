//! A cluster whose owner is SIGKILLed (so `Drop` never runs) still goes away.
//!
//! The owner is this test binary re-executed to run only `owner_process`, which
//! does nothing unless `OWNER_ENV` is set.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{eventually, process_running, processes_mentioning};
use planrun_tempdb::TempCluster;

const OWNER_ENV: &str = "PLANRUN_TEMPDB_TEST_OWNER";
/// libtest prints `test owner_process ... ` before the test's own output, on the
/// same line, so the report is found by this marker rather than at a line start.
const MARKER: &str = "PLANRUN-OWNER ";

#[test]
fn owner_process() {
    if std::env::var_os(OWNER_ENV).is_none() {
        return;
    }
    let cluster = TempCluster::start().unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{MARKER}{} {}",
        cluster.pid().unwrap(),
        cluster.data_dir().display()
    )
    .unwrap();
    out.flush().unwrap();
    drop(out);
    // Wait to be killed; the parent bounds how long this can take.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn server_goes_away_when_its_owner_is_killed() {
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([
            "owner_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
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
        .expect("the owner reports its cluster");
    let mut fields = report.split_whitespace();
    let pid: u32 = fields.next().unwrap().parse().unwrap();
    let data_dir = PathBuf::from(fields.next().unwrap());
    let root = data_dir.parent().unwrap().to_path_buf();
    assert!(process_running(pid));

    owner.kill().unwrap(); // SIGKILL: no Drop, no unwinding
    owner.wait().unwrap();

    assert!(
        eventually(Duration::from_secs(10), || !process_running(pid)),
        "postmaster {pid} survived its owner"
    );
    assert!(
        eventually(Duration::from_secs(10), || !root.exists()),
        "{} survived its owner",
        root.display()
    );
    assert!(
        eventually(Duration::from_secs(5), || processes_mentioning(&root)
            .is_empty()),
        "left behind: {:?}",
        processes_mentioning(&root)
    );
    // The reader ends at end-of-file: neither the server nor the watchdog holds the
    // owner's stdout open.
    reader.join().unwrap();
}
