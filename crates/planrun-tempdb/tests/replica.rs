//! Real streaming replicas: they stream, replay the primary, lag while replay is
//! paused, catch up when it resumes, and leave nothing behind.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{
    eventually, process_running, processes_mentioning, psql_tcp, self_signed_certificate, stdout,
};
use planrun_tempdb::{StopMode, TempCluster, TempDbError, TempReplica};

/// Generous for a loaded machine; every wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(60);

fn streaming_pair() -> (TempCluster, TempReplica) {
    let primary = TempCluster::start().unwrap();
    let replica = primary.start_replica().unwrap();
    replica.wait_until_streaming(WAIT).unwrap();
    (primary, replica)
}

/// `columns` of the replica's row in the primary's `pg_stat_replication`.
fn replication_row(primary: &TempCluster, replica: &TempReplica, columns: &str) -> String {
    let sql = format!(
        "SELECT {columns} FROM pg_stat_replication WHERE application_name = '{}'",
        replica.application_name()
    );
    primary.psql("postgres", &sql).unwrap().trim().to_owned()
}

fn query(run: impl Fn(&str, &str) -> Result<String, TempDbError>, sql: &str) -> String {
    run("postgres", sql).unwrap().trim().to_owned()
}

#[test]
fn a_replica_streams_and_replays_what_the_primary_writes() {
    let (primary, replica) = streaming_pair();
    assert_ne!(replica.port(), primary.port());
    assert!(replica.application_name().starts_with("planrun_replica_"));
    assert_eq!(
        replication_row(&primary, &replica, "state, sync_state"),
        "streaming|async"
    );
    let on_replica = |sql: &str| query(|db, sql| replica.psql(db, sql), sql);
    assert_eq!(on_replica("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(on_replica("SHOW hot_standby"), "on");

    primary
        .psql(
            "postgres",
            "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g",
        )
        .unwrap();
    replica.wait_until_caught_up(WAIT).unwrap();
    assert_eq!(on_replica("SELECT count(*) FROM orders"), "1000");
    // Over TCP through its URL too, as the engine will connect.
    let out = psql_tcp(
        &primary,
        &replica.url("postgres"),
        None,
        "SELECT max(id) FROM orders",
    );
    assert_eq!(stdout(&out), "1000");

    let err = replica
        .psql("postgres", "INSERT INTO orders VALUES (0)")
        .unwrap_err();
    assert!(err.to_string().contains("read-only transaction"), "{err}");
}

#[test]
fn paused_replay_shows_as_growing_lag_on_the_primary_until_resumed() {
    let (primary, replica) = streaming_pair();
    let on_primary = |sql: &str| query(|db, sql| primary.psql(db, sql), sql);
    let on_replica = |sql: &str| query(|db, sql| replica.psql(db, sql), sql);
    on_primary("CREATE TABLE events (id int)");
    replica.wait_until_caught_up(WAIT).unwrap();

    replica.pause_replay().unwrap();
    on_primary("INSERT INTO events SELECT generate_series(1, 10000)");
    let written = on_primary("SELECT pg_current_wal_lsn()");
    let bytes_behind = || {
        replication_row(
            &primary,
            &replica,
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)",
        )
        .parse::<f64>()
        .unwrap()
    };
    assert!(bytes_behind() > 0.0);
    // Received and flushed, only not replayed.
    let flushed = format!("flush_lsn >= '{written}'");
    assert!(eventually(WAIT, || replication_row(
        &primary, &replica, &flushed
    ) == "t"));
    let replay_lag = || {
        let seconds = replication_row(&primary, &replica, "extract(epoch FROM replay_lag)");
        seconds.parse::<f64>().ok()
    };
    let mut first = None;
    assert!(eventually(WAIT, || {
        first = replay_lag();
        first.is_some()
    }));
    let first = first.unwrap();
    assert!(
        eventually(WAIT, || replay_lag().is_some_and(|lag| lag > first)),
        "replay_lag stays at {first} s while replay is paused"
    );
    assert_eq!(on_replica("SELECT count(*) FROM events"), "0");
    let err = replica
        .wait_until_caught_up(Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, TempDbError::Timeout { .. }), "{err:?}");

    replica.resume_replay().unwrap();
    replica.wait_until_caught_up(WAIT).unwrap();
    assert_eq!(on_replica("SELECT count(*) FROM events"), "10000");
    let replayed = format!("replay_lsn >= '{written}'");
    assert_eq!(replication_row(&primary, &replica, &replayed), "t");
}

#[test]
fn dropping_a_replica_stops_its_server_and_removes_its_files() {
    let (primary, replica) = streaming_pair();
    let pid = replica.pid().unwrap();
    let root = replica.data_dir().parent().unwrap().to_path_buf();
    let name = replica.application_name().to_owned();
    assert!(process_running(pid));
    assert!(!processes_mentioning(&root).is_empty());

    drop(replica);

    assert!(!process_running(pid), "postmaster {pid} is left");
    assert!(!root.exists(), "{} is left", root.display());
    assert_eq!(processes_mentioning(&root), Vec::<String>::new());
    let rows =
        format!("SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}'");
    assert!(
        eventually(WAIT, || primary.psql("postgres", &rows).unwrap().trim()
            == "0"),
        "the primary still streams to the dropped replica"
    );
}

