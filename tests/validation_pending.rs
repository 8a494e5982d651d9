//! Foreign keys validated after their stage commits (issue 23): a step marked
//! `after_commit = true` runs in a transaction of its own once the stage committed
//! with its key `NOT VALID`, and the ledger says `validation_pending` until it passed.
//! A row that violates the key keeps the stage pending (exit 23, the row named,
//! `status` showing it), the key still refuses new violations, the stages after it
//! run, and a re-run after the row is fixed validates without running the stage
//! again. A signal during the validation leaves it pending; `check` refuses an
//! after-commit step whose locks would block the application. An index built
//! CONCURRENTLY after the commit runs outside any transaction block; a failed build
//! keeps the stage pending, and the re-run drops the invalid index and builds it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tests::{describe, planrun_command, planrun_on, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

const TABLES: &str = "
CREATE TABLE parents (id bigint PRIMARY KEY);
CREATE TABLE children (id bigint PRIMARY KEY, parent_id bigint);
CREATE TABLE stage_runs (stage text NOT NULL);
CREATE TABLE validation_speed (slow boolean NOT NULL);
INSERT INTO validation_speed VALUES (false);
INSERT INTO parents SELECT generate_series(1, 5);
INSERT INTO children SELECT g, 1 + g % 5 FROM generate_series(1, 100) g;
";

/// The stage adds the key NOT VALID and validates it after its commit (slowly while
/// `validation_speed.slow`); a dependent stage follows.
const PLAN: &str = r#"
[plan]
name = "keys"
lock_timeout = "2s"

[[stage]]
id = "parent_key"

[[stage.step]]
name = "add the key"
sql = """
INSERT INTO stage_runs VALUES ('parent_key');
ALTER TABLE children ADD CONSTRAINT children_parent_fkey
    FOREIGN KEY (parent_id) REFERENCES parents(id) NOT VALID;
"""

[[stage.step]]
name = "validate the key"
after_commit = true
sql = """
SELECT pg_catalog.pg_sleep(CASE WHEN slow THEN 60 ELSE 0 END) FROM validation_speed;
ALTER TABLE children VALIDATE CONSTRAINT children_parent_fkey;
"""

[[stage.verify]]
name = "the key is validated"
after_step = "validate the key"
sql = "SELECT convalidated FROM pg_constraint WHERE conname = 'children_parent_fkey'"
expect = true

[[stage]]
id = "after_key"
depends_on = ["parent_key"]

[[stage.step]]
sql = "INSERT INTO stage_runs VALUES ('after_key')"
"#;

fn plan_dir(plan: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.toml"), plan).unwrap();
    dir
}

fn apply(dir: &Path, db: &TestDb) -> std::process::Output {
    planrun_on(PLANRUN, dir, db, &["apply", "plan.toml", "--no-backup"])
}

