//! `planrun rehearse` and `apply --require-rehearsal` through the binary: the
//! rehearsal copies the target into a throwaway cluster and leaves the target as it
//! was, reports a failing stage as apply does, rehearses the memoir plan on generated
//! data, and its report gates a production apply.

use std::path::{Path, PathBuf};
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_tests::{describe, planrun_on, repo_root, scenario, TestDb, CUSTOMERS};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    planrun_on(PLANRUN, dir, db, args)
}

/// Rehearses `plan` (from `dir`) into `reports`, returning the output and the one
/// report file written.
fn rehearse(
    dir: &Path,
    plan: &str,
    db: &TestDb,
    reports: &Path,
    extra: &[&str],
) -> (Output, PathBuf) {
    let reports_arg = reports.to_string_lossy().into_owned();
    let mut args = vec!["rehearse", plan, "--report-dir", &reports_arg];
    args.extend(extra);
    let output = run(dir, db, &args);
    let files: Vec<PathBuf> = std::fs::read_dir(reports)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(
        files.len(),
        1,
        "one report file: {files:?}\n{}",
        describe(&output)
    );
    (output, files.into_iter().next().expect("checked above"))
}

fn read_json(file: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(file).expect("the report is readable"))
        .expect("the report is JSON")
}

fn has_planrun_schema(db: &TestDb) -> bool {
    db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'planrun'") != "0"
}

/// The copy's server is gone once the rehearsal has ended.
fn assert_copy_removed(report: &serde_json::Value) {
    let url = report["copy"]["url"].as_str().expect("the copy's URL");
    assert!(
        postgres::Client::connect(url, postgres::NoTls).is_err(),
        "the throwaway copy at {url} still accepts connections"
    );
}

#[test]
fn a_rehearsal_leaves_the_target_exactly_as_it_was() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let before = db.dump();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        before,
        db.dump(),
        "the target's schema and data are unchanged"
    );
    assert!(!has_planrun_schema(&db), "no ledger on the target");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("lock waits"), "{}", describe(&output));
    assert!(
        stdout.contains("--require-rehearsal"),
        "{}",
        describe(&output)
    );

    let report = read_json(&file);
    assert_eq!(report["format"], "planrun.rehearsal");
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["target_identity"]["database"], "planrun_test");
    assert_eq!(
        report["target_identity"]["tables"],
        serde_json::json!([{"schema": "public", "table": "customers", "rows": 25}])
    );
    assert!(!report["target"].to_string().contains("password"));
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3);
    // The copy holds the target's rows, so the estimate scales by 1.
    assert_eq!(report["estimate"]["scale"], 1.0);
    for stage in stages {
        assert_eq!(stage["status"], "applied", "{stage}");
        assert_eq!(stage["lock_waits"], 0, "{stage}");
        assert_eq!(
            stage["estimated_target_ms"], stage["duration_ms"],
            "{stage}"
        );
    }
    assert_eq!(stages[1]["rows_affected"], 25);
    assert_eq!(
        report["run"]["stages"][1]["verifications"][0]["passed"],
        true
    );
    assert_copy_removed(&report);
}

