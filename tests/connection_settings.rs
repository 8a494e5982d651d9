//! Connection settings follow libpq (issue 12): the `PG*` variables fill whatever the
//! URL leaves out, percent-encoding is decoded everywhere, passwords come from
//! `PGPASSWORD`, `~/.pgpass` and `PGPASSFILE` under libpq's permission rule, `pg_dump`
//! gets exactly the settings planrun used, and with nothing configured planrun says
//! so. Issue 20: only `sslrootcert` is trusted (the system store only for
//! `sslrootcert=system`), each host of a list gets its own password-file line,
//! `pg_dump` gets the TLS planrun negotiated, a password key in any spelling is hidden,
//! and a stale `./.env` never takes `PGPASSWORD`. Against real clusters, through the
//! binary a user runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::tls::{Ca, TlsServer, LEAK_MARK, PASSWORD, PASSWORD_ENCODED};
use planrun_tests::{describe, planrun_command, scenario};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// Runs planrun in `dir` with the caller's `PG*` variables removed, `HOME` set to
/// `home` (so no real `~/.pgpass` or `~/.postgresql` takes part) and `env` added.
fn run(dir: &Path, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = planrun_command(PLANRUN, dir, args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") {
            command.env_remove(key);
        }
    }
    command.env("HOME", home);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the planrun binary runs")
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
}

/// The server's certificate names a host other than `localhost`, so `verify-full`
/// to `localhost` must refuse it; `prefer` and `require` would not.
fn server_for_another_host() -> (TlsServer, PathBuf) {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["db.example.invalid"], &[]);
    let ca_file = server.ca_file();
    (server, ca_file)
}

#[test]
fn sslmode_from_the_environment_or_percent_encoded_is_never_downgraded() {
    let (server, ca_file) = server_for_another_host();
    let port = server.db.cluster.port();
    let home = tempfile::tempdir().unwrap();
    let ca = ca_file.display().to_string();
    let dbname = server.database("target");
    let dir = scenario("tls");
    let url = format!("postgresql://postgres:{PASSWORD_ENCODED}@localhost:{port}/{dbname}");
    let from_env = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())];
    let encoded = format!("{url}?ssl%6Dode=verify-full&sslrootcert={ca}");
    for (url, env) in [(&url, &from_env[..]), (&encoded, &[][..])] {
        let output = run(
            dir.path(),
            home.path(),
            &["apply", "plan.toml", "--no-backup", "--database-url", url],
            env,
        );
        assert_exit(&output, exit_codes::CANNOT_CONNECT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("certificate verify failed") || stderr.contains("hostname mismatch"),
            "{}",
            describe(&output)
        );
    }
    assert_eq!(
        server.scalar(&dbname, "SELECT to_regnamespace('planrun') IS NULL"),
        "t",
        "a refused connection wrote to the target"
    );
}

/// A `pg_dump` that records its arguments and the names of the `PG*` variables it
/// was given, then runs the real one.
fn recording_pg_dump(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = dir.join("pg_dump.args");
    let real = planrun_tempdb::find_bin_dir().unwrap().join("pg_dump");
    let script = format!(
        "#!/bin/sh\n{{ for a in \"$@\"; do printf '%s\\n' \"$a\"; done; env | grep '^PG' | cut -d= -f1 | sed 's/^/env:/'; }} > '{}'\nexec '{}' \"$@\"\n",
        record.display(),
        real.display()
    );
    let file = bin.join("pg_dump");
    std::fs::write(&file, script).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, record)
}

