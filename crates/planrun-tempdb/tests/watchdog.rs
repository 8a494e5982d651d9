//! A cluster whose owner is SIGKILLed (so `Drop` never runs) still goes away.
//!
//! The owner is this test binary re-executed to run only `owner_process`, which
//! does nothing unless run as an owner.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, process_running, processes_mentioning};
use planrun_tempdb::TempCluster;

#[test]
fn owner_process() {
    if !common::is_owner() {
        return;
    }
    let cluster = TempCluster::start().unwrap();
    common::report_and_wait(&format!(
        "{} {}",
        cluster.pid().unwrap(),
        cluster.data_dir().display()
    ));
}

#[test]
fn server_goes_away_when_its_owner_is_killed() {
    let (mut owner, report, reader) = common::spawn_owner("owner_process");
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
