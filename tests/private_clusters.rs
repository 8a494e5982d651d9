//! The throwaway clusters of `planrun rehearse` (a copy of production data) and of
//! `planrun demo` are reachable by no other local account: no TCP listener, and a
//! Unix socket in a 0700 directory of the server's user. Proven by acting, for real,
//! as the OS user `nobody` (`psql` started with nobody's uid and gid) against clusters
//! the two commands leave running with `--keep`, and against a cluster built with
//! `TempClusterBuilder::socket_only`. `docs/security.md` lists what each test proves.
//!
//! Switching to `nobody` needs root, and `nobody` is "another account" only while the
//! server runs as `postgres`; elsewhere the tests say why they skip.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use planrun_tempdb::TempCluster;
use planrun_tests::{describe, planrun, planrun_on, scenario, TestDb, CUSTOMERS};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// Another local account, to act as.
struct Account {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// `nobody`, when we can act as it and it is not the account the server runs as.
fn another_account() -> Option<Account> {
    let euid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if euid != 0 {
        eprintln!("skipped: acting as another account needs root (the server runs as us)");
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd is readable");
    let entry = |wanted: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&wanted)).then(|| {
                (
                    fields[2].parse::<u32>().expect("a uid"),
                    fields[3].parse::<u32>().expect("a gid"),
                )
            })
        })
    };
    if entry("postgres").is_none() {
        eprintln!("skipped: with no `postgres` user the server runs as `nobody` itself");
        return None;
    }
    let Some((uid, gid)) = entry("nobody") else {
        eprintln!("skipped: there is no `nobody` user to act as");
        return None;
    };
    Some(Account {
        name: "nobody",
        uid,
        gid,
    })
}

fn psql_path() -> PathBuf {
    planrun_tempdb::find_bin_dir()
        .expect("the PostgreSQL binaries")
        .join("psql")
}

/// `psql -c sql` through `conninfo` (a URL or key=value string), never prompting,
/// with none of the caller's libpq settings.
fn psql(conninfo: &str, sql: &str) -> Command {
    let mut command = Command::new(psql_path());
    command
        .args(["-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(conninfo)
        .arg("-c")
        .arg(sql)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/")
        .stdin(Stdio::null());
    command
}

/// What the cluster's owner sees: the user who started it pastes the URL into psql.
fn owner_sees(url: &str, sql: &str) -> String {
    let output = psql(url, sql).output().expect("psql runs");
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `account` runs `sql` through `conninfo`; it must not get what the owner got.
fn shut_out(account: &Account, conninfo: &str, sql: &str, owner_saw: &str) -> Output {
    let output = psql(conninfo, sql)
        .env("HOME", "/nonexistent")
        .uid(account.uid)
        .gid(account.gid)
        .output()
        .expect("psql runs as another account");
    let saw = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        !(output.status.success() && saw == owner_saw),
        "`{}` read the cluster through {conninfo}: {saw}",
        account.name
    );
    output
}

/// `postgresql://user@host:port/dbname[?...]`: the port and the database.
fn port_and_database(url: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("postgresql://")
        .unwrap_or_else(|| panic!("a postgresql:// URL: {url}"));
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let (_, port) = authority.rsplit_once(':').expect("a port in the URL");
    let database = path.split('?').next().unwrap_or_default();
    (port.parse().expect("a port number"), database.to_owned())
}

/// The cluster behind `url` answers `sql` (which names it: its data directory) to
/// its owner, and to `account` neither through `url` nor over TCP on loopback.
fn assert_private(account: &Account, url: &str, sql: &str) {
    let owner_saw = owner_sees(url, sql);
    let through_url = shut_out(account, url, sql, &owner_saw);
    let refusal = String::from_utf8_lossy(&through_url.stderr);
    assert!(
        refusal.contains("Permission denied"),
        "the socket's directory turns `{}` away: {}",
        account.name,
        describe(&through_url)
    );
    assert_eq!(
        owner_sees(url, "SHOW listen_addresses"),
        "",
        "no TCP listener"
    );
    // Nothing of ours listens on the port, but another test's server may by now: so
    // the check is that the answer is not ours, not that the connection is refused.
    let (port, database) = port_and_database(url);
    for host in ["127.0.0.1", "localhost"] {
        let tcp = format!("host={host} port={port} user=postgres dbname={database}");
        shut_out(account, &tcp, sql, &owner_saw);
    }
}

/// Runs a kept cluster's stop command when dropped, so that a failing test leaves no
/// server behind.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("sh").arg("-c").arg(&self.0).output();
        }
    }
}

#[test]
fn a_socket_only_cluster_answers_its_owner_and_no_other_account() {
    let Some(other) = another_account() else {
        return;
    };
    let cluster = TempCluster::builder().socket_only().start().unwrap();
    let url = cluster.create_database("app").unwrap();
    assert_eq!(Some(cluster.host()), cluster.socket_dir().to_str());
    assert!(url.starts_with("postgresql://postgres@%2F"), "{url}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls)
        .expect("the postgres crate reads the socket URL");
    client
        .batch_execute("CREATE TABLE secrets AS SELECT 'card 4111 1111 1111 1111' AS secret")
        .unwrap();

    let server_uid = std::fs::metadata(cluster.data_dir()).unwrap().uid();
    assert_ne!(server_uid, other.uid, "the server runs as another account");
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    let cluster_dir = cluster.socket_dir().parent().unwrap();
    for path in [cluster_dir, cluster.socket_dir(), socket.as_path()] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700, "{}", path.display());
        assert_eq!(meta.uid(), server_uid, "{}", path.display());
    }
    let sql = "SELECT current_setting('data_directory') || ' ' || count(*) FROM secrets";
    assert_private(&other, &url, sql);
}

#[test]
fn a_kept_rehearsal_copy_of_production_is_unreadable_by_other_accounts() {
    let Some(other) = another_account() else {
        return;
    };
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let reports_arg = reports.path().to_string_lossy().into_owned();
    let output = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &[
            "rehearse",
            "plan.toml",
            "--keep",
            "--format",
            "json",
            "--report-dir",
            &reports_arg,
        ],
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", describe(&output)));
    let kept = &report["copy"]["kept"];
    let _stop = StopOnDrop(kept["stop_command"].as_str().unwrap_or_default().to_owned());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let url = kept["url"].as_str().expect("the kept copy's URL");
    let sql = "SELECT current_setting('data_directory') || ' ' || count(*) FROM customers";
    assert!(
        owner_sees(url, sql).ends_with(" 25"),
        "the URL printed for --keep takes psql to the copied rows"
    );
    assert_private(&other, url, sql);
}

#[test]
fn the_kept_demo_cluster_is_unreadable_by_other_accounts() {
    let Some(other) = another_account() else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let output = planrun(
        PLANRUN,
        cwd.path(),
        &["demo", "--keep", "--chapters", "40", "--seed", "5"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::to_owned)
    };
    let _stop = StopOnDrop(after("stop it with: ").unwrap_or_default());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let url = after("the cluster is still running: ").expect("the demo prints its URL");
    let sql = "SELECT current_setting('data_directory') || ' ' || count(*) FROM chapters";
    assert!(
        owner_sees(&url, sql).ends_with(" 40"),
        "the URL the demo prints takes psql to its chapters"
    );
    assert_private(&other, &url, sql);
}
