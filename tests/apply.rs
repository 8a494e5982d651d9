//! `planrun apply`, `plan`, `status`, `verify` against real throwaway PostgreSQL
//! clusters, through the binary a user runs.

use std::path::Path;
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::{
    describe, planrun, planrun_on, scenario, spawn_apply, stdout, TestDb, CUSTOMERS,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    planrun_on(PLANRUN, dir, db, args)
}

/// Applies the shop plan with `add_total`'s SQL replaced by `sql`, which must fail the
/// stage (exit 13); returns the JSON report.
fn apply_failing_total(dir: &Path, db: &TestDb, sql: &str) -> serde_json::Value {
    std::fs::write(dir.join("03_total.sql"), sql).unwrap();
    let output = run(
        dir,
        db,
        &["apply", "plan.toml", "--no-backup", "--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn ledger_rows(db: &TestDb) -> Vec<Option<String>> {
    db.column("SELECT stage_id || ':' || status FROM planrun.stage_results ORDER BY id")
}

#[test]
fn apply_runs_every_stage_then_a_second_apply_changes_nothing() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let first = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE total IS NOT NULL"),
        "25"
    );
    assert_eq!(
        ledger_rows(&db),
        [
            Some("create_orders:applied".into()),
            Some("load_orders:applied".into()),
            Some("add_total:applied".into())
        ]
    );
    let before = db.dump();
    let second = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert!(
        stdout(&second).contains("nothing to do"),
        "{}",
        describe(&second)
    );
    assert_eq!(
        ledger_rows(&db).len(),
        3,
        "a no-op run records no stage result"
    );
    assert_eq!(strip_ledger(&before), strip_ledger(&db.dump()));
}

/// The dump without planrun's run log, which a no-op run still appends to.
fn strip_ledger(dump: &str) -> String {
    dump.lines()
        .filter(|line| !line.contains("planrun.runs") && !line.contains("runs_id_seq"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_failing_stage_rolls_back_while_earlier_stages_stay_committed() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let report = apply_failing_total(
        dir.path(),
        &db,
        "ALTER TABLE orders ADD COLUMN total numeric;\n-- the next line is wrong\nUPDATE orders SET total = no_such_column * 10;\n",
    );
    let failed = &report["stages"][2];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["file"], "03_total.sql");
    assert_eq!(failed["error"]["line"], 3);
    assert_eq!(failed["error"]["column"], 27);
    assert_eq!(failed["error"]["sqlstate"], "42703");
    assert!(report["summary"]
        .to_string()
        .contains("committed: create_orders, load_orders"));
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders"),
        "25",
        "earlier stages stay committed"
    );
    assert!(db.column("SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'").is_empty(),
        "the failed stage's DDL was rolled back");
    assert_eq!(
        ledger_rows(&db).last().unwrap().as_deref(),
        Some("add_total:failed")
    );
}

/// An error PostgreSQL gives no position for (here a key violation) still names the
/// file, the line its statement starts on, and the statement.
#[test]
fn an_error_without_a_position_names_its_statement_and_line() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let report = apply_failing_total(
        dir.path(),
        &db,
        "ALTER TABLE orders ADD COLUMN total numeric;\n\n-- a duplicate key\nINSERT INTO orders (id, customer_id)\n  VALUES (1, 1);\n",
    );
    let error = &report["stages"][2]["error"];
    assert_eq!(error["sqlstate"], "23505", "{error}");
    assert_eq!(error["file"], "03_total.sql");
    assert_eq!(error["line"], 4, "{error}");
    assert!(error["column"].is_null(), "{error}");
    assert_eq!(error["statement"], "INSERT INTO orders (id, customer_id)");
    assert!(db
        .column("SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'")
        .is_empty());
}

/// A constraint the steps deferred is checked before verification: the violation
/// fails the stage with its SQLSTATE, rolls it back, and the report still says what
/// committed (it used to surface at COMMIT as a bare error).
#[test]
fn a_violated_deferred_constraint_fails_the_stage_before_commit() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let report = apply_failing_total(
        dir.path(),
        &db,
        "ALTER TABLE orders ADD COLUMN total numeric;\n\
         CREATE TABLE notes (id int PRIMARY KEY, order_id bigint REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED);\n\
         INSERT INTO notes VALUES (1, 999999);\n",
    );
    let failed = &report["stages"][2];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["sqlstate"], "23503", "{failed}");
    assert_eq!(failed["error"]["step"], "deferred constraints", "{failed}");
    assert!(failed["verifications"].as_array().unwrap().is_empty());
    assert!(report["summary"]
        .to_string()
        .contains("committed: create_orders, load_orders"));
    assert!(db.column("SELECT to_regclass('public.notes')")[0].is_none());
    assert_eq!(
        db.scalar("SELECT status FROM planrun.stage_results WHERE stage_id = 'add_total'"),
        "failed"
    );
}

