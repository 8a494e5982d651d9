//! Real clusters: start, connect, create databases, options, stop/restart, cleanup.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    eventually, process_running, processes_mentioning, psql_tcp, self_signed_certificate, stdout,
};
use planrun_tempdb::{StopMode, TempCluster, TempDbError};

/// A cluster that is to receive another cluster's roles names its own superuser, so
/// that `postgres` is free; its URLs, `psql` and created roles' URLs all work.
#[test]
fn a_cluster_with_a_superuser_of_its_own_has_no_postgres_role() {
    let cluster = TempCluster::builder()
        .socket_only()
        .superuser("planrun_copy")
        .start()
        .unwrap();
    assert_eq!(cluster.user(), "planrun_copy");
    let roles = "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolname !~ '^pg_'";
    assert_eq!(
        cluster.psql("postgres", roles).unwrap().trim(),
        "planrun_copy"
    );
    let url = cluster.create_database("app").unwrap();
    assert!(url.starts_with("postgresql://planrun_copy@%2F"), "{url}");
    let out = psql_tcp(&cluster, &url, None, "CREATE ROLE postgres LOGIN");
    assert!(out.status.success(), "{out:?}");
    let sql = "SELECT current_user || ' ' || rolsuper FROM pg_roles WHERE rolname = current_user";
    let out = psql_tcp(&cluster, &cluster.url_as("postgres", "app"), None, sql);
    assert_eq!(stdout(&out), "postgres false");
    assert!(!cluster.os_user().is_empty());
}

#[test]
fn starts_answers_and_creates_databases() {
    let cluster = TempCluster::start().unwrap();
    assert_eq!(cluster.host(), "127.0.0.1");
    assert_eq!(cluster.user(), "postgres");
    assert!(cluster.socket_dir().is_dir());
    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap().trim(), "1");

    let url = cluster.create_database("app").unwrap();
    assert_eq!(
        url,
        format!("postgresql://postgres@127.0.0.1:{}/app", cluster.port())
    );
    // Over TCP through the URL, as other crates will connect.
    let out = psql_tcp(&cluster, &url, None, "SELECT current_database()");
    assert_eq!(stdout(&out), "app");

    // Identifiers are quoted, not interpolated.
    let url = cluster.create_database("we\"ird db=x").unwrap();
    assert!(url.ends_with("/we%22ird%20db%3Dx"), "{url}");
    let name = cluster
        .psql("we\"ird db=x", "SELECT current_database()")
        .unwrap();
    assert_eq!(name.trim(), "we\"ird db=x");

    let err = cluster.create_database("app").unwrap_err();
    assert!(matches!(err, TempDbError::Psql { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn two_clusters_run_side_by_side() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(TempCluster::start);
        let b = s.spawn(TempCluster::start);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.create_database("only_in_a").unwrap();
    let count = "SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'";
    assert_eq!(a.psql("postgres", count).unwrap().trim(), "1");
    assert_eq!(b.psql("postgres", count).unwrap().trim(), "0");
}

#[test]
fn drop_stops_the_server_and_removes_its_files() {
    let cluster = TempCluster::start().unwrap();
    let pid = cluster.pid().unwrap();
    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    // A connected client keeps a backend busy; immediate shutdown must not wait for it.
    let mut client = Command::new(cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-q",
            "-d",
            &cluster.url("postgres"),
            "-c",
            "SELECT pg_sleep(60)",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'",
            )
            .unwrap()
            .trim()
            == "1"
    }));
    assert!(process_running(pid));
    assert!(!processes_mentioning(&root).is_empty());

    let started = Instant::now();
    drop(cluster);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "drop waited for the client: took {:?}",
        started.elapsed()
    );

    assert!(!root.exists(), "{} is left", root.display());
    assert!(!process_running(pid), "postmaster {pid} is left");
    assert_eq!(processes_mentioning(&root), Vec::<String>::new());
    let _ = client.wait();
}

#[test]
fn settings_are_applied() {
    let cluster = TempCluster::builder()
        .setting("max_connections", "42")
        .setting("application_name", "it's quoted")
        .setting("fsync", "on")
        .start()
        .unwrap();
    let show = |name: &str| {
        cluster
            .psql("postgres", &format!("SHOW {name}"))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(show("max_connections"), "42");
    assert_eq!(show("fsync"), "on", "a caller's setting overrides ours");
    assert_eq!(show("full_page_writes"), "off");
    // Left on so that an immediate stop keeps acknowledged commits.
    assert_eq!(show("synchronous_commit"), "on");
    assert_eq!(show("listen_addresses"), "127.0.0.1");

    let err = TempCluster::builder()
        .setting("bad name", "1")
        .start()
        .unwrap_err();
    assert!(matches!(err, TempDbError::Invalid { .. }), "{err:?}");
}

#[test]
fn password_is_required_over_tcp() {
    let password = "s3cret:@/ pw";
    let cluster = TempCluster::builder().password(password).start().unwrap();
    assert_eq!(cluster.password(), Some(password));
    let tcp = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port()
    );

    let wrong = psql_tcp(&cluster, &tcp, Some("wrong"), "SELECT 1");
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!psql_tcp(&cluster, &tcp, None, "SELECT 1").status.success());

    assert_eq!(
        stdout(&psql_tcp(&cluster, &tcp, Some(password), "SELECT 1")),
        "1"
    );
    let url = cluster.url("postgres");
    assert!(
        url.starts_with("postgresql://postgres:s3cret%3A%40%2F%20pw@127.0.0.1:"),
        "{url}"
    );
    assert_eq!(stdout(&psql_tcp(&cluster, &url, None, "SELECT 1")), "1");

    // The socket stays trusted, so administration needs no password.
    cluster.create_database("app").unwrap();
}