/// `output` exited with `code` and says each of `expected`.
fn assert_exit_saying(output: &std::process::Output, code: i32, expected: &[&str]) {
    let text = describe(output);
    assert_eq!(output.status.code(), Some(code), "{text}");
    for expected in expected {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
}

fn ledger_state(db: &TestDb) -> String {
    db.scalar(
        "SELECT status FROM planrun.stage_results WHERE stage_id = 'parent_key' ORDER BY id DESC LIMIT 1",
    )
}

fn key_validated(db: &TestDb) -> String {
    db.scalar("SELECT convalidated FROM pg_constraint WHERE conname = 'children_parent_fkey'")
}

#[test]
fn a_violating_row_keeps_the_stage_pending_and_a_rerun_after_the_fix_validates_only() {
    let db = TestDb::new();
    db.execute(TABLES);
    // Written behind the migration's back before its key existed.
    db.execute("INSERT INTO children VALUES (1001, 99), (1003, 98)");
    let dir = plan_dir(PLAN);

    let first = apply(dir.path(), &db);
    assert_exit_saying(
        &first,
        exit_codes::VALIDATION_PENDING,
        &[
            "VALIDATION PENDING",
            "rows violating it (first 2): parent_id=",
            "parent_id=99",
            "parent_id=98",
        ],
    );
    assert_eq!(ledger_state(&db), "validation_pending");
    assert_eq!(key_validated(&db), "f", "the key committed NOT VALID");
    assert_eq!(
        db.scalar("SELECT string_agg(stage, ',' ORDER BY stage) FROM stage_runs"),
        "after_key,parent_key",
        "the dependent stage ran: the NOT VALID key checks every new write"
    );
    let refused = db
        .client()
        .batch_execute("INSERT INTO children VALUES (1002, 77)");
    assert!(
        refused.is_err(),
        "the NOT VALID key refuses a new violating row"
    );

    let status = planrun_on(PLANRUN, dir.path(), &db, &["status", "plan.toml"]);
    let status_text = stdout(&status);
    assert!(
        status_text.contains("validation_pending"),
        "status shows the pending validation:\n{}",
        describe(&status)
    );
    let json = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["status", "plan.toml", "--format", "json"],
    );
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let state = document["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["id"] == "parent_key")
        .map(|stage| stage["state"].clone());
    assert_eq!(state, Some(serde_json::json!("validation_pending")));

    for command in ["plan", "verify"] {
        let output = planrun_on(PLANRUN, dir.path(), &db, &[command, "plan.toml"]);
        let text = describe(&output);
        assert!(
            text.contains("VALIDATION PENDING"),
            "{command} shows the pending validation:\n{text}"
        );
    }

    let again = apply(dir.path(), &db);
    assert_eq!(
        again.status.code(),
        Some(exit_codes::VALIDATION_PENDING),
        "still violated: {}",
        describe(&again)
    );

    db.execute("UPDATE children SET parent_id = 2 WHERE id IN (1001, 1003)");
    let fixed = apply(dir.path(), &db);
    assert_eq!(
        fixed.status.code(),
        Some(exit_codes::SUCCESS),
        "{}",
        describe(&fixed)
    );
    assert_eq!(key_validated(&db), "t");
    assert_eq!(ledger_state(&db), "applied");
    assert_eq!(
        db.scalar("SELECT count(*) FROM stage_runs WHERE stage = 'parent_key'"),
        "1",
        "only the validation ran again, not the stage"
    );
    let status = planrun_on(PLANRUN, dir.path(), &db, &["status", "plan.toml"]);
    let line = stdout(&status)
        .lines()
        .find(|line| line.contains("parent_key"))
        .map(str::to_owned);
    assert!(
        line.as_deref()
            .is_some_and(|line| line.contains(" applied ")),
        "{}",
        describe(&status)
    );
}

/// Starts apply on a slow validation, sends `signal` once the validation runs, and
/// returns what apply printed, with the database.
fn signal_during_the_validation(signal: i32) -> (std::process::Output, TestDb, tempfile::TempDir) {
    let db = TestDb::new();
    db.execute(TABLES);
    db.execute("UPDATE validation_speed SET slow = true");
    let dir = plan_dir(PLAN);
    let child = planrun_command(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--database-url",
            &db.url,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    planrun_tests::wait_until("the validation runs", Duration::from_secs(30), || {
        sleeping_validations(&db) == "1"
    });
    assert_eq!(
        ledger_state(&db),
        "validation_pending",
        "the stage committed first"
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let output = child.wait_with_output().unwrap();
    (output, db, dir)
}

fn sleeping_validations(db: &TestDb) -> String {
    db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid()",
    )
}

/// After a stopped validation: still pending, the key unvalidated; the re-run (a
/// fast validation now) validates it without running the stage again.
fn assert_pending_then_a_rerun_finishes(db: &TestDb, dir: &Path) {
    assert_eq!(ledger_state(db), "validation_pending");
    assert_eq!(key_validated(db), "f");
    db.execute("UPDATE validation_speed SET slow = false");
    let rerun = apply(dir, db);
    assert_eq!(
        rerun.status.code(),
        Some(exit_codes::SUCCESS),
        "{}",
        describe(&rerun)
    );
    assert_eq!(ledger_state(db), "applied");
    assert_eq!(key_validated(db), "t");
    assert_eq!(
        db.scalar("SELECT count(*) FROM stage_runs WHERE stage = 'parent_key'"),
        "1"
    );
}

#[test]
fn sigint_during_the_validation_leaves_it_pending_and_a_rerun_finishes_it() {
    let (output, db, dir) = signal_during_the_validation(libc::SIGINT);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INTERRUPTED),
        "{}",
        describe(&output)
    );
    assert_eq!(
        sleeping_validations(&db),
        "0",
        "the validation was cancelled"
    );
    assert_pending_then_a_rerun_finishes(&db, dir.path());
}