#[test]
fn a_failing_stage_in_rehearsal_is_reported_as_apply_reports_it() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("03_total.sql"),
        "ALTER TABLE orders ADD COLUMN total numeric;\n-- the next line is wrong\nUPDATE orders SET total = no_such_column * 10;\n",
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let before = db.dump();
    let (output, file) = rehearse(
        dir.path(),
        "plan.toml",
        &db,
        reports.path(),
        &["--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let written = read_json(&file);
    assert_eq!(printed, written, "--format json prints the report file");
    assert_eq!(written["outcome"], "step_failed");
    assert_eq!(written["exit_code"], exit_codes::STEP_FAILED);
    assert_eq!(written["stages"][2]["status"], "failed");
    let error = &written["run"]["stages"][2]["error"];
    assert_eq!(error["file"], "03_total.sql");
    assert_eq!(error["line"], 3);
    assert_eq!(error["column"], 27);
    assert_eq!(error["sqlstate"], "42703");
    assert_eq!(
        before,
        db.dump(),
        "a failed rehearsal changes nothing either"
    );
    assert!(!has_planrun_schema(&db));
    assert_copy_removed(&written);
}

#[test]
fn the_memoir_plan_rehearses_cleanly_on_generated_data() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    let loaded = load_legacy(&mut client, 11, 300, ImagesType::Jsonb).unwrap();
    drop(client);
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        reports.path(),
        &["--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_json(&file);
    assert_eq!(report["outcome"], "applied");
    let checksum = report["plan_checksum"].as_str().unwrap();
    assert_eq!(checksum.len(), 64, "{checksum}");
    let tables = report["target_identity"]["tables"].as_array().unwrap();
    let chapters = tables
        .iter()
        .find(|t| t["table"] == "chapters")
        .expect("chapters is counted");
    assert_eq!(chapters["rows"], loaded.chapters);
    assert_eq!(report["estimate"]["scale"], 1.0);
    let applied: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "applied")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        applied,
        [
            "sections_schema",
            "split_chapters",
            "images_schema",
            "collect_images"
        ]
    );
    for stage in report["stages"].as_array().unwrap() {
        assert_eq!(stage["verifications_failed"], 0, "{stage}");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name = 'content'"),
        "1",
        "the target keeps its legacy columns"
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('public.chapter_sections') IS NULL"),
        "t"
    );
    assert_copy_removed(&report);
}

#[test]
fn require_rehearsal_accepts_a_fresh_passing_matching_report_and_refuses_the_rest() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_json(&file);
    let edited = tempfile::tempdir().unwrap();
    let variant = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut copy = report.clone();
        edit(&mut copy);
        let path = edited.path().join(name);
        std::fs::write(&path, copy.to_string()).unwrap();
        path
    };
    let apply_with = |file: &Path| {
        run(
            dir.path(),
            &db,
            &[
                "apply",
                "plan.toml",
                "--no-backup",
                "--require-rehearsal",
                &file.to_string_lossy(),
            ],
        )
    };
    let refused = |output: &Output, why: &str| {
        assert_eq!(
            output.status.code(),
            Some(exit_codes::REHEARSAL_REQUIRED),
            "{}",
            describe(output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(why),
            "expected `{why}`: {}",
            describe(output)
        );
        assert!(stderr.contains("planrun rehearse"), "{}", describe(output));
        assert!(!has_planrun_schema(&db), "a refused apply touches nothing");
    };

    let stale = variant("stale.json", &|r| {
        r["finished_at"] = "2020-01-01T00:00:00+00:00".into();
    });
    refused(&apply_with(&stale), "stale:");
    let failed = variant("failed.json", &|r| {
        r["exit_code"] = exit_codes::STEP_FAILED.into();
        r["outcome"] = "step_failed".into();
    });
    refused(&apply_with(&failed), "failed:");
    let elsewhere = variant("elsewhere.json", &|r| {
        r["target_identity"]["database"] = "staging".into();
    });
    refused(&apply_with(&elsewhere), "`staging`");

    // The plan changes after its rehearsal: the report no longer vouches for it.
    let sql = dir.path().join("03_total.sql");
    let original = std::fs::read_to_string(&sql).unwrap();
    std::fs::write(
        &sql,
        format!("{original}\nSELECT 'changed after the rehearsal';\n"),
    )
    .unwrap();
    refused(&apply_with(&file), "mismatched:");
    std::fs::write(&sql, original).unwrap();

    let accepted = apply_with(&file);
    assert_eq!(accepted.status.code(), Some(0), "{}", describe(&accepted));
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE total IS NOT NULL"),
        "25"
    );
}

#[test]
fn require_rehearsal_refuses_stages_the_rehearsal_left_out() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(
        dir.path(),
        "plan.toml",
        &db,
        reports.path(),
        &["--until", "load_orders"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let file = file.to_string_lossy().into_owned();

    let whole = run(
        dir.path(),
        &db,
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--require-rehearsal",
            &file,
        ],
    );
    assert_eq!(
        whole.status.code(),
        Some(exit_codes::REHEARSAL_REQUIRED),
        "{}",
        describe(&whole)
    );
    let stderr = String::from_utf8_lossy(&whole.stderr);
    assert!(
        stderr.contains("unrehearsed: this apply runs add_total,"),
        "{}",
        describe(&whole)
    );
    assert!(!has_planrun_schema(&db), "a refused apply touches nothing");

    let rehearsed_part = run(
        dir.path(),
        &db,
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--until",
            "load_orders",
            "--require-rehearsal",
            &file,
        ],
    );
    assert_eq!(
        rehearsed_part.status.code(),
        Some(0),
        "{}",
        describe(&rehearsed_part)
    );
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), "25");
    assert!(
        db.column("SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'")
            .is_empty(),
        "add_total did not run"
    );
}