#[test]
fn a_socket_only_primary_with_a_password_gets_a_socket_only_replica() {
    let primary = TempCluster::builder()
        .socket_only()
        .password("pw")
        .setting("max_connections", "50")
        .start()
        .unwrap();
    let replica = primary.start_replica().unwrap();
    replica.wait_until_streaming(WAIT).unwrap();
    let on_replica = |sql: &str| query(|db, sql| replica.psql(db, sql), sql);
    assert_eq!(on_replica("SHOW listen_addresses"), "");
    assert_eq!(on_replica("SHOW max_connections"), "50");
    assert!(replica.host().starts_with('/'), "{}", replica.host());
    assert_ne!(replica.host(), primary.host());
    assert!(replica
        .url("postgres")
        .starts_with("postgresql://postgres:pw@%2F"));
}

#[test]
fn the_replica_of_a_tls_primary_serves_tls() {
    let certs = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed_certificate(certs.path()) else {
        eprintln!("skipping: the openssl command is not available");
        return;
    };
    let primary = TempCluster::builder().ssl(&cert, &key).start().unwrap();
    let replica = primary.start_replica().unwrap();
    let tls = format!("{}?sslmode=require", replica.url("postgres"));
    let out = psql_tcp(
        &primary,
        &tls,
        None,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(stdout(&out), "t");
}

#[test]
fn a_stopped_replica_leaves_the_primary_and_catches_up_after_a_restart() {
    let (primary, mut replica) = streaming_pair();
    let rows = format!(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{}'",
        replica.application_name()
    );
    replica.stop(StopMode::Fast).unwrap();
    assert_eq!(replica.pid(), None);
    assert!(eventually(WAIT, || primary
        .psql("postgres", &rows)
        .unwrap()
        .trim()
        == "0"));
    primary
        .psql("postgres", "CREATE TABLE while_away AS SELECT 1 AS id")
        .unwrap();

    replica.restart().unwrap();
    replica.wait_until_streaming(WAIT).unwrap();
    replica.wait_until_caught_up(WAIT).unwrap();
    let count = replica
        .psql("postgres", "SELECT count(*) FROM while_away")
        .unwrap();
    assert_eq!(count.trim(), "1");
}

/// A replica on a slot streams on it; stopped, it leaves the slot inactive and
/// behind, as a standby that went away does; dropped, it takes the slot with it.
#[test]
fn a_replica_on_a_slot_leaves_it_inactive_when_stopped_and_drops_it_when_dropped() {
    let primary = TempCluster::start().unwrap();
    let mut replica = primary.start_replica_on_slot().unwrap();
    replica.wait_until_streaming(WAIT).unwrap();
    let slot = replica.slot_name().unwrap().to_owned();
    let state =
        format!("SELECT active, slot_type FROM pg_replication_slots WHERE slot_name = '{slot}'");
    assert_eq!(
        primary.psql("postgres", &state).unwrap().trim(),
        "t|physical"
    );
    replica.stop(StopMode::Fast).unwrap();
    assert!(eventually(WAIT, || primary
        .psql("postgres", &state)
        .unwrap()
        .trim()
        == "f|physical"));
    primary
        .psql("postgres", "CREATE TABLE while_away AS SELECT 1 AS id")
        .unwrap();
    let behind = format!(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) > 0 \
         FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    assert_eq!(primary.psql("postgres", &behind).unwrap().trim(), "t");
    drop(replica);
    assert_eq!(primary.psql("postgres", &state).unwrap().trim(), "");
}

#[test]
fn replica_owner_process() {
    if !common::is_owner() {
        return;
    }
    let (primary, replica) = streaming_pair();
    common::report_and_wait(&format!(
        "{} {} {} {}",
        primary.pid().unwrap(),
        primary.data_dir().display(),
        replica.pid().unwrap(),
        replica.data_dir().display()
    ));
}

#[test]
fn a_replica_goes_away_when_its_owner_is_killed() {
    let (mut owner, report, reader) = common::spawn_owner("replica_owner_process");
    let fields: Vec<&str> = report.split_whitespace().collect();
    let [primary_pid, primary_data, replica_pid, replica_data] = fields[..] else {
        panic!("unexpected report {report:?}");
    };
    let servers =
        [(primary_pid, primary_data), (replica_pid, replica_data)].map(|(pid, data_dir)| {
            let root = PathBuf::from(data_dir).parent().unwrap().to_path_buf();
            (pid.parse::<u32>().unwrap(), root)
        });
    assert!(servers.iter().all(|(pid, _)| process_running(*pid)));

    owner.kill().unwrap(); // SIGKILL: no Drop, no unwinding
    owner.wait().unwrap();

    for (pid, root) in &servers {
        assert!(
            eventually(WAIT, || !process_running(*pid)),
            "postmaster {pid} survived its owner"
        );
        assert!(
            eventually(WAIT, || !root.exists()),
            "{} survived its owner",
            root.display()
        );
        assert!(
            eventually(WAIT, || processes_mentioning(root).is_empty()),
            "left behind: {:?}",
            processes_mentioning(root)
        );
    }
    reader.join().unwrap();
}
