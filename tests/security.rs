//! Security guarantees of planrun, proven against real throwaway clusters through the
//! binary a user runs: TLS per `sslmode` (and that it fails closed), password
//! redaction on every path, the ledger's privileges, and that plan text cannot inject
//! SQL. `docs/security.md` lists each guarantee with the test here that proves it.

use std::path::Path;
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::tls::{Ca, TlsServer, LEAK_MARK, PASSWORD, PASSWORD_ENCODED};
use planrun_tests::{describe, planrun, scenario, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn apply(dir: &Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "plan.toml", "--database-url", url];
    args.extend(extra);
    planrun(PLANRUN, dir, &args, &[])
}

fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
}

fn backups(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("backups")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing of planrun's and nothing of the plan reached database `dbname`.
fn assert_untouched(server: &TlsServer, dbname: &str, dir: &Path) {
    assert_eq!(
        server.scalar(
            dbname,
            "SELECT to_regnamespace('planrun') IS NULL AND to_regclass('public.tls_seen') IS NULL"
        ),
        "t",
        "a refused connection wrote to the target"
    );
    assert!(backups(dir).is_empty(), "a refused run took a backup");
}

// ---------------------------------------------------------------------------------
// 1. TLS encrypts, per sslmode.

#[test]
fn require_verify_ca_and_verify_full_encrypt_the_connection_and_disable_does_not() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &["127.0.0.1"]);
    let ca_file = server.ca_file();
    for (dbname, host, mode, root_cert) in [
        ("require_ip", "127.0.0.1", "require", None),
        (
            "verify_ca",
            "127.0.0.1",
            "verify-ca",
            Some(ca_file.as_path()),
        ),
        (
            "full_name",
            "localhost",
            "verify-full",
            Some(ca_file.as_path()),
        ),
        (
            "full_ip",
            "127.0.0.1",
            "verify-full",
            Some(ca_file.as_path()),
        ),
    ] {
        let dbname = server.database(dbname);
        let dir = scenario("tls");
        let url = server.url(&dbname, host, mode, root_cert);
        // With the backup: pg_dump gets the same sslmode and root certificate.
        let output = apply(dir.path(), &url, &[]);
        assert_code(&output, exit_codes::SUCCESS);
        let seen = server.scalar(&dbname, "SELECT ssl::text || ' ' || version FROM tls_seen");
        assert!(seen.starts_with("true TLSv1."), "{mode} to {host}: {seen}");
        assert_eq!(backups(dir.path()).len(), 1, "{}", describe(&output));
        // `verify` runs the stage's check again, on a new connection.
        let verify = planrun(
            PLANRUN,
            dir.path(),
            &["verify", "plan.toml", "--database-url", &url],
            &[],
        );
        assert_code(&verify, exit_codes::SUCCESS);
    }

    // sslmode=disable: the same plan, its expectation turned round, passes.
    let dbname = server.database("disabled");
    let dir = scenario("tls");
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, text.replace("expect = true", "expect = false")).unwrap();
    let output = apply(
        dir.path(),
        &server.url(&dbname, "127.0.0.1", "disable", None),
        &["--no-backup"],
    );
    assert_code(&output, exit_codes::SUCCESS);
    assert_eq!(server.scalar(&dbname, "SELECT ssl FROM tls_seen"), "f");

    // And the unchanged plan fails its gate on a plaintext connection.
    let dbname = server.database("disabled_gate");
    let dir = scenario("tls");
    let output = apply(
        dir.path(),
        &server.url(&dbname, "127.0.0.1", "disable", None),
        &["--no-backup"],
    );
    assert_code(&output, exit_codes::VERIFICATION_FAILED);
    assert_eq!(
        server.scalar(&dbname, "SELECT to_regclass('public.tls_seen') IS NULL"),
        "t"
    );
}

// ---------------------------------------------------------------------------------
// 2. and 3. Verification fails closed.

