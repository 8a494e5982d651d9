//! planrun's own SQL against a role that may create objects where planrun's session
//! looks for them (CVE-2018-1058). `mallory`, who may create in `public` and in the
//! database, plants functions and operators that match planrun's expressions better
//! than pg_catalog's (`tests/plans/scenarios/search_path/mallory.sql`), or squats the
//! ledger's schema `planrun` (`mallory_ledger.sql`). planrun runs as the superuser
//! `postgres`, as production migrations often do: a trojan that ran would run as a
//! superuser. Every command planrun has that reads or writes the database runs: `plan`,
//! `apply` (plan lock taken and waited for, backup refused by a lock, a stage's locks
//! retried while the blocker watch names who holds them, memoir transforms, a
//! concurrent index build, captures, verifications, the ledger), `status`, `verify`
//! and `rehearse`. No trojan may run; against a squatted ledger planrun refuses,
//! naming the owner, and writes nothing.

use std::path::Path;
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_memoir::legacy::{create_legacy_schema, insert_chapter, load_legacy, ImagesType};
use planrun_tests::{describe, planrun_on, scenario, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The first key of planrun's advisory locks (`lock.rs`).
const PLAN_LOCK_CLASS: i32 = 0x706c_616e;

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    planrun_on(PLANRUN, dir, db, args)
}

fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
}

/// The memoir legacy tables with 40 generated chapters and one whose images the split
/// must set aside; loaded before mallory plants anything.
fn legacy_db() -> TestDb {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 11, 40, ImagesType::Jsonb).unwrap();
    insert_chapter(
        &mut client,
        1,
        1000,
        Some("text"),
        Some(r#"[{"caption": "no url"}]"#),
    )
    .unwrap();
    db
}

/// Creates `mallory` (NOLOGIN) with CREATE on `public` and on the database, and runs
/// each of `files` (from the scenario directory) as her.
fn plant(db: &TestDb, dir: &Path, files: &[&str]) {
    db.execute(
        "CREATE ROLE mallory NOLOGIN;
         GRANT CREATE ON SCHEMA public TO mallory;
         GRANT CREATE ON DATABASE planrun_test TO mallory;",
    );
    let mut client = db.client();
    client.batch_execute("SET ROLE mallory").unwrap();
    for file in files {
        let sql = std::fs::read_to_string(dir.join(file)).unwrap();
        client
            .batch_execute(&sql)
            .unwrap_or_else(|error| panic!("{file}: {error:?}"));
    }
}

/// No trojan ran, not even in a transaction rolled back since (the sequence keeps
/// count), and mallory is still no superuser.
fn assert_no_trojan_ran(db: &TestDb, after: &str) {
    let runs = db.column(
        "SELECT trojan || ' as ' || ran_as || ': ' || coalesce(query, '') FROM public.trojan_runs",
    );
    assert!(runs.is_empty(), "after {after}, trojans ran: {runs:#?}");
    assert_eq!(
        db.scalar("SELECT is_called FROM public.trojan_hits"),
        "f",
        "after {after}, a trojan ran in a transaction that was rolled back"
    );
    assert_eq!(
        db.scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'mallory'"),
        "f",
        "after {after}, mallory is a superuser"
    );
}

/// A session named `application_name`, for blockers the output must name.
fn session(db: &TestDb, application_name: &str) -> postgres::Client {
    let url = format!("{}?application_name={application_name}", db.url);
    postgres::Client::connect(&url, postgres::NoTls).unwrap()
}

/// `plan`, `status` and `verify` (read-only) exit with `code`.
fn read_only_commands(dir: &Path, db: &TestDb, code: i32) -> Vec<Output> {
    ["plan", "status", "verify"]
        .into_iter()
        .map(|command| {
            let output = run(dir, db, &[command, "plan.toml"]);
            assert_code(&output, code);
            output
        })
        .collect()
}

#[test]
fn no_trojan_on_the_search_path_runs_with_planruns_privileges() {
    let db = legacy_db();
    // An invalid index from a failed concurrent build, as real databases have: the
    // check for one that planrun's own build left then reads its row.
    db.execute(
        "CREATE TABLE public.leftover (v int); INSERT INTO public.leftover VALUES (1), (1);",
    );
    db.client()
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY leftover_v ON public.leftover (v)")
        .expect_err("a duplicate fails the build and leaves the index invalid");
    let dir = scenario("search_path");
    plant(&db, dir.path(), &["mallory.sql"]);

    read_only_commands(dir.path(), &db, exit_codes::SUCCESS);
    assert_no_trojan_ran(&db, "plan, status and verify before any apply");

    another_apply_holds_the_plan_lock(dir.path(), &db);
    assert_no_trojan_ran(&db, "an apply that waited for the plan lock");

    a_lock_refuses_the_backup(dir.path(), &db);
    assert_no_trojan_ran(&db, "an apply whose backup was refused");

    a_writer_blocks_the_last_stage(dir.path(), &db);
    assert_no_trojan_ran(&db, "an apply whose last stage was blocked");

    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_code(&output, exit_codes::SUCCESS);
    read_only_commands(dir.path(), &db, exit_codes::SUCCESS);
    assert_no_trojan_ran(&db, "the whole plan, then plan, status and verify");

    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.stage_results WHERE status = 'applied'"),
        "6"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.memoir_quarantine"),
        "1"
    );
    let owners = db.column(
        "SELECT DISTINCT pg_catalog.pg_get_userbyid(relowner)::text FROM pg_catalog.pg_class \
         WHERE relnamespace OPERATOR(pg_catalog.=) 'planrun'::regnamespace::oid \
         UNION SELECT pg_catalog.pg_get_userbyid(nspowner)::text FROM pg_catalog.pg_namespace \
         WHERE nspname = 'planrun'",
    );
    assert_eq!(owners, [Some("postgres".to_owned())], "the ledger's owners");
}

