//! A rehearsal is no weaker than production: the copy has the target's roles,
//! owners and privileges, the plan runs there as the applying role with that role's
//! privileges, so code restored from the target cannot reach this machine's programs
//! unless the applying role could reach production's; and when the applying role is a
//! superuser, which PostgreSQL cannot confine, the report says so.

use std::path::{Path, PathBuf};
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::{describe, planrun, scenario, TestDb, CUSTOMERS};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// A file no one has made yet, in a directory the server's OS account can write.
fn unique_marker() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let marker = std::env::temp_dir().join(format!(
        "planrun-rehearsal-trojan-{}-{nanos}",
        std::process::id()
    ));
    assert!(!marker.exists());
    marker
}

/// Production: `migrator` (LOGIN, no superuser) owns the database and applies plans;
/// `app` (unprivileged, member of `readers`, with its own work_mem) owns `accounts`,
/// whose update trigger runs `touch marker` through `COPY ... TO PROGRAM`. As on a
/// hardened server, only the application's database accepts connections from them.
/// Returns the target and migrator's URL.
fn production(marker: &Path) -> (TestDb, String) {
    let db = TestDb::new();
    let touch = format!("touch {}", marker.display());
    db.execute(&format!(
        "CREATE ROLE migrator LOGIN;
         REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
         REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
         CREATE ROLE readers NOLOGIN;
         CREATE ROLE app LOGIN IN ROLE readers;
         ALTER ROLE app SET work_mem = '7MB';
         ALTER DATABASE planrun_test OWNER TO migrator;
         GRANT CREATE ON SCHEMA public TO app;
         SET ROLE app;
         CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
         INSERT INTO accounts VALUES (1, 10), (2, 20);
         CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             EXECUTE 'COPY (SELECT 1) TO PROGRAM ' || quote_literal('{touch}');
             RETURN NEW;
         END $$;
         CREATE TRIGGER audit BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION audit();
         GRANT SELECT, UPDATE ON accounts TO migrator;
         RESET ROLE;
         SET ROLE migrator;
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO readers;
         RESET ROLE;"
    ));
    let url = db.url.replacen("postgres@", "migrator@", 1);
    assert_ne!(url, db.url);
    (db, url)
}

/// A plan directory holding `plan.toml` with `text`.
fn plan_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.toml"), text).unwrap();
    dir
}

/// `planrun rehearse plan.toml --format FORMAT` against `url`: the output and the
/// report.
fn rehearse(dir: &Path, url: &str, reports: &Path, format: &str) -> (Output, serde_json::Value) {
    rehearse_with(dir, url, reports, &["--format", format])
}

fn rehearse_with(
    dir: &Path,
    url: &str,
    reports: &Path,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let reports_arg = reports.to_string_lossy().into_owned();
    let mut args = vec!["rehearse", "plan.toml", "--report-dir", &reports_arg];
    args.extend(extra);
    args.extend(["--database-url", url]);
    let output = planrun(PLANRUN, dir, &args, &[]);
    let file = std::fs::read_dir(reports)
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no report written\n{}", describe(&output)))
        .path();
    let report = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    (output, report)
}

/// Runs a kept copy's stop command when dropped.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(&self.0)
                .output();
        }
    }
}

#[test]
fn a_trigger_of_an_unprivileged_role_cannot_run_programs_in_a_rehearsal() {
    let marker = unique_marker();
    let (db, migrator) = production(&marker);
    let dir = plan_dir(
        "[plan]\nname = \"raise\"\n\n[[stage]]\nid = \"raise_balances\"\n\
         [[stage.step]]\nsql = \"UPDATE accounts SET balance = balance + 1\"\n",
    );

    let dry = planrun(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--dry-run",
            "--no-backup",
            "--format",
            "json",
            "--database-url",
            &migrator,
        ],
        &[],
    );
    let dry_run: serde_json::Value = serde_json::from_slice(&dry.stdout)
        .unwrap_or_else(|_| panic!("apply --dry-run prints JSON\n{}", describe(&dry)));
    assert_eq!(
        dry.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&dry)
    );
    assert_eq!(
        dry_run["stages"][0]["error"]["sqlstate"], "42501",
        "{dry_run:#}"
    );
    assert!(!marker.exists(), "production refused the trigger's program");

    let reports = tempfile::tempdir().unwrap();
    let (output, report) = rehearse(dir.path(), &migrator, reports.path(), "json");
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(
        !ran,
        "the rehearsal ran the trigger's program on this machine\n{}",
        describe(&output)
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "the rehearsal fails as apply --dry-run does\n{}",
        describe(&output)
    );
    let error = &report["run"]["stages"][0]["error"];
    assert_eq!(
        error["sqlstate"], dry_run["stages"][0]["error"]["sqlstate"],
        "{error:#}"
    );
    assert_eq!(
        db.scalar("SELECT sum(balance) FROM accounts"),
        "30",
        "the target is untouched"
    );
}