#[test]
fn pg_dump_gets_exactly_the_settings_planrun_connected_with() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &[]);
    let ca_file = server.ca_file().display().to_string();
    let home = tempfile::tempdir().unwrap();
    let (bin, record) = recording_pg_dump(home.path());
    let dbname = server.database("target");
    let dir = scenario("tls");
    let url = format!(
        "postgresql://postgres@localhost:{}/{dbname}",
        server.db.cluster.port()
    );
    let output = run(
        dir.path(),
        home.path(),
        &["apply", "plan.toml", "--database-url", &url],
        &[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", &ca_file),
            ("PGPASSWORD", PASSWORD),
            ("PGAPPNAME", "from-env"),
            ("PG_BIN", &bin.display().to_string()),
        ],
    );
    assert_exit(&output, exit_codes::SUCCESS);
    let recorded = std::fs::read_to_string(&record).expect("pg_dump ran");
    let conninfo = recorded
        .lines()
        .skip_while(|line| *line != "--dbname")
        .nth(1)
        .expect("pg_dump got --dbname");
    for setting in [
        "sslmode='verify-full'".to_owned(),
        format!("sslrootcert='{ca_file}'"),
        "host='localhost'".to_owned(),
        format!("dbname='{dbname}'"),
        "application_name='from-env'".to_owned(),
    ] {
        assert!(conninfo.contains(&setting), "{setting} missing: {recorded}");
    }
    assert!(
        !recorded.contains(PASSWORD),
        "the password is on the command line"
    );
    let env: Vec<&str> = recorded
        .lines()
        .filter_map(|line| line.strip_prefix("env:"))
        .filter(|name| *name != "PG_BIN")
        .collect();
    assert_eq!(env, ["PGPASSWORD"], "{recorded}");
}

#[test]
fn a_password_comes_from_pgpassword_pgpass_or_pgpassfile_as_in_libpq() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &[]);
    let port = server.db.cluster.port().to_string();
    let home = tempfile::tempdir().unwrap();
    let status = |dbname: &str, env: &[(&str, &str)]| {
        let dir = scenario("tls");
        let url = format!("postgresql://postgres@localhost:{port}/{dbname}?sslmode=require");
        run(
            dir.path(),
            home.path(),
            &["status", "plan.toml", "--database-url", &url],
            env,
        )
    };
    let dbname = server.database("target");

    assert_exit(&status(&dbname, &[]), exit_codes::CANNOT_CONNECT);
    assert_exit(
        &status(&dbname, &[("PGPASSWORD", PASSWORD)]),
        exit_codes::SUCCESS,
    );

    // ~/.pgpass: used at 0600, ignored with libpq's warning when others may read it.
    let pgpass = home.path().join(".pgpass");
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    std::fs::write(
        &pgpass,
        format!("localhost:{port}:{dbname}:postgres:{escaped}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_exit(&status(&dbname, &[]), exit_codes::SUCCESS);
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ignored = status(&dbname, &[]);
    assert_exit(&ignored, exit_codes::CANNOT_CONNECT);
    assert!(
        String::from_utf8_lossy(&ignored.stderr).contains("has group or world access"),
        "{}",
        describe(&ignored)
    );

    // PGPASSFILE names another file.
    let elsewhere = home.path().join("secrets");
    std::fs::write(&elsewhere, format!("*:*:*:*:{escaped}\n")).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = elsewhere.display().to_string();
    assert_exit(
        &status(&dbname, &[("PGPASSFILE", &path)]),
        exit_codes::SUCCESS,
    );

    // A wrong password from the file is named as such.
    std::fs::write(&elsewhere, "*:*:*:*:Wrong-w0rd\n").unwrap();
    let wrong = status(&dbname, &[("PGPASSFILE", &path)]);
    assert_exit(&wrong, exit_codes::CANNOT_CONNECT);
    let text = describe(&wrong);
    assert!(text.contains("password came from password file"), "{text}");
    assert!(!text.contains("Wrong-w0rd"), "{text}");
}

#[test]
fn a_key_value_password_with_escaped_spaces_is_hidden_everywhere() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &[]);
    let dbname = server.database("target");
    server.scalar(
        &dbname,
        "CREATE ROLE spacey LOGIN SUPERUSER PASSWORD 'Tr0ub4dor horse battery'",
    );
    let home = tempfile::tempdir().unwrap();
    let dir = scenario("tls");
    let conninfo = |password: &str| {
        format!(
            r"host=localhost port={} dbname={dbname} user=spacey sslmode=require password={password}",
            server.db.cluster.port()
        )
    };
    let mut seen = String::new();
    for (args, code) in [
        (vec!["apply", "plan.toml", "--format", "json"], 0),
        (vec!["status", "plan.toml"], 0),
        (vec!["apply", "plan.toml"], 0),
    ] {
        let good = conninfo(r"Tr0ub4dor\ horse\ battery");
        let mut args = args.clone();
        args.extend(["--database-url", &good]);
        let output = run(dir.path(), home.path(), &args, &[]);
        assert_exit(&output, code);
        seen.push_str(&describe(&output));
    }
    let wrong = conninfo(r"Tr0ub4dor\ horse\ staple");
    let output = run(
        dir.path(),
        home.path(),
        &["apply", "plan.toml", "--database-url", &wrong],
        &[],
    );
    assert_exit(&output, exit_codes::CANNOT_CONNECT);
    seen.push_str(&describe(&output));
    seen.push_str(&server.scalar(&dbname, "SELECT string_agg(target, ' ') FROM planrun.runs"));
    for word in ["horse", "battery", "staple"] {
        assert!(!seen.contains(word), "`{word}` leaked:\n{seen}");
    }
    assert!(seen.contains("password=***"), "{seen}");
}

