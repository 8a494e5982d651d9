//! Connection settings follow libpq (issue 12): the `PG*` variables fill whatever the
//! URL leaves out, percent-encoding is decoded everywhere, passwords come from
//! `PGPASSWORD`, `~/.pgpass` and `PGPASSFILE` under libpq's permission rule, `pg_dump`
//! gets exactly the settings planrun used, and with nothing configured planrun says
//! so. Against real clusters, through the binary a user runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::tls::{Ca, TlsServer, PASSWORD, PASSWORD_ENCODED};
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