#[test]
fn a_failed_verification_rolls_its_stage_back() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers WHERE id > 1;\n",
    )
    .unwrap();
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(&output)
    );
    assert!(
        stdout(&output).contains("FAIL verify one order per customer: expected = 25, got 24"),
        "{}",
        describe(&output)
    );
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), "0");
}

#[test]
fn a_failed_precondition_blocks_before_anything_changes() {
    let db = TestDb::new();
    let dir = scenario("shop");
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::PRECONDITION_FAILED),
        "{}",
        describe(&output)
    );
    assert!(
        stdout(&output).contains("FAIL precondition customers exists"),
        "{}",
        describe(&output)
    );
    assert!(db
        .column("SELECT to_regclass('public.orders')")
        .first()
        .cloned()
        .flatten()
        .is_none());
}

#[test]
fn a_skip_rule_records_the_stage_as_skipped_with_its_reason() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id));");
    let dir = scenario("shop");
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        ledger_rows(&db)[0].as_deref(),
        Some("create_orders:skipped")
    );
    assert_eq!(
        db.scalar("SELECT skip_reason FROM planrun.stage_results WHERE stage_id = 'create_orders'"),
        "orders already exists"
    );
}

#[test]
fn drift_is_refused_until_accepted_and_line_endings_do_not_count() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    assert_eq!(
        run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"])
            .status
            .code(),
        Some(0)
    );

    let file = dir.path().join("02_load.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace('\n', "\r\n")).unwrap();
    let crlf = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(
        crlf.status.code(),
        Some(0),
        "CRLF is not drift: {}",
        describe(&crlf)
    );
    assert!(
        !stdout(&crlf).contains("drift"),
        "CRLF shows no drift: {}",
        describe(&crlf)
    );

    // Written with CRLF: the diff must show the edit, not the line endings.
    std::fs::write(
        &file,
        "INSERT INTO orders (customer_id) SELECT id FROM customers ORDER BY id;\r\n",
    )
    .unwrap();
    let drift = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(
        drift.status.code(),
        Some(exit_codes::DRIFT),
        "{}",
        describe(&drift)
    );
    let text = stdout(&drift);
    assert!(
        text.contains("changed step 1 (02_load.sql)"),
        "{}",
        describe(&drift)
    );
    assert!(
        text.contains("\n        -INSERT INTO orders (customer_id) SELECT id FROM customers;\n")
            && text.contains(
                "\n        +INSERT INTO orders (customer_id) SELECT id FROM customers ORDER BY id;\n"
            )
            && !text.contains('\r'),
        "the drift shows the removed and the added line: {}",
        describe(&drift)
    );

    let json = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--format", "json"],
    );
    assert_eq!(json.status.code(), Some(exit_codes::DRIFT));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let load = &report["stages"][1];
    assert_eq!(load["status"], "drifted");
    assert!(load["drift"][0]
        .as_str()
        .unwrap()
        .starts_with("changed step 1 (02_load.sql): sql_file 02_load.sql tokens:"));
    assert_eq!(
        load["drift_diff"],
        serde_json::json!([{
            "entry": "step 1 (02_load.sql)",
            "lines": [
                "@@ -1 +1 @@",
                "-INSERT INTO orders (customer_id) SELECT id FROM customers;",
                "+INSERT INTO orders (customer_id) SELECT id FROM customers ORDER BY id;",
            ],
            "more_lines": 0,
        }])
    );

    // A row written before planrun kept the SQL has only hashes: the checksum line stays.
    db.execute("UPDATE planrun.stage_results SET definition = definition - 'sql_text'");
    let old_row = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(old_row.status.code(), Some(exit_codes::DRIFT));
    assert!(
        stdout(&old_row).contains("changed step 1 (02_load.sql)")
            && !stdout(&old_row).contains("-INSERT"),
        "{}",
        describe(&old_row)
    );

    let accepted = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--allow-drift"],
    );
    assert_eq!(accepted.status.code(), Some(0), "{}", describe(&accepted));
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.stage_results WHERE drift_accepted"),
        "1"
    );
    assert_eq!(
        db.scalar(
            "SELECT definition->'sql_text'->>'step 1 (02_load.sql)' FROM planrun.stage_results \
             WHERE drift_accepted"
        ),
        "INSERT INTO orders (customer_id) SELECT id FROM customers ORDER BY id;\n",
        "the ledger keeps the accepted SQL, line endings normalised"
    );
    assert_eq!(
        run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn dry_run_and_plan_leave_no_trace() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let before = db.dump();
    let dry = run(dir.path(), &db, &["apply", "plan.toml", "--dry-run", "-v"]);
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    assert!(stdout(&dry).contains("dry run"), "{}", describe(&dry));
    assert!(
        stdout(&dry).contains("ok   verify one order per customer"),
        "{}",
        describe(&dry)
    );
    let preview = run(dir.path(), &db, &["plan", "plan.toml"]);
    assert_eq!(preview.status.code(), Some(0), "{}", describe(&preview));
    let text = stdout(&preview);
    assert!(text.contains("would run"), "{text}");
    assert!(text.contains("a backup would be taken"), "{text}");
    assert_eq!(
        before,
        db.dump(),
        "dry run and plan wrote nothing, not even the ledger"
    );
    assert!(
        !dir.path().join("backups").exists(),
        "a dry run takes no backup"
    );
}