fn assert_refused(server: &TlsServer, dbname: &str, url: &str, why: &str) {
    let dir = scenario("tls");
    let output = apply(dir.path(), url, &[]);
    assert_code(&output, exit_codes::CANNOT_CONNECT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to postgresql://postgres:***@"),
        "{why}: {}",
        describe(&output)
    );
    assert!(
        stderr.contains("certificate verify failed"),
        "{why}: {}",
        describe(&output)
    );
    let seen = describe(&output);
    assert!(
        !seen.contains(LEAK_MARK),
        "{why}: the password leaked:\n{seen}"
    );
    assert_untouched(server, dbname, dir.path());
}

#[test]
fn a_certificate_from_another_ca_fails_closed() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &["127.0.0.1"]);
    let other_ca = Ca::new("planrun test CA");
    let other_file = other_ca.write(&server.files.path().join("other-ca.pem"));
    let dbname = server.database("target");
    for (host, mode) in [
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-full"),
        ("127.0.0.1", "verify-ca"),
        // As in libpq, require with an explicit root certificate verifies the chain.
        ("127.0.0.1", "require"),
    ] {
        let url = server.url(&dbname, host, mode, Some(&other_file));
        assert_refused(&server, &dbname, &url, &format!("{mode} to {host}"));
    }
    // verify-full without sslrootcert needs ~/.postgresql/root.crt, as in libpq; with
    // none there it is refused before any connection, never downgraded.
    let home = tempfile::tempdir().unwrap();
    let url = server.url(&dbname, "localhost", "verify-full", None);
    let dir = scenario("tls");
    let home_path = home.path().display().to_string();
    let output = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &url],
        &[("HOME", &home_path)],
    );
    assert_code(&output, exit_codes::CANNOT_CONNECT);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("needs a root certificate file"),
        "{}",
        describe(&output)
    );
    assert_untouched(&server, &dbname, dir.path());
    // ... and with another CA's certificate there, the handshake fails.
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::copy(&other_file, home.path().join(".postgresql/root.crt")).unwrap();
    let output = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &url],
        &[("HOME", &home_path)],
    );
    assert_code(&output, exit_codes::CANNOT_CONNECT);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("certificate verify failed"),
        "{}",
        describe(&output)
    );
}

#[test]
fn verify_full_refuses_a_certificate_for_another_host_name() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["db.example.invalid"], &[]);
    let ca_file = server.ca_file();
    let dbname = server.database("target");
    for host in ["localhost", "127.0.0.1"] {
        let url = server.url(&dbname, host, "verify-full", Some(&ca_file));
        let dir = scenario("tls");
        let output = apply(dir.path(), &url, &[]);
        assert_code(&output, exit_codes::CANNOT_CONNECT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("certificate verify failed"),
            "{}",
            describe(&output)
        );
        assert_untouched(&server, &dbname, dir.path());
    }
    // verify-ca checks the chain only, so the same certificate is accepted there.
    let dir = scenario("tls");
    let url = server.url(&dbname, "localhost", "verify-ca", Some(&ca_file));
    assert_code(&apply(dir.path(), &url, &[]), exit_codes::SUCCESS);
    assert_eq!(server.scalar(&dbname, "SELECT ssl FROM tls_seen"), "t");
}

#[test]
fn require_never_falls_back_to_plaintext() {
    let db = TestDb::new();
    let port = db.cluster.port();
    for mode in ["require", "verify-ca", "verify-full"] {
        let dir = scenario("tls");
        let url = format!("postgresql://postgres@127.0.0.1:{port}/planrun_test?sslmode={mode}");
        let output = apply(dir.path(), &url, &[]);
        assert_code(&output, exit_codes::CANNOT_CONNECT);
        assert_eq!(db.scalar("SELECT to_regnamespace('planrun') IS NULL"), "t");
    }
    // prefer (the default) connects in plaintext to a server without TLS.
    let dir = scenario("tls");
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, text.replace("expect = true", "expect = false")).unwrap();
    let output = apply(dir.path(), &db.url, &["--no-backup"]);
    assert_code(&output, exit_codes::SUCCESS);
    assert_eq!(db.scalar("SELECT ssl FROM tls_seen"), "f");
}