#[test]
fn sigkill_during_the_validation_leaves_it_pending_and_a_rerun_finishes_it() {
    let (output, db, dir) = signal_during_the_validation(libc::SIGKILL);
    assert_eq!(output.status.code(), None, "{}", describe(&output));
    // The server notices the client gone (client_connection_check_interval) and rolls
    // the validation back.
    planrun_tests::wait_until(
        "the server ends the validation",
        Duration::from_secs(30),
        || sleeping_validations(&db) == "0",
    );
    assert_pending_then_a_rerun_finishes(&db, dir.path());
}

#[test]
fn check_refuses_an_after_commit_step_that_would_block_the_application() {
    let plan = PLAN.replace(
        "ALTER TABLE children VALIDATE CONSTRAINT children_parent_fkey;",
        "ALTER TABLE children VALIDATE CONSTRAINT children_parent_fkey;\nALTER TABLE children ADD COLUMN note text;",
    );
    let dir = plan_dir(&plan);
    let output = planrun_command(PLANRUN, dir.path(), &["check", "plan.toml"])
        .output()
        .unwrap();
    assert_exit_saying(
        &output,
        exit_codes::INVALID_PLAN,
        &[
            "plan::after_commit_lock",
            "line 3 takes ACCESS EXCLUSIVE on",
            "application's readers and writers",
            "runs after the commit",
        ],
    );

    let fine = plan_dir(PLAN);
    let output = planrun_command(PLANRUN, fine.path(), &["check", "plan.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// What runs after the commit is read offline; SQL built at run time or a function
/// called is not, so it is refused as unseen rather than assumed to block no one.
#[test]
fn check_refuses_an_after_commit_step_whose_locks_cannot_be_read_from_its_text() {
    let plan = PLAN.replace(
        "ALTER TABLE children VALIDATE CONSTRAINT children_parent_fkey;",
        "ALTER TABLE children VALIDATE CONSTRAINT children_parent_fkey;\n\
         DO $$ BEGIN EXECUTE 'LOCK TABLE children IN ACCESS EXCLUSIVE MODE'; END $$;",
    );
    let dir = plan_dir(&plan);
    let output = planrun_command(PLANRUN, dir.path(), &["check", "plan.toml"])
        .output()
        .unwrap();
    assert_exit_saying(
        &output,
        exit_codes::INVALID_PLAN,
        &[
            "plan::after_commit_lock",
            "line 3 cannot be read offline",
            "a DO block",
        ],
    );
}

#[test]
fn a_version_7_ledger_is_migrated_before_a_stage_is_recorded_validation_pending() {
    let db = TestDb::new();
    db.execute(TABLES);
    db.execute("INSERT INTO children VALUES (1001, 99)");
    let dir = plan_dir(PLAN);
    let earlier = plan_dir(
        "[plan]\nname = \"earlier\"\n[[stage]]\nid = \"one\"\n[[stage.step]]\nsql = \"SELECT 1\"\n",
    );
    let output = apply(earlier.path(), &db);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // The ledger as planrun 7 left it: its status check knew no pending validation.
    db.execute(
        "DELETE FROM planrun.ledger_version WHERE version = 8;
         ALTER TABLE planrun.stage_results DROP CONSTRAINT stage_results_status_check;
         ALTER TABLE planrun.stage_results ADD CONSTRAINT stage_results_status_check
             CHECK (status IN ('applied', 'skipped', 'failed', 'retired', 'renamed', 'reset', 'reverted'));",
    );
    let first = apply(dir.path(), &db);
    assert_eq!(
        first.status.code(),
        Some(exit_codes::VALIDATION_PENDING),
        "{}",
        describe(&first)
    );
    assert_eq!(
        db.scalar("SELECT max(version) FROM planrun.ledger_version"),
        "8"
    );
    assert_eq!(ledger_state(&db), "validation_pending");
}

/// A stage whose after-commit step builds a unique index CONCURRENTLY, which cannot
/// run in a transaction block.
const INDEX_PLAN: &str = r#"
[plan]
name = "index"
lock_timeout = "2s"

[[stage]]
id = "tag_index"

[[stage.step]]
name = "mark"
sql = "INSERT INTO stage_runs VALUES ('tag_index')"

[[stage.step]]
name = "index the tags"
after_commit = true
sql = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tags_name ON public.tags (name);"

[[stage.verify]]
name = "the index is valid"
after_step = "index the tags"
sql = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.tags_name'::regclass"
expect = true
"#;

#[test]
fn a_failed_concurrent_index_build_after_the_commit_stays_pending_and_a_rerun_builds_it() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE tags (id bigint PRIMARY KEY, name text);
         CREATE TABLE stage_runs (stage text NOT NULL);
         INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 50) g;
         INSERT INTO tags VALUES (51, 'tag 7');",
    );
    let dir = plan_dir(INDEX_PLAN);
    let check = planrun_command(PLANRUN, dir.path(), &["check", "plan.toml"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let state = || {
        db.scalar(
            "SELECT status FROM planrun.stage_results WHERE stage_id = 'tag_index' ORDER BY id DESC LIMIT 1",
        )
    };
    let index_valid = || {
        db.scalar("SELECT coalesce((SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass('public.tags_name')), 'missing')")
    };

    let preview = planrun_on(PLANRUN, dir.path(), &db, &["plan", "plan.toml"]);
    assert_exit_saying(
        &preview,
        0,
        &["after its commit: step `index the tags`, on the session"],
    );
    let dry = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["apply", "plan.toml", "--dry-run", "--no-backup"],
    );
    assert_exit_saying(
        &dry,
        exit_codes::SUCCESS,
        &[
            "would run step `index the tags` on the session",
            "not run here",
        ],
    );
    assert_eq!(index_valid(), "missing", "the dry run built nothing");
    let first = apply(dir.path(), &db);
    assert_exit_saying(
        &first,
        exit_codes::VALIDATION_PENDING,
        &["VALIDATION PENDING", "tags_name", "(name)=(tag 7)"],
    );
    assert_eq!(state(), "validation_pending");
    assert_eq!(
        index_valid(),
        "false",
        "the failed build left its index invalid"
    );

    db.execute("DELETE FROM tags WHERE id = 51");
    let again = apply(dir.path(), &db);
    assert_eq!(
        again.status.code(),
        Some(exit_codes::SUCCESS),
        "{}",
        describe(&again)
    );
    assert_eq!(state(), "applied");
    assert_eq!(index_valid(), "true");
    assert_eq!(
        db.scalar("SELECT count(*) FROM stage_runs"),
        "1",
        "only the index build ran again, not the stage"
    );
    let refused = db
        .client()
        .batch_execute("INSERT INTO tags VALUES (52, 'tag 8')");
    assert!(refused.is_err(), "the unique index refuses a duplicate");
}