#[test]
fn with_nothing_configured_planrun_says_so() {
    let home = tempfile::tempdir().unwrap();
    let dir = scenario("tls");
    let output = run(dir.path(), home.path(), &["status", "plan.toml"], &[]);
    assert_exit(&output, exit_codes::CANNOT_CONNECT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("none of --database-url, DATABASE_URL") && !stderr.contains("5432"),
        "{}",
        describe(&output)
    );
}

/// `status` of the `tls` scenario against `url`, with `env`.
fn status(home: &Path, url: &str, env: &[(&str, &str)]) -> Output {
    let dir = scenario("tls");
    run(
        dir.path(),
        home,
        &["status", "plan.toml", "--database-url", url],
        env,
    )
}

#[test]
fn a_ca_in_the_system_store_is_trusted_only_with_sslrootcert_system() {
    // The impostor's certificate comes from a CA the system trusts (SSL_CERT_FILE
    // stands in for the system store); the team's CA is another.
    let public_ca = Ca::new("a public CA");
    let impostor = TlsServer::start(&public_ca, &["localhost"], &["127.0.0.1"]);
    let home = tempfile::tempdir().unwrap();
    let team_ca = Ca::new("the team's CA").write(&home.path().join("team-ca.pem"));
    let system_store = impostor.ca_file().display().to_string();
    let env = [("SSL_CERT_FILE", system_store.as_str())];
    let port = impostor.db.cluster.port();
    let url = |query: &str| {
        format!("postgresql://postgres:{PASSWORD_ENCODED}@localhost:{port}/planrun_test?{query}")
    };
    for sslmode in ["verify-ca", "verify-full"] {
        let query = format!("sslmode={sslmode}&sslrootcert={}", team_ca.display());
        let output = status(home.path(), &url(&query), &env);
        assert_exit(&output, exit_codes::CANNOT_CONNECT);
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("certificate verify failed"),
            "{}",
            describe(&output)
        );
    }
    assert_eq!(
        impostor.sessions_of("planrun"),
        Vec::<String>::new(),
        "a session (and so the password) reached the impostor"
    );
    // With `system`, the backup's pg_dump (libpq 15 here) trusts the same store.
    let dir = scenario("tls");
    let output = run(
        dir.path(),
        home.path(),
        &[
            "apply",
            "plan.toml",
            "--database-url",
            &url("sslrootcert=system"),
        ],
        &env,
    );
    assert_exit(&output, exit_codes::SUCCESS);
    assert_eq!(impostor.sessions_of("pg_dump").len(), 1);
    let sessions = impostor.sessions_of("planrun");
    assert!(
        !sessions.is_empty() && sessions.iter().all(|line| line.contains("SSL enabled")),
        "{sessions:?}"
    );
}