#[test]
fn stop_and_restart_keep_port_and_data() {
    let mut cluster = TempCluster::start().unwrap();
    let port = cluster.port();
    cluster
        .psql(
            "postgres",
            "CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (7)",
        )
        .unwrap();
    let first_pid = cluster.pid().unwrap();

    cluster.stop(StopMode::Immediate).unwrap();
    assert_eq!(cluster.pid(), None);
    assert!(!process_running(first_pid));
    assert!(cluster.psql("postgres", "SELECT 1").is_err());
    cluster.stop(StopMode::Fast).unwrap(); // stopping a stopped cluster is fine

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(
        cluster
            .psql("postgres", "SELECT id FROM survivor")
            .unwrap()
            .trim(),
        "7"
    );

    cluster.restart().unwrap(); // restarting a running cluster stops it first
    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap().trim(), "1");
    cluster.stop(StopMode::Fast).unwrap();
}

#[test]
fn serves_tls() {
    let certs = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed_certificate(certs.path()) else {
        eprintln!("skipping: the openssl command is not available");
        return;
    };
    let cluster = TempCluster::builder().ssl(&cert, &key).start().unwrap();
    let tls = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
        cluster.port()
    );
    let out = psql_tcp(
        &cluster,
        &tls,
        None,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(stdout(&out), "t");
}

#[test]
fn kept_cluster_outlives_the_value_until_its_stop_command() {
    let cluster = TempCluster::start().unwrap();
    let pid = cluster.pid().unwrap();
    let kept = cluster.keep();
    assert!(process_running(pid));
    assert!(kept.data_dir.is_dir());
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", &kept.url, "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    let out = Command::new("sh")
        .arg("-c")
        .arg(&kept.stop_command)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {out:?}", kept.stop_command);
    assert!(!kept.dir.exists());
    // The server was our child; reap it is init's job now, so allow for a zombie.
    assert!(eventually(Duration::from_secs(10), || !process_running(
        pid
    )));
}

#[test]
fn a_socket_only_cluster_listens_on_no_tcp_address_and_its_urls_reach_the_socket() {
    let cluster = TempCluster::builder().socket_only().start().unwrap();
    let dir = cluster.socket_dir().to_str().unwrap().to_owned();
    assert_eq!(cluster.host(), dir);
    let no_tcp = cluster.psql("postgres", "SHOW listen_addresses").unwrap();
    assert_eq!(no_tcp.trim(), "");

    let url = cluster.create_database("app").unwrap();
    let encoded = dir.replace('/', "%2F");
    assert_eq!(
        url,
        format!("postgresql://postgres@{encoded}:{}/app", cluster.port())
    );
    let bin_dir = cluster.bin_dir().to_path_buf();
    let psql = |url: &str, sql: &str| {
        Command::new(bin_dir.join("psql"))
            .args(["-X", "-A", "-t", "-w", "-d", url, "-c", sql])
            .output()
            .unwrap()
    };
    assert_eq!(stdout(&psql(&url, "SELECT current_database()")), "app");
    let dumped = Command::new(bin_dir.join("pg_dump"))
        .args(["--schema-only", "-d", &url])
        .output()
        .unwrap();
    assert!(dumped.status.success(), "pg_dump: {dumped:?}");

    let pid = cluster.pid().unwrap();
    let kept = cluster.keep();
    assert_eq!(kept.host, dir);
    assert_eq!(stdout(&psql(&kept.url, "SELECT 1")), "1");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&kept.stop_command)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {out:?}", kept.stop_command);
    assert!(!kept.dir.exists());
    assert!(eventually(Duration::from_secs(10), || !process_running(
        pid
    )));
}

#[test]
fn restart_on_a_taken_port_reports_the_server_log() {
    let mut cluster = TempCluster::start().unwrap();
    cluster.stop(StopMode::Fast).unwrap();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", cluster.port())).unwrap();
    let err = cluster.restart().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TempDbError::Start { .. }), "{err:?}");
    assert!(msg.contains("Address already in use"), "{msg}");
    drop(squatter);
    cluster.restart().unwrap();
    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap().trim(), "1");
}

#[test]
fn clusters_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TempCluster>();
}

/// A measurement, not a check: `cargo test -p planrun-tempdb --test cluster start_time -- --ignored --nocapture`.
#[test]
#[ignore = "timing measurement; prints figures"]
fn start_time() {
    // Warm the template (initdb) first, as the first cluster of a process does.
    let t = Instant::now();
    let first = TempCluster::start().unwrap();
    let first_time = t.elapsed();
    let mut later = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let c = TempCluster::start().unwrap();
        later.push(t.elapsed());
        drop(c);
    }
    drop(first);
    eprintln!("start: first {first_time:?}, later {later:?}");
}