/// The test holds the plan's advisory lock: apply waits `--lock-wait`, then exits
/// LOCKED naming the holder (`lock.rs`: acquire, holder).
fn another_apply_holds_the_plan_lock(dir: &Path, db: &TestDb) {
    let mut holder = session(db, "plan-lock-holder");
    let key = planrun_engine::lock::plan_lock_key("search_path");
    holder
        .execute(
            "SELECT pg_catalog.pg_advisory_lock($1::int4, $2::int4)",
            &[&PLAN_LOCK_CLASS, &key],
        )
        .unwrap();
    let output = run(
        dir,
        db,
        &["apply", "plan.toml", "--no-backup", "--lock-wait", "0.3"],
    );
    assert_code(&output, exit_codes::LOCKED);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("plan-lock-holder"), "{}", describe(&output));
}

/// A session holds ACCESS EXCLUSIVE on `memoirs`: `pg_dump` gives up after the plan's
/// lock_timeout and the backup fails naming the session (`backup.rs`: lock_holders);
/// nothing runs.
fn a_lock_refuses_the_backup(dir: &Path, db: &TestDb) {
    let mut maintenance = session(db, "nightly-maintenance");
    let mut tx = maintenance.transaction().unwrap();
    tx.batch_execute("LOCK TABLE public.memoirs IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let output = run(dir, db, &["apply", "plan.toml"]);
    tx.rollback().unwrap();
    assert_code(&output, exit_codes::BACKUP_FAILED);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nightly-maintenance"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('public.chapter_sections')"),
        "NULL"
    );
}

/// A writer holds ROW EXCLUSIVE on `memoirs`: every stage but the last commits; the
/// last one's EXCLUSIVE lock is retried (3 attempts) and the stage fails naming the
/// writer, found by the blocker watch (`watch.rs`, `stage_locks.rs`). Along the way:
/// both memoir transforms (their catalog checks, the deferred constraints of the
/// tables they fill, the quarantine), a `CREATE INDEX CONCURRENTLY` (`sql_step.rs`),
/// captures, verifications and the ledger.
fn a_writer_blocks_the_last_stage(dir: &Path, db: &TestDb) {
    let mut writer = session(db, "memoir-writer");
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute("LOCK TABLE public.memoirs IN ROW EXCLUSIVE MODE")
        .unwrap();
    let output = run(
        dir,
        db,
        &["apply", "plan.toml", "--no-backup", "--format", "json"],
    );
    tx.rollback().unwrap();
    assert_code(&output, exit_codes::STEP_FAILED);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let stages = report["stages"].as_array().unwrap();
    let statuses: Vec<&str> = stages
        .iter()
        .map(|stage| stage["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["applied", "applied", "applied", "applied", "applied", "failed"],
        "{report:#}"
    );
    let blocked = &stages[5];
    assert_eq!(blocked["error"]["sqlstate"], "55P03", "{report:#}");
    assert!(
        blocked["error"]["blocked_by"]
            .to_string()
            .contains("memoir-writer"),
        "the blocker watch names the writer: {report:#}"
    );
    let retries = blocked["lock_retries"].as_array().unwrap();
    assert_eq!(retries.len(), 2, "{report:#}");
    for retry in retries {
        assert!(
            retry["blocked_by"].to_string().contains("memoir-writer"),
            "{report:#}"
        );
    }
}

#[test]
fn a_planrun_schema_another_role_owns_is_refused_naming_its_owner() {
    let db = legacy_db();
    let dir = scenario("search_path");
    plant(&db, dir.path(), &["mallory.sql", "mallory_ledger.sql"]);
    let before = db.dump_application();

    let mut outputs = read_only_commands(dir.path(), &db, exit_codes::ERROR);
    let apply = run(dir.path(), &db, &["apply", "plan.toml"]);
    assert_code(&apply, exit_codes::ERROR);
    outputs.push(apply);
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("schema `planrun` is owned by mallory"),
            "{}",
            describe(output)
        );
    }
    assert_no_trojan_ran(&db, "plan, status, verify and apply");
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.ledger_version"),
        "0"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.runs"), "0");
    assert_eq!(
        db.column(
            "SELECT relname::text FROM pg_catalog.pg_class \
             WHERE relnamespace OPERATOR(pg_catalog.=) 'planrun'::regnamespace::oid \
               AND relowner OPERATOR(pg_catalog.<>) 'mallory'::regrole::oid"
        ),
        Vec::<Option<String>>::new(),
        "planrun created nothing in mallory's schema"
    );
    assert_eq!(db.dump_application(), before, "nothing of the plan ran");
    assert!(!dir.path().join("backups").exists(), "no backup was taken");
}

#[test]
fn a_rehearsal_reads_the_target_without_running_a_trojan() {
    let db = legacy_db();
    let dir = scenario("search_path");
    plant(&db, dir.path(), &["mallory.sql"]);
    let reports = tempfile::tempdir().unwrap();
    let reports_arg = reports.path().to_string_lossy().into_owned();
    let output = run(
        dir.path(),
        &db,
        &["rehearse", "plan.toml", "--report-dir", &reports_arg],
    );
    assert_code(&output, exit_codes::SUCCESS);
    assert!(!stdout(&output).contains("TROJAN"), "{}", describe(&output));
    assert_no_trojan_ran(&db, "rehearse");
}