#[test]
fn apply_takes_a_backup_that_pg_restore_can_read() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let output = run(dir.path(), &db, &["apply", "plan.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    let name = backups[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("shop-") && name.ends_with(".dump"),
        "{name}"
    );
    let list = std::process::Command::new(db.cluster.bin_dir().join("pg_restore"))
        .arg("--list")
        .arg(&backups[0])
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("TABLE public customers"),
        "the backup holds the data before the run"
    );
    assert_eq!(
        db.scalar("SELECT backup_file FROM planrun.runs ORDER BY id LIMIT 1"),
        backups[0].canonicalize().unwrap().display().to_string(),
        "the ledger records the absolute path"
    );
}

#[test]
fn the_backup_stays_recorded_when_the_first_stage_fails() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("01_orders.sql"),
        "CREATE TABLE orders (id bigserial PRIMARY KEY, x no_such_type);\n",
    )
    .unwrap();
    let output = run(dir.path(), &db, &["apply", "plan.toml"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let recorded = db.scalar("SELECT backup_file FROM planrun.runs ORDER BY id LIMIT 1");
    let expected = dir.path().canonicalize().unwrap().join("backups/shop-");
    assert!(
        recorded.starts_with(expected.to_str().unwrap()),
        "{recorded}"
    );
    assert!(std::path::Path::new(&recorded).is_file());
    assert_eq!(
        db.scalar("SELECT outcome FROM planrun.runs ORDER BY id LIMIT 1"),
        "step_failed"
    );
}

#[test]
fn status_and_verify_report_the_ledger() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    assert_eq!(
        run(
            dir.path(),
            &db,
            &[
                "apply",
                "plan.toml",
                "--no-backup",
                "--until",
                "load_orders"
            ]
        )
        .status
        .code(),
        Some(0)
    );
    let status = run(
        dir.path(),
        &db,
        &["status", "plan.toml", "--format", "json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let states: Vec<&str> = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied", "applied", "pending"]);
    let verify = run(dir.path(), &db, &["verify", "plan.toml"]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
    db.execute("DELETE FROM orders WHERE id = 1");
    let broken = run(dir.path(), &db, &["verify", "plan.toml"]);
    assert_eq!(
        broken.status.code(),
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(&broken)
    );
    let graph = run(dir.path(), &db, &["graph", "plan.toml", "--status"]);
    assert!(
        stdout(&graph).contains("3  add_total      2      SQL   load_orders    pending"),
        "{}",
        describe(&graph)
    );
}

#[test]
fn a_password_in_the_url_appears_nowhere() {
    let secret = "Sup3r-s3cret-pw";
    let db = TestDb::with_password(secret);
    assert!(db.url.contains(secret));
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("03_total.sql"),
        "SELECT no_such_column FROM orders;\n",
    )
    .unwrap();
    let mut seen = String::new();
    for args in [
        vec!["apply", "plan.toml"],
        vec!["apply", "plan.toml", "--format", "json"],
        vec!["plan", "plan.toml", "--format", "json"],
        vec!["status", "plan.toml"],
    ] {
        let output = run(dir.path(), &db, &args);
        seen.push_str(&describe(&output));
    }
    let wrong = db.url.replace(secret, "wrong-password");
    let refused = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &wrong],
        &[],
    );
    assert_eq!(
        refused.status.code(),
        Some(exit_codes::CANNOT_CONNECT),
        "{}",
        describe(&refused)
    );
    seen.push_str(&describe(&refused));
    assert!(!seen.contains(secret), "the password leaked:\n{seen}");
    assert!(
        !seen.contains("wrong-password"),
        "the password leaked:\n{seen}"
    );
    assert!(
        seen.contains(":***@"),
        "the target is shown redacted:\n{seen}"
    );
    let ledger = db.column("SELECT row_to_json(r)::text FROM planrun.runs r UNION ALL SELECT row_to_json(s)::text FROM planrun.stage_results s");
    assert!(ledger.iter().flatten().all(|row| !row.contains(secret)));
    for entry in std::fs::read_dir(dir.path().join("backups")).unwrap() {
        assert!(!entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(secret));
    }
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let dir = scenario("shop");
    let output = planrun(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--database-url",
            "postgresql://nobody:pw@127.0.0.1:1/none",
        ],
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::CANNOT_CONNECT),
        "{}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to postgresql://nobody:***@127.0.0.1:1/none"),
        "{stderr}"
    );

    // With --format json, stdout says so too, for the script reading it.
    let output = planrun(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--format",
            "json",
            "--database-url",
            "postgresql://nobody:pw@127.0.0.1:1/none",
        ],
        &[],
    );
    let failure: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(failure["format"], "planrun.error");
    assert_eq!(failure["outcome"], "cannot_connect");
    assert_eq!(failure["exit_code"], exit_codes::CANNOT_CONNECT);
    assert!(failure["error"]
        .as_str()
        .unwrap()
        .contains("postgresql://nobody:***@127.0.0.1:1/none"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(":pw@"));
}

