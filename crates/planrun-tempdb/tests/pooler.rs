//! [`TempPooler`]: a real PgBouncer in front of a cluster, in both pool modes, gone
//! with its value and with its owner process.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, process_running, processes_mentioning, psql_tcp, stdout};
use planrun_tempdb::{PoolMode, TempCluster, TempPooler};

#[test]
fn a_pooler_serves_the_cluster_in_both_modes_and_drop_removes_it() {
    let cluster = TempCluster::builder().password("pw d").start().unwrap();
    cluster.create_database("app").unwrap();
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let pooler = TempPooler::start(&cluster, mode).unwrap();
        let pid = pooler.pid().unwrap();
        let root = pooler.log_file().parent().unwrap().to_path_buf();
        let url = pooler.url("app");
        // What the watchdog kills should the owner die.
        assert!(root.join("pgbouncer.pid").exists(), "{mode}");
        let out = psql_tcp(&cluster, &url, None, "SELECT current_database()");
        assert_eq!(stdout(&out).trim(), "app", "{mode}");
        let wrong = psql_tcp(&cluster, &url.replace("pw%20d", "wrong"), None, "SELECT 1");
        assert!(
            !wrong.status.success(),
            "{mode}: a wrong password is refused"
        );

        drop(pooler);
        assert!(!process_running(pid), "{mode}: pgbouncer {pid} is left");
        assert!(!root.exists(), "{mode}: {} is left", root.display());
        assert_eq!(processes_mentioning(&root), Vec::<String>::new());
    }
}

#[test]
fn owner_process() {
    if !common::is_owner() {
        return;
    }
    let cluster = TempCluster::start().unwrap();
    let pooler = TempPooler::start(&cluster, PoolMode::Transaction).unwrap();
    common::report_and_wait(&format!(
        "{} {}",
        pooler.pid().unwrap(),
        pooler.log_file().parent().unwrap().display()
    ));
}

#[test]
fn a_pooler_goes_away_when_its_owner_is_killed() {
    let (mut owner, report, reader) = common::spawn_owner("owner_process");
    let mut fields = report.split_whitespace();
    let pid: u32 = fields.next().unwrap().parse().unwrap();
    let root = PathBuf::from(fields.next().unwrap());
    assert!(process_running(pid));

    owner.kill().unwrap(); // SIGKILL: no Drop, no unwinding
    owner.wait().unwrap();

    assert!(
        eventually(Duration::from_secs(10), || !process_running(pid)),
        "pgbouncer {pid} survived its owner"
    );
    assert!(
        eventually(Duration::from_secs(10), || !root.exists()),
        "{} survived its owner",
        root.display()
    );
    reader.join().unwrap();
}