/// A TCP port on this host where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn each_host_of_a_list_gets_its_own_password_file_line() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &[]);
    let port = server.db.cluster.port();
    let dbname = server.database("target");
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    let write_pgpass = |first: &str| {
        std::fs::write(
            &pgpass,
            format!("{first}:*:*:meant-for-a\n127.0.0.1:{port}:*:*:{escaped}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    // Nothing listens on the first host; its line must not be sent to the second.
    // The apply's backup runs pg_dump, which reads the file per host too.
    write_pgpass(&format!("127.0.0.2:{port}"));
    let conninfo = format!(
        "host=127.0.0.2,127.0.0.1 port={port} user=postgres dbname={dbname} sslmode=require"
    );
    let dir = scenario("tls");
    let output = run(
        dir.path(),
        home.path(),
        &["apply", "plan.toml", "--database-url", &conninfo],
        &[],
    );
    assert_exit(&output, exit_codes::SUCCESS);
    assert_eq!(server.sessions_of("pg_dump").len(), 1);

    let closed = closed_port();
    write_pgpass(&format!("127.0.0.1:{closed}"));
    let by_port = format!(
        "host=127.0.0.1,127.0.0.1 port={closed},{port} user=postgres dbname={dbname} sslmode=require"
    );
    let output = status(home.path(), &by_port, &[]);
    assert_exit(&output, exit_codes::SUCCESS);
    let log = std::fs::read_to_string(server.db.cluster.log_file()).unwrap();
    assert!(
        !log.contains("password authentication failed"),
        "a wrong password reached the server:\n{log}"
    );
}

#[test]
fn pg_dump_gets_the_tls_planrun_negotiated_under_sslmode_allow() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &[]);
    let home = tempfile::tempdir().unwrap();
    let (bin, record) = recording_pg_dump(home.path());
    let port = server.db.cluster.port();
    let dir = scenario("tls");
    for sslmode in ["allow", "prefer"] {
        let dbname = server.database(&format!("target_{sslmode}"));
        let url = format!(
            "postgresql://postgres:{PASSWORD_ENCODED}@localhost:{port}/{dbname}?sslmode={sslmode}"
        );
        let output = run(
            dir.path(),
            home.path(),
            &["apply", "plan.toml", "--database-url", &url],
            &[("PG_BIN", &bin.display().to_string())],
        );
        assert_exit(&output, exit_codes::SUCCESS);
        let recorded = std::fs::read_to_string(&record).expect("pg_dump ran");
        assert!(recorded.contains("sslmode='require'"), "{recorded}");
    }
    let dbname = server.database("rehearsed");
    let url =
        format!("postgresql://postgres:{PASSWORD_ENCODED}@localhost:{port}/{dbname}?sslmode=allow");
    // The copy runs over a Unix socket, where the scenario's TLS check fails; the
    // copy of the target is what matters here.
    let output = run(
        dir.path(),
        home.path(),
        &["rehearse", "plan.toml", "--database-url", &url],
        &[],
    );
    let dumps = server.sessions_of("pg_dump");
    assert!(
        dumps
            .iter()
            .any(|line| line.contains(&format!("database={dbname}"))),
        "the rehearsal did not copy the target: {}",
        describe(&output)
    );
    // `pg_dump` for the two backups, `pg_dumpall` for the copy's roles and `pg_dump`
    // for the copy itself.
    assert_eq!(
        dumps.len(),
        4,
        "two backups, the copy's roles and the copy: {dumps:#?}"
    );
    for line in &dumps {
        assert!(line.contains("SSL enabled"), "pg_dump in plaintext: {line}");
    }
}