/// Production lets the trigger's program run through its owner: `app` as a member of
/// `pg_execute_server_program`, or a superuser `ops`. Such code would run on this
/// machine, so in the copy only the applying role keeps what reaches the server: the
/// rehearsal fails where production would not, never the other way round.
#[test]
fn code_of_roles_other_than_the_applying_one_cannot_reach_this_machine_in_a_rehearsal() {
    let owners = [
        "GRANT pg_execute_server_program TO app;
         ALTER FUNCTION audit() SECURITY DEFINER;",
        "CREATE ROLE ops SUPERUSER NOLOGIN;
         ALTER FUNCTION audit() OWNER TO ops;
         ALTER FUNCTION audit() SECURITY DEFINER;",
    ];
    for owner in owners {
        let marker = unique_marker();
        let (db, migrator) = production(&marker);
        db.execute(owner);
        let dir = plan_dir(
            "[plan]\nname = \"raise\"\n\n[[stage]]\nid = \"raise_balances\"\n\
             [[stage.step]]\nsql = \"UPDATE accounts SET balance = balance + 1\"\n",
        );
        let reports = tempfile::tempdir().unwrap();
        let (output, report) = rehearse(dir.path(), &migrator, reports.path(), "json");
        let ran = marker.exists();
        let _ = std::fs::remove_file(&marker);
        assert!(
            !ran,
            "with {owner}: the rehearsal ran the trigger's program on this machine\n{}",
            describe(&output)
        );
        assert_eq!(
            output.status.code(),
            Some(exit_codes::STEP_FAILED),
            "{}",
            describe(&output)
        );
        assert_eq!(
            report["run"]["stages"][0]["error"]["sqlstate"], "42501",
            "{report:#}"
        );
        assert_eq!(
            report["copy"]["roles"]["server_access"],
            serde_json::json!([])
        );
        assert_eq!(report["warnings"], serde_json::json!([]), "{report:#}");
    }
}