#[test]
fn a_second_apply_while_one_runs_exits_locked_naming_the_holder() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("02_load.sql"),
        "SELECT pg_advisory_xact_lock(4242);\nINSERT INTO orders (customer_id) SELECT id FROM customers;\n",
    )
    .unwrap();
    // The test holds lock 4242, so the first apply waits inside its stage, holding the
    // plan's lock, until the second apply has been turned away.
    let mut gate = db.client();
    gate.batch_execute("SELECT pg_advisory_lock(4242)").unwrap();
    let first = spawn_apply(PLANRUN, dir.path(), "plan.toml", &db, &[]);
    // Wait until the first apply holds the plan lock and waits at the gate.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = 4242 AND NOT granted",
    ) == "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first apply never took its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--lock-wait", "0.5"],
    );
    assert_eq!(
        second.status.code(),
        Some(exit_codes::LOCKED),
        "{}",
        describe(&second)
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("held by pid"), "{stderr}");
    assert!(
        stderr.contains("planrun apply shop"),
        "the holder's application_name: {stderr}"
    );
    gate.batch_execute("SELECT pg_advisory_unlock(4242)")
        .unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.stage_results WHERE stage_id = 'load_orders'"),
        "1"
    );
}

/// Verification `check` of `stage` in a JSON report.
fn check_in<'a>(report: &'a serde_json::Value, stage: &str, check: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|reported| reported["id"] == stage)
        .and_then(|reported| {
            reported["verifications"]
                .as_array()
                .unwrap()
                .iter()
                .find(|reported| reported["name"] == check)
        })
        .unwrap_or_else(|| panic!("{stage}: {check} in {report:#}"))
}

/// A later stage archives orders on purpose: the count the loading stage checked no
/// longer holds, and `verify` says that check is superseded by the archiving stage
/// instead of failing, while the checks of what nothing later changed still run.
#[test]
fn verify_names_a_check_a_later_stage_superseded_and_runs_the_rest() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("archive");
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(db.scalar("SELECT count(*) FROM orders_archive"), "9");

    let verify = run(dir.path(), &db, &["verify", "plan.toml", "-v"]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
    assert!(
        stdout(&verify).contains("one order per customer: superseded by archive_orders"),
        "{}",
        describe(&verify)
    );

    let verify = run(
        dir.path(),
        &db,
        &["verify", "plan.toml", "--format", "json"],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let count = check_in(&report, "load_orders", "one order per customer");
    assert_eq!(count["status"], "superseded", "{count:#}");
    assert_eq!(
        count["superseded_by"],
        serde_json::json!([{"stage": "archive_orders", "relations": ["orders"]}])
    );
    let customers = check_in(&report, "load_orders", "every customer is still there");
    assert_eq!(customers["status"], "passed", "{customers:#}");

    // An archived customer's order has no foreign key left to protect the customer.
    db.execute("DELETE FROM customers WHERE id = 1");
    let verify = run(
        dir.path(),
        &db,
        &["verify", "plan.toml", "--format", "json"],
    );
    assert_eq!(
        verify.status.code(),
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(&verify)
    );
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let customers = check_in(&report, "load_orders", "every customer is still there");
    assert_eq!(customers["status"], "failed", "{customers:#}");
    assert_eq!(customers["actual"], "24", "{customers:#}");
}