#[test]
fn a_percent_encoded_password_key_is_hidden_everywhere() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &[]);
    let dbname = server.database("target");
    let home = tempfile::tempdir().unwrap();
    let dir = scenario("tls");
    let url = |key: &str, password: &str| {
        format!(
            "postgresql://postgres@localhost:{}/{dbname}?sslmode=require&{key}={password}",
            server.db.cluster.port()
        )
    };
    let good = url("pass%77ord", PASSWORD_ENCODED);
    let mut seen = String::new();
    for args in [
        vec!["apply", "plan.toml", "--format", "json"],
        vec!["status", "plan.toml"],
        vec!["status", "plan.toml", "--format", "json"],
    ] {
        let mut args = args.clone();
        args.extend(["--database-url", &good]);
        let output = run(dir.path(), home.path(), &args, &[]);
        assert_exit(&output, exit_codes::SUCCESS);
        seen.push_str(&describe(&output));
    }
    for wrong in [
        url("pass%77ord", "Wrong-w0rd"),
        url("PASSWORD", "Wrong-w0rd"),
    ] {
        let output = run(
            dir.path(),
            home.path(),
            &["apply", "plan.toml", "--database-url", &wrong],
            &[],
        );
        assert_eq!(output.status.code().map(|code| code != 0), Some(true));
        seen.push_str(&describe(&output));
    }
    seen.push_str(&server.scalar(&dbname, "SELECT string_agg(target, ' ') FROM planrun.runs"));
    assert!(!seen.contains(LEAK_MARK), "the password leaked:\n{seen}");
    assert!(seen.contains("pass%77ord=***"), "{seen}");
}

#[test]
fn a_stale_dotenv_never_gets_the_environments_password_and_the_header_names_the_source() {
    let meant = planrun_tests::TestDb::with_password("shared-pass");
    let stale = planrun_tests::TestDb::with_password("shared-pass");
    let home = tempfile::tempdir().unwrap();
    let dir = scenario("tls");
    let env_port = meant.cluster.port().to_string();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", env_port.as_str()),
        ("PGUSER", "postgres"),
        ("PGDATABASE", "planrun_test"),
        ("PGPASSWORD", "shared-pass"),
        ("PGSSLMODE", "disable"),
    ];
    let status_in = |args: &[&str]| {
        let mut all = vec!["status", "plan.toml"];
        all.extend(args);
        run(dir.path(), home.path(), &all, &env)
    };
    let dotenv = |port: u16| {
        std::fs::write(
            dir.path().join(".env"),
            format!("DATABASE_URL=postgresql://postgres@127.0.0.1:{port}/planrun_test\n"),
        )
        .unwrap();
    };

    dotenv(stale.cluster.port());
    let refused = status_in(&[]);
    assert_exit(&refused, exit_codes::CANNOT_CONNECT);
    let text = describe(&refused);
    assert!(
        text.contains("PGPASSWORD was not sent") && text.contains("./.env"),
        "{text}"
    );
    assert!(!text.contains("shared-pass"), "{text}");

    dotenv(meant.cluster.port());
    let same_server = status_in(&[]);
    assert_exit(&same_server, exit_codes::SUCCESS);
    assert!(
        String::from_utf8_lossy(&same_server.stdout).contains("(from ./.env)"),
        "{}",
        describe(&same_server)
    );
    let json = status_in(&["--format", "json"]);
    assert_exit(&json, exit_codes::SUCCESS);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(document["target_source"], "./.env");

    std::fs::remove_file(dir.path().join(".env")).unwrap();
    let from_pg = status_in(&[]);
    assert_exit(&from_pg, exit_codes::SUCCESS);
    assert!(
        String::from_utf8_lossy(&from_pg.stdout).contains("(from the PG* variables)"),
        "{}",
        describe(&from_pg)
    );
    let flag = status_in(&["--database-url", &meant.url]);
    assert_exit(&flag, exit_codes::SUCCESS);
    assert!(
        String::from_utf8_lossy(&flag.stdout).contains("(from --database-url)"),
        "{}",
        describe(&flag)
    );
}