// ---------------------------------------------------------------------------------
// 4. The password appears nowhere, whichever way it came.

#[test]
fn the_password_stays_hidden_on_every_connection_path() {
    let ca = Ca::new("planrun test CA");
    let server = TlsServer::start(&ca, &["localhost"], &["127.0.0.1"]);
    let ca_file = server.ca_file();
    let other_file = Ca::new("other").write(&server.files.path().join("other-ca.pem"));
    let port = server.db.cluster.port().to_string();
    let mut seen = String::new();
    let mut dirs = Vec::new();
    let mut run = |dir: &Path, args: &[&str], env: &[(&str, &str)], code: i32| {
        let output = planrun(PLANRUN, dir, args, env);
        assert_code(&output, code);
        let text = describe(&output);
        seen.push_str(&text);
        text
    };

    // --database-url, text and JSON, a refused TLS handshake and a wrong password.
    let dbname = server.database("from_flag");
    let dir = scenario("tls");
    let good = server.url(&dbname, "localhost", "verify-full", Some(&ca_file));
    let wrong_ca = server.url(&dbname, "localhost", "verify-full", Some(&other_file));
    let wrong_password = good.replace(PASSWORD_ENCODED, "Wrong-w0rd");
    for (args, code) in [
        (
            vec!["apply", "plan.toml", "--database-url", &wrong_ca],
            exit_codes::CANNOT_CONNECT,
        ),
        (
            vec![
                "apply",
                "plan.toml",
                "--database-url",
                &wrong_password,
                "--format",
                "json",
            ],
            exit_codes::CANNOT_CONNECT,
        ),
        (
            vec![
                "apply",
                "plan.toml",
                "--database-url",
                &good,
                "--format",
                "json",
            ],
            0,
        ),
        (vec!["status", "plan.toml", "--database-url", &good], 0),
        (
            vec![
                "plan",
                "plan.toml",
                "--database-url",
                &good,
                "--format",
                "json",
            ],
            0,
        ),
    ] {
        run(dir.path(), &args, &[], code);
    }
    dirs.push((dbname, dir));

    // The password unencoded in the URL, `/` and `?` included, as a user may paste it:
    // libpq ends the credentials at the first `/`, so psql and pg_dump refuse such a
    // URL; planrun refuses it the same way, with the fix and without the password.
    let dbname = server.database("unencoded");
    let dir = scenario("tls");
    let raw = server
        .url(&dbname, "localhost", "verify-full", Some(&ca_file))
        .replace(PASSWORD_ENCODED, PASSWORD);
    for url in [raw.clone(), raw.replace(&format!(":{port}/"), ":notaport/")] {
        let text = run(
            dir.path(),
            &["apply", "plan.toml", "--database-url", &url],
            &[],
            exit_codes::CANNOT_CONNECT,
        );
        assert!(text.contains("percent-encode"), "{text}");
    }
    assert_untouched(&server, &dbname, dir.path());

    // DATABASE_URL in ./.env.
    let dbname = server.database("from_dotenv");
    let dir = scenario("tls");
    let url = server.url(&dbname, "localhost", "verify-full", Some(&ca_file));
    std::fs::write(dir.path().join(".env"), format!("DATABASE_URL='{url}'\n")).unwrap();
    run(dir.path(), &["apply", "plan.toml"], &[], 0);
    run(
        dir.path(),
        &["status", "plan.toml", "--format", "json"],
        &[],
        0,
    );
    dirs.push((dbname, dir));

    // DATABASE_URL in the environment.
    let dbname = server.database("from_env");
    let dir = scenario("tls");
    let url = server.url(&dbname, "127.0.0.1", "require", None);
    run(
        dir.path(),
        &["apply", "plan.toml"],
        &[("DATABASE_URL", &url)],
        0,
    );
    dirs.push((dbname, dir));

    // libpq's PG* variables and no URL at all; pg_dump gets them too.
    let dbname = server.database("from_libpq");
    let dir = scenario("tls");
    let ca_path = ca_file.display().to_string();
    let libpq = |password: &'static str| {
        [
            ("PGHOST", "localhost"),
            ("PGPORT", port.as_str()),
            ("PGUSER", "postgres"),
            ("PGDATABASE", dbname.as_str()),
            ("PGPASSWORD", password),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", ca_path.as_str()),
        ]
    };
    run(
        dir.path(),
        &["apply", "plan.toml"],
        &libpq("Wrong-w0rd"),
        exit_codes::CANNOT_CONNECT,
    );
    run(
        dir.path(),
        &["apply", "plan.toml", "--format", "json"],
        &libpq(PASSWORD),
        0,
    );
    run(dir.path(), &["status", "plan.toml"], &libpq(PASSWORD), 0);
    dirs.push((dbname, dir));

    assert!(!seen.contains(LEAK_MARK), "the password leaked:\n{seen}");
    assert!(
        seen.contains(":***@"),
        "the target is shown redacted:\n{seen}"
    );
    for (dbname, dir) in &dirs {
        assert_eq!(
            server.scalar(dbname, "SELECT ssl FROM tls_seen"),
            "t",
            "{dbname}"
        );
        let ledger = server.db.cluster.psql(
            dbname,
            "SELECT row_to_json(r)::text FROM planrun.runs r \
             UNION ALL SELECT row_to_json(s)::text FROM planrun.stage_results s",
        );
        let ledger = ledger.unwrap();
        assert!(ledger.contains("record_tls"), "{dbname}: {ledger}");
        assert!(
            !ledger.contains(LEAK_MARK),
            "{dbname}: the ledger holds the password: {ledger}"
        );
        let files = backups(dir.path());
        assert_eq!(files.len(), 1, "{dbname}: {files:?}");
        assert!(
            files.iter().all(|file| !file.contains(LEAK_MARK)),
            "{files:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// 5. The ledger is private to the role that runs planrun.

#[test]
fn the_ledger_gets_no_grants_beyond_the_role_that_runs_planrun() {
    let db = TestDb::new();
    db.execute("CREATE ROLE migrator LOGIN; CREATE ROLE bystander LOGIN");
    db.execute("CREATE DATABASE owned OWNER migrator");
    let port = db.cluster.port();
    let as_role = |role: &str| format!("postgresql://{role}@127.0.0.1:{port}/owned");
    let mut migrator = postgres::Client::connect(&as_role("migrator"), postgres::NoTls).unwrap();
    migrator
        .batch_execute(
            "CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 5) g;",
        )
        .unwrap();
    let dir = scenario("shop");
    let output = apply(dir.path(), &as_role("migrator"), &[]);
    assert_code(&output, exit_codes::SUCCESS);

    let superuser = |sql: &str| db.cluster.psql("owned", sql).unwrap().trim().to_owned();
    // Schema and every relation (tables, sequences, index) belong to the running
    // role, with no ACL: the owner alone has rights.
    assert_eq!(
        superuser(
            "SELECT pg_get_userbyid(nspowner) || ' ' || coalesce(nspacl::text, 'none') \
             FROM pg_namespace WHERE nspname = 'planrun'"
        ),
        "migrator none"
    );
    let relations = superuser(
        "SELECT string_agg(relname || ' ' || relkind::text || ' ' || pg_get_userbyid(relowner) \
                || ' ' || coalesce(relacl::text, 'none'), E'\\n' ORDER BY relname) \
         FROM pg_class WHERE relnamespace = 'planrun'::regnamespace",
    );
    assert!(relations.contains("runs r migrator none"), "{relations}");
    assert!(
        relations.contains("stage_results r migrator none"),
        "{relations}"
    );
    for line in relations.lines() {
        assert!(line.ends_with(" migrator none"), "{relations}");
    }
    for role in ["bystander", "public"] {
        let any = superuser(&format!(
            "SELECT bool_or(has_table_privilege('{role}', c.oid, p)) \
                    OR has_schema_privilege('{role}', 'planrun', 'USAGE') \
                    OR has_schema_privilege('{role}', 'planrun', 'CREATE') \
             FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', \
                                           'TRUNCATE', 'REFERENCES', 'TRIGGER']) p \
             WHERE c.relnamespace = 'planrun'::regnamespace AND c.relkind IN ('r', 'p')"
        ));
        assert_eq!(any, "f", "{role} has a privilege on the ledger");
    }

    // Another non-superuser role can neither read nor write the ledger.
    let mut bystander = postgres::Client::connect(&as_role("bystander"), postgres::NoTls).unwrap();
    for sql in [
        "SELECT * FROM planrun.runs",
        "SELECT * FROM planrun.stage_results",
        "INSERT INTO planrun.runs (plan_name, plan_checksum, planrun_version, client_host, command, target) \
         VALUES ('x', 'x', 'x', 'x', 'x', 'x')",
    ] {
        let error = bystander.batch_execute(sql).unwrap_err();
        assert_eq!(
            error.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
    // Nor apply the plan as itself: the ledger's schema is closed to it.
    let output = apply(dir.path(), &as_role("bystander"), &["--no-backup"]);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
}

// ---------------------------------------------------------------------------------
// 6. Plan text cannot inject SQL.

#[test]
fn plan_text_full_of_quotes_and_semicolons_is_recorded_verbatim_not_run() {
    let db = TestDb::new();
    db.execute("CREATE TABLE victim (note text)");
    let dir = scenario("injection");
    let output = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &db.url],
        &[],
    );
    assert_code(&output, exit_codes::SUCCESS);
    assert_eq!(
        db.scalar("SELECT string_agg(note, ',') FROM victim"),
        "applied"
    );
    let name = "x'; DROP TABLE victim; -- ../../escape";
    assert_eq!(
        db.column("SELECT DISTINCT plan_name FROM planrun.runs"),
        [Some(name.to_owned())]
    );
    assert_eq!(
        db.column("SELECT stage_id || ' ' || status || ' ' || coalesce(skip_reason, '') \
                   FROM planrun.stage_results WHERE plan_name = $$x'; DROP TABLE victim; -- ../../escape$$ ORDER BY id"),
        [
            Some("note_it applied ".to_owned()),
            Some("skip_it skipped '); DROP TABLE victim; --".to_owned())
        ]
    );
    assert_eq!(
        db.scalar(
            "SELECT captures->>'quoted' FROM planrun.stage_results WHERE stage_id = 'note_it'"
        ),
        "a'); DROP TABLE victim; --"
    );
    // The backup's file name keeps only safe characters and stays in the directory.
    let files = backups(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("x___DROP_TABLE_victim_")
            && files[0]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "{files:?}"
    );
    // A second apply finds the same plan in the ledger by its name: nothing to do.
    let again = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &db.url],
        &[],
    );
    assert_code(&again, exit_codes::SUCCESS);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        describe(&again)
    );

    // Timeouts are the one plan value written into SQL text; they are validated first.
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace(
            "lock_timeout = \"2s\"",
            "lock_timeout = \"2s'; DROP TABLE victim; --\"",
        ),
    )
    .unwrap();
    let refused = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &db.url],
        &[],
    );
    assert_code(&refused, exit_codes::INVALID_PLAN);
    assert_eq!(db.scalar("SELECT count(*) FROM victim"), "1");
}