#[test]
fn the_copy_has_the_targets_roles_owners_and_privileges() {
    let marker = unique_marker();
    let (db, migrator) = production(&marker);
    db.execute(
        "ALTER DATABASE planrun_test SET planrun_test.scope = 'database';
         ALTER ROLE migrator IN DATABASE planrun_test SET planrun_test.role_scope = 'migrator here';",
    );
    let verify = [
        ("applied as migrator", "SELECT current_user::text", "\"= 'migrator'\""),
        (
            "migrator is no superuser",
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            "false",
        ),
        (
            "app owns accounts",
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'accounts'",
            "\"= 'app'\"",
        ),
        (
            "migrator may update accounts",
            "SELECT has_table_privilege('migrator', 'public.accounts', 'UPDATE')",
            "true",
        ),
        (
            "migrator may not delete from accounts",
            "SELECT has_table_privilege('migrator', 'public.accounts', 'DELETE')",
            "false",
        ),
        (
            "migrator owns the database",
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
            "\"= 'migrator'\"",
        ),
        (
            "migrator owns what the plan creates",
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'notes'",
            "\"= 'migrator'\"",
        ),
        (
            "default privileges let readers read it",
            "SELECT has_table_privilege('readers', 'public.notes', 'SELECT')",
            "true",
        ),
        (
            "app is a member of readers",
            "SELECT pg_has_role('app', 'readers', 'MEMBER')",
            "true",
        ),
        (
            "app keeps its settings",
            "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'app'",
            "\"= 'work_mem=7MB'\"",
        ),
        (
            "the database's settings",
            "SELECT current_setting('planrun_test.scope', true)",
            "\"= 'database'\"",
        ),
        (
            "migrator's settings in this database",
            "SELECT current_setting('planrun_test.role_scope', true)",
            "\"= 'migrator here'\"",
        ),
        (
            "app cannot log in to the copy",
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'",
            "false",
        ),
    ];
    let mut plan = String::from(
        "[plan]\nname = \"notes\"\n\n[[stage]]\nid = \"notes\"\n\
         [[stage.step]]\nsql = \"CREATE TABLE notes (id int)\"\n",
    );
    for (name, sql, expect) in verify {
        plan.push_str(&format!(
            "[[stage.verify]]\nname = \"{name}\"\nsql = \"{sql}\"\nexpect = {expect}\n"
        ));
    }
    let dir = plan_dir(&plan);
    let reports = tempfile::tempdir().unwrap();
    let (output, report) = rehearse_with(
        dir.path(),
        &migrator,
        reports.path(),
        &["--format", "json", "--keep"],
    );
    let stop = report["copy"]["kept"]["stop_command"]
        .as_str()
        .unwrap_or_default();
    let _stop = StopOnDrop(stop.to_owned());
    let kept = report["copy"]["kept"]["url"].as_str().unwrap_or_default();
    assert!(kept.starts_with("postgresql://migrator@%2F"), "{kept}");
    let mut session = postgres::Client::connect(kept, postgres::NoTls).unwrap();
    let who: String = session
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        who, "migrator",
        "the kept copy's URL is the applying role's"
    );
    let failed: Vec<&serde_json::Value> = report["run"]["stages"][0]["verifications"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|check| check["passed"] != true)
                .collect()
        })
        .unwrap_or_default();
    assert!(failed.is_empty(), "{failed:#?}\n{}", describe(&output));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["copy"]["roles"]["applying_role"], "migrator");
    assert_eq!(report["copy"]["roles"]["superuser"], false);
    assert_eq!(report["warnings"], serde_json::json!([]), "{report:#}");
    assert!(!marker.exists());
}

#[test]
fn a_rehearsal_applied_as_a_superuser_says_so_in_the_report_and_output() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let (output, report) = rehearse(dir.path(), &db.url, reports.path(), "json");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["copy"]["roles"]["applying_role"], "postgres");
    assert_eq!(report["copy"]["roles"]["superuser"], true);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("applied as a superuser, as on the target")
            && warnings.contains("can run programs as OS user"),
        "{report:#}"
    );

    let reports = tempfile::tempdir().unwrap();
    let (output, _) = rehearse(dir.path(), &db.url, reports.path(), "text");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("WARNING: applied as a superuser, as on the target"),
        "{}",
        describe(&output)
    );
}

/// A non-superuser that may run programs on the target may run them in the copy too,
/// as the applying role keeps its memberships: flagged like a superuser.
#[test]
fn a_rehearsal_applied_by_a_member_of_pg_execute_server_program_says_so() {
    let marker = unique_marker();
    let (db, migrator) = production(&marker);
    db.execute("GRANT pg_execute_server_program TO migrator");
    let dir = plan_dir(
        "[plan]\nname = \"notes\"\n\n[[stage]]\nid = \"notes\"\n\
         [[stage.step]]\nsql = \"CREATE TABLE notes (id int)\"\n",
    );
    let reports = tempfile::tempdir().unwrap();
    let (output, report) = rehearse(dir.path(), &migrator, reports.path(), "json");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["copy"]["roles"]["superuser"], false);
    assert_eq!(
        report["copy"]["roles"]["server_access"],
        serde_json::json!(["pg_execute_server_program"])
    );
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("applied as migrator, a member of pg_execute_server_program"),
        "{report:#}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("warning: applied as migrator"),
        "{}",
        describe(&output)
    );
}