#[test]
fn max_rehearsal_age_in_the_plan_bounds_the_age() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace("[plan]\n", "[plan]\nmax_rehearsal_age = \"1s\"\n"),
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let output = run(
        dir.path(),
        &db,
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--require-rehearsal",
            &file.to_string_lossy(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REHEARSAL_REQUIRED),
        "{}",
        describe(&output)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_rehearsal_age 1 s"));
}

/// A stage that makes a second session wait for its lock (through `dblink`, so the
/// wait is real and bounded by that session's lock_timeout) shows the wait. The copy
/// listens on its Unix socket only, so `dblink` connects there.
#[test]
fn lock_waits_during_a_stage_are_counted_from_the_copy_log() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    if db.scalar("SELECT count(*) FROM pg_available_extensions WHERE name = 'dblink'") == "0" {
        eprintln!("skipped: the dblink extension is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "waits"

[[stage]]
id = "quiet"
[[stage.step]]
sql = "CREATE TABLE notes (id int)"

[[stage]]
id = "contend"
depends_on = ["quiet"]
[[stage.step]]
sql = """
CREATE EXTENSION dblink;
LOCK TABLE customers IN ACCESS EXCLUSIVE MODE;
DO $$
BEGIN
  PERFORM dblink_exec(format('host=%s port=%s dbname=%s user=postgres',
                             current_setting('unix_socket_directories'),
                             current_setting('port'), current_database()),
                      'SET lock_timeout = ''500ms''; LOCK TABLE customers');
EXCEPTION WHEN others THEN NULL;
END $$;
"""
"#,
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_json(&file);
    assert_eq!(report["stages"][0]["lock_waits"], 0, "{report:#}");
    assert_eq!(report["stages"][1]["lock_waits"], 1, "{report:#}");
    assert!(report["stages"][1]["lock_wait_samples"][0]
        .as_str()
        .unwrap()
        .contains("AccessExclusiveLock"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("AccessExclusiveLock"));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'dblink'"),
        "0"
    );
}

/// The target's password reaches pg_dump through the environment, never the report,
/// the terminal or the process list's arguments.
#[test]
fn a_rehearsal_of_a_password_protected_target_shows_no_password() {
    let secret = "Rehearsal-s3cret/with?odd chars";
    let db = TestDb::with_password(secret);
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = std::fs::read_to_string(&file).unwrap();
    for (what, text) in [
        (
            "stdout",
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ),
        (
            "stderr",
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        ("the report", report),
    ] {
        assert!(!text.contains(secret), "{what} shows the password:\n{text}");
        assert!(
            !text.contains("s3cret"),
            "{what} shows part of the password:\n{text}"
        );
    }
}

/// The rehearsal measures the locks a stage really holds on the copy: a rewriting
/// `ALTER COLUMN TYPE` holds ACCESS EXCLUSIVE (reads and writes blocked) and replaces
/// the table's storage; an index built CONCURRENTLY blocks no write.
#[test]
fn a_rehearsal_measures_the_locks_held_and_the_rewrites() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    db.execute("INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 20000) g");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "rewrites"
lock_timeout = "2s"

[[stage]]
id = "widen"
[[stage.step]]
sql = "ALTER TABLE customers ALTER COLUMN name TYPE varchar(200); SELECT pg_sleep(0.3)"

[[stage]]
id = "index"
depends_on = ["widen"]
transaction = false
[[stage.step]]
sql = "CREATE INDEX CONCURRENTLY customers_name ON customers (name)"
"#,
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_json(&file);
    let lock = |stage: usize| {
        report["stages"][stage]["locks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|lock| lock["table"] == "public.customers")
            .cloned()
    };
    let widen = lock(0).unwrap_or_else(|| panic!("no lock on customers in stage 0: {report:#}"));
    assert_eq!(widen["strongest"], "AccessExclusiveLock", "{widen:#}");
    assert_eq!(widen["rewritten"], true, "{widen:#}");
    assert!(
        widen["blocked_reads_ms"].as_u64().unwrap() >= 200,
        "{widen:#}"
    );
    assert!(
        widen["taken_by"]
            .as_str()
            .is_some_and(|statement| statement.starts_with("ALTER TABLE customers")),
        "the lock is attributed to the statement that took it: {widen:#}"
    );
    let statements = report["stages"][0]["statements"].as_array().unwrap();
    let alter = statements
        .iter()
        .find(|s| s["statement"].as_str().unwrap().starts_with("ALTER TABLE"))
        .unwrap_or_else(|| panic!("{statements:#?}"));
    assert!(
        alter["locks_taken"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("public.customers AccessExclusiveLock")),
        "{alter:#}"
    );
    let sleep = statements
        .iter()
        .find(|s| s["statement"].as_str().unwrap().contains("pg_sleep"))
        .unwrap_or_else(|| panic!("{statements:#?}"));
    assert!(sleep["running_ms"].as_u64().unwrap() >= 200, "{sleep:#}");
    assert_eq!(sleep["locks_taken"], serde_json::json!([]), "{sleep:#}");
    // A concurrent build of 20,000 rows outside a transaction may take and release
    // its lock between two samples: then there is no entry, which also says that no
    // write was blocked and nothing rewritten (a rewrite is listed even unsampled).
    if let Some(index) = lock(1) {
        assert_eq!(index["rewritten"], false, "{index:#}");
        assert_eq!(index["blocked_writes_ms"], 0, "{index:#}");
    }
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("AccessExclusiveLock public.customers"),
        "{}",
        describe(&output)
    );
}

/// A stage over its `lock_budget` on the copy fails the rehearsal (exit 19), and
/// `apply --require-rehearsal` refuses that report.
#[test]
fn a_rehearsal_over_its_lock_budget_fails_and_apply_refuses_it() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "budgeted"
lock_timeout = "2s"
lock_budget = { strongest = "share", blocks_reads = "100ms" }

[[stage]]
id = "widen"
[[stage.step]]
sql = "ALTER TABLE customers ALTER COLUMN name TYPE varchar(200); SELECT pg_sleep(0.4)"
"#,
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let (output, file) = rehearse(dir.path(), "plan.toml", &db, reports.path(), &[]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::OVER_BUDGET),
        "{}",
        describe(&output)
    );
    let report = read_json(&file);
    let over = report["stages"][0]["over_budget"].as_array().unwrap();
    let text = format!("{over:?}");
    assert!(text.contains("stronger than the budget's SHARE"), "{text}");
    assert!(text.contains("reads blocked"), "{text}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("OVER BUDGET"));
    let file_arg = file.to_string_lossy().into_owned();
    let apply = run(
        dir.path(),
        &db,
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--require-rehearsal",
            &file_arg,
        ],
    );
    assert_eq!(
        apply.status.code(),
        Some(exit_codes::REHEARSAL_REQUIRED),
        "{}",
        describe(&apply)
    );
    assert_eq!(
        db.scalar("SELECT data_type FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'name'"),
        "text",
        "the refused apply changed nothing"
    );

    // `plan` holds the rehearsal's estimates against the budget before any apply.
    let plan = run(
        dir.path(),
        &db,
        &["plan", "plan.toml", "--rehearsal", &file_arg],
    );
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains(
            "widen (budget: strongest SHARE, reads blocked 100 ms, writes blocked no limit): OVER"
        ),
        "{}",
        describe(&plan)
    );
    assert!(
        text.contains("AccessExclusiveLock public.customers: reads blocked ~"),
        "{}",
        describe(&plan)
    );
    let json = run(
        dir.path(),
        &db,
        &[
            "plan",
            "plan.toml",
            "--rehearsal",
            &file_arg,
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let stage = &json["lock_budget"]["stages"][0];
    assert_eq!(stage["budget"]["blocks_reads_ms"], 100, "{json:#}");
    assert!(
        stage["locks"][0]["estimated_blocked_reads_ms"]
            .as_u64()
            .unwrap()
            >= 100,
        "{json:#}"
    );
    assert_eq!(json["lock_budget"]["same_plan"], true, "{json:#}");
}
