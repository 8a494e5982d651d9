//! `planrun revert` (issue 24) on the `revertible` scenario plan, against real
//! PostgreSQL: apply then revert to start gives the application's dump of before;
//! apply runs reverted stages again; a revert that would lose data is refused before
//! it changes anything (exit 20), unless the plan declares the loss; an irreversible
//! stage refuses it; a dry run changes nothing; SIGINT and SIGKILL mid-revert leave
//! the stage applied, and a re-run finishes; `plan --revert` lists steps and locks;
//! `status` and `graph --status` show reverted stages; the JSON document matches its
//! schema; `rehearse --revert` proves each stage's revert on its own, with the plan's
//! writes in the new shape, and charges a difference to the stage at fault (exit 22).

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tests::{
    describe, planrun_command, planrun_on, repo_path, scenario, stdout, wait_until, TestDb,
    CUSTOMERS,
};
use serde_json::Value;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    planrun_on(PLANRUN, dir, db, args)
}

fn applied(dir: &Path, db: &TestDb) {
    let output = run(dir, db, &["apply", "plan.toml", "--no-backup"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

fn revert(dir: &Path, db: &TestDb, extra: &[&str]) -> Output {
    let mut args = vec!["revert", "plan.toml", "--no-backup"];
    args.extend(extra);
    run(dir, db, &args)
}

fn shop() -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    (db, scenario("revertible"))
}

/// Each stage's state as `status --format json` shows it, in order.
fn states(dir: &Path, db: &TestDb) -> Vec<(String, String)> {
    let output = run(dir, db, &["status", "plan.toml", "--format", "json"]);
    let status: Value = serde_json::from_slice(&output.stdout).expect("a status document");
    status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| {
            (
                stage["id"].as_str().unwrap().to_owned(),
                stage["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state_of(dir: &Path, db: &TestDb, id: &str) -> String {
    states(dir, db)
        .into_iter()
        .find(|(stage, _)| stage == id)
        .map(|(_, state)| state)
        .unwrap()
}

/// Each stage's state as `graph --status --format json` shows it, in order.
fn graph_states(dir: &Path, db: &TestDb) -> Vec<String> {
    let output = run(
        dir,
        db,
        &["graph", "plan.toml", "--status", "--format", "json"],
    );
    let graph: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("a graph document ({e}): {}", describe(&output)));
    graph["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| stage["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The `planrun.revert` document on `output`'s stdout, checked against its schema.
fn revert_document(output: &Output) -> Value {
    let document: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}): {}", describe(output)));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("docs/schemas/revert.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{document:#}");
    assert_eq!(document["format"], "planrun.revert");
    assert_eq!(
        document["exit_code"].as_i64(),
        output.status.code().map(i64::from)
    );
    document
}

#[test]
fn apply_then_revert_to_start_gives_the_dump_of_before_and_apply_runs_the_stages_again() {
    let (db, dir) = shop();
    let before = db.dump_application();
    applied(dir.path(), &db);
    assert_ne!(db.dump_application(), before);

    let partial = revert(dir.path(), &db, &["--to", "add_email"]);
    assert_eq!(partial.status.code(), Some(0), "{}", describe(&partial));
    assert!(stdout(&partial).contains("reverted: index_email"));
    assert_eq!(state_of(dir.path(), &db, "index_email"), "reverted");
    assert_eq!(state_of(dir.path(), &db, "add_email"), "applied");
    assert_eq!(
        graph_states(dir.path(), &db),
        ["applied", "applied", "reverted"]
    );

    let output = revert(dir.path(), &db, &["--to", "start"]);
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("reverted: add_email, create_notes"), "{text}");
    assert_eq!(db.dump_application(), before, "{text}");
    assert!(states(dir.path(), &db)
        .iter()
        .all(|(_, state)| state == "reverted"));

    let again = revert(dir.path(), &db, &["--to", "start"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).contains("nothing to revert"));

    applied(dir.path(), &db);
    assert!(states(dir.path(), &db)
        .iter()
        .all(|(_, state)| state == "applied"));
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers WHERE email = lower(name) || '@example.com'"),
        "25"
    );
}

#[test]
fn a_revert_that_would_lose_data_is_refused_naming_the_rows_and_changes_nothing() {
    let (db, dir) = shop();
    applied(dir.path(), &db);
    db.execute("UPDATE customers SET email = 'kept@elsewhere.example' WHERE id = 3");
    let before = db.dump();
    let output = run(
        dir.path(),
        &db,
        &["revert", "plan.toml", "--to", "start", "--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_REFUSED),
        "{}",
        describe(&output)
    );
    let document = revert_document(&output);
    assert_eq!(document["outcome"], "revert_refused");
    let refusal = &document["revert"]["refusals"][0];
    assert_eq!(refusal["stage"], "add_email");
    assert!(
        refusal["rows"]
            .as_str()
            .unwrap()
            .contains("kept@elsewhere.example"),
        "{document:#}"
    );
    assert_eq!(db.dump(), before, "nothing changed, the ledger included");

    let text = revert(dir.path(), &db, &["--to", "start"]);
    assert_eq!(text.status.code(), Some(exit_codes::REVERT_REFUSED));
    assert!(describe(&text).contains("refused: stage `add_email`"));
    assert!(describe(&text).contains("kept@elsewhere.example"));
}

#[test]
fn a_declared_loss_warns_and_the_revert_goes_on() {
    let (db, dir) = shop();
    applied(dir.path(), &db);
    db.execute("INSERT INTO notes (customer_id, body) VALUES (1, 'call back')");
    let refused = revert(dir.path(), &db, &["--to", "start"]);
    assert_eq!(refused.status.code(), Some(exit_codes::REVERT_REFUSED));
    assert!(describe(&refused).contains("call back"));

    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace(
            "sql = \"DROP TABLE notes\"\n",
            "sql = \"DROP TABLE notes\"\n[stage.revert_loss]\nreason = \"notes are scratch\"\n",
        ),
    )
    .unwrap();
    let output = revert(dir.path(), &db, &["--to", "start"]);
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("lost, as the plan declares") && text.contains("notes are scratch"),
        "{text}"
    );
    assert_eq!(db.scalar("SELECT to_regclass('public.notes') IS NULL"), "t");
}

#[test]
fn an_irreversible_stage_refuses_the_revert_and_check_says_why() {
    let (db, dir) = shop();
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    let cut = text.find("[[stage.revert]]\nsql = \"DROP INDEX").unwrap();
    std::fs::write(&plan, &text[..cut]).unwrap();
    let check = planrun_tests::planrun(PLANRUN, dir.path(), &["check", "plan.toml"], &[]);
    assert!(
        stdout(&check)
            .contains("cannot revert index_email (it declares no [[stage.revert]] steps)"),
        "{}",
        describe(&check)
    );
    applied(dir.path(), &db);
    let before = db.dump();
    let output = revert(dir.path(), &db, &["--to", "start"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_REFUSED),
        "{}",
        describe(&output)
    );
    assert!(describe(&output).contains("stage `index_email` cannot be reverted"));
    assert_eq!(db.dump(), before);
    let after_it = revert(dir.path(), &db, &["--to", "index_email"]);
    assert_eq!(after_it.status.code(), Some(0));
}

#[test]
fn a_dry_run_changes_nothing_and_plan_revert_lists_steps_and_locks() {
    let (db, dir) = shop();
    applied(dir.path(), &db);
    let before = db.dump_application();
    let ledger = db.scalar("SELECT count(*) FROM planrun.stage_results");
    let output = run(
        dir.path(),
        &db,
        &[
            "revert",
            "plan.toml",
            "--to",
            "start",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let document = revert_document(&output);
    assert_eq!(document["outcome"], "would_revert");
    assert_eq!(db.dump_application(), before);
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.stage_results"),
        ledger
    );
    assert!(states(dir.path(), &db)
        .iter()
        .all(|(_, state)| state == "applied"));

    let plan = run(
        dir.path(),
        &db,
        &[
            "plan",
            "plan.toml",
            "--revert",
            "--to",
            "start",
            "--format",
            "json",
        ],
    );
    let document = revert_document(&plan);
    assert_eq!(document["outcome"], "would_revert", "{document:#}");
    let stages = document["stages"].as_array().unwrap();
    let ids: Vec<&str> = stages.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["index_email", "add_email", "create_notes"]);
    assert_eq!(stages[1]["steps"][0]["name"], "02_email_revert.sql");
    // The stage declares SHARE ROW EXCLUSIVE; its revert's `DROP COLUMN` needs ACCESS
    // EXCLUSIVE, taken before its checks, and `plan --revert` says so.
    assert_eq!(stages[1]["locks"][0]["table"], "customers");
    assert_eq!(stages[1]["locks"][0]["mode"], "ACCESS EXCLUSIVE");
    assert_eq!(db.dump_application(), before);
}

fn spawn_revert(dir: &Path, db: &TestDb) -> Child {
    let args = [
        "revert",
        "plan.toml",
        "--to",
        "start",
        "--no-backup",
        "--set",
        "revert_pause=60",
        "--database-url",
        &db.url,
    ];
    planrun_command(PLANRUN, dir, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts a revert that holds `add_email`'s revert open (its pause), after
/// `index_email`'s revert committed.
fn revert_held_in_add_email(dir: &Path, db: &TestDb) -> Child {
    applied(dir, db);
    let child = spawn_revert(dir, db);
    wait_until(
        "the revert of add_email sleeps",
        Duration::from_secs(30),
        || {
            db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
        ) == "1"
        },
    );
    child
}

/// The interrupted stage is still applied, whole; a re-run finishes the revert.
fn assert_add_email_whole_then_finished(dir: &Path, db: &TestDb, before: &str) {
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers WHERE email IS NOT NULL"),
        "25",
        "add_email's revert rolled back whole"
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('public.customers_email') IS NULL"),
        "t",
        "index_email's revert had committed"
    );
    let rerun = revert(dir, db, &["--to", "start", "--lock-wait", "30s"]);
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert!(stdout(&rerun).contains("reverted: add_email, create_notes"));
    assert_eq!(db.dump_application(), before);
}

#[test]
fn sigint_mid_revert_rolls_the_stage_back_and_a_rerun_finishes() {
    let (db, dir) = shop();
    let before = db.dump_application();
    let child = revert_held_in_add_email(dir.path(), &db);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap();
    let text = describe(&output);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INTERRUPTED),
        "{text}"
    );
    assert!(text.contains("reverted: index_email"), "{text}");
    assert!(
        text.contains("not reverted (still applied): add_email"),
        "{text}"
    );
    assert_eq!(
        db.scalar("SELECT outcome FROM planrun.runs ORDER BY id DESC LIMIT 1"),
        "interrupted"
    );
    assert_add_email_whole_then_finished(dir.path(), &db, &before);
}

#[test]
fn sigkill_mid_revert_leaves_the_stage_applied_and_a_rerun_finishes() {
    let (db, dir) = shop();
    let before = db.dump_application();
    let mut child = revert_held_in_add_email(dir.path(), &db);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_until(
        "the killed planrun's sessions are gone",
        Duration::from_secs(60),
        || {
            db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'planrun%'",
            ) == "0"
        },
    );
    assert_add_email_whole_then_finished(dir.path(), &db, &before);
}

/// `rehearse --revert` into `reports`: the output and the report file.
fn rehearse_revert(dir: &Path, db: &TestDb, reports: &Path) -> (Output, std::path::PathBuf, Value) {
    let reports_arg = reports.to_string_lossy().into_owned();
    let output = run(
        dir,
        db,
        &[
            "rehearse",
            "plan.toml",
            "--revert",
            "--report-dir",
            &reports_arg,
        ],
    );
    let file = std::fs::read_dir(reports)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .next()
        .unwrap_or_else(|| panic!("a report file: {}", describe(&output)));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    (output, file, report)
}

#[test]
fn a_rehearsal_proves_the_revert_and_revert_require_rehearsal_reads_it() {
    let (db, dir) = shop();
    let reports = tempfile::tempdir().unwrap();
    let (output, file, report) = rehearse_revert(dir.path(), &db, reports.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let proofs = report["revert"]["stages"].as_array().unwrap();
    let proved: Vec<(&str, bool)> = proofs
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["proved"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        proved,
        [
            ("index_email", true),
            ("add_email", true),
            ("create_notes", true)
        ],
        "{report:#}"
    );
    applied(dir.path(), &db);
    let file_arg = file.to_string_lossy().into_owned();
    let output = revert(
        dir.path(),
        &db,
        &["--to", "start", "--require-rehearsal", &file_arg],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn a_revert_that_drifted_from_its_stage_is_caught_by_the_rehearsal_and_required_proof_refuses() {
    let (db, dir) = shop();
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace("sql = \"DROP INDEX customers_email\"", "sql = \"SELECT 1\""),
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let (_, file, report) = rehearse_revert(dir.path(), &db, reports.path());
    let first = &report["revert"]["stages"][0];
    assert_eq!(first["id"], "index_email");
    assert_eq!(first["proved"], false, "{report:#}");
    assert_eq!(report["exit_code"], exit_codes::REVERT_UNPROVED);
    applied(dir.path(), &db);
    let before = db.dump();
    let file_arg = file.to_string_lossy().into_owned();
    let output = revert(
        dir.path(),
        &db,
        &["--to", "start", "--require-rehearsal", &file_arg],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REHEARSAL_REQUIRED),
        "{}",
        describe(&output)
    );
    assert!(describe(&output).contains("unproved"));
    assert_eq!(db.dump(), before);
}

/// Each stage's proof, newest first: id, proved, differences.
fn proofs(report: &Value) -> Vec<(String, bool, Vec<String>)> {
    report["revert"]["stages"]
        .as_array()
        .unwrap_or_else(|| panic!("revert.stages: {report:#}"))
        .iter()
        .map(|proof| {
            (
                proof["id"].as_str().unwrap().to_owned(),
                proof["proved"].as_bool().unwrap(),
                proof["differences"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|line| line.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// `add_email`'s revert with `extra` SQL after it.
fn add_email_revert_with(dir: &Path, extra: &str) {
    let file = dir.join("02_email_revert.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{extra}\n{text}")).unwrap();
}

#[test]
fn a_revert_that_changes_a_row_is_charged_to_its_stage_alone() {
    let (db, dir) = shop();
    add_email_revert_with(
        dir.path(),
        "UPDATE customers SET name = name || '!' WHERE id = 2;",
    );
    let reports = tempfile::tempdir().unwrap();
    let (output, _, report) = rehearse_revert(dir.path(), &db, reports.path());
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_UNPROVED),
        "{}",
        describe(&output)
    );
    let text = stdout(&output);
    assert!(
        text.contains(
            "  add_email  NOT PROVED\n      - INSERT INTO public.customers (id, name) VALUES (2, 'c2');"
        ),
        "{text}"
    );
    let proofs = proofs(&report);
    let verdicts: Vec<(&str, bool)> = proofs.iter().map(|(id, p, _)| (id.as_str(), *p)).collect();
    assert_eq!(
        verdicts,
        [
            ("index_email", true),
            ("add_email", false),
            ("create_notes", true)
        ],
        "{report:#}"
    );
    assert_eq!(
        proofs[1].2,
        [
            "- INSERT INTO public.customers (id, name) VALUES (2, 'c2');",
            "+ INSERT INTO public.customers (id, name) VALUES (2, 'c2!');"
        ],
        "{report:#}"
    );
}

#[test]
fn a_revert_that_drops_a_rehearsed_write_is_caught_by_the_rehearsal() {
    let (db, dir) = shop();
    add_email_revert_with(dir.path(), "DELETE FROM customers WHERE name = 'Zed';");
    let reports = tempfile::tempdir().unwrap();
    let (output, _, report) = rehearse_revert(dir.path(), &db, reports.path());
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_UNPROVED),
        "{}",
        describe(&output)
    );
    let proofs = proofs(&report);
    assert_eq!(proofs[0].0, "index_email");
    assert!(proofs[0].1, "{report:#}");
    assert_eq!(proofs[1].0, "add_email");
    assert!(!proofs[1].1, "{report:#}");
    assert!(
        proofs[1]
            .2
            .iter()
            .any(|line| line.contains("no customer lost")),
        "{report:#}"
    );
    assert_eq!(proofs[2].0, "create_notes");
    assert!(!proofs[2].1);
    assert!(proofs[2].2[0].contains("`add_email` before it did not commit"));
}

#[test]
fn a_revert_precondition_failing_in_its_own_transaction_names_its_rows() {
    let (db, dir) = shop();
    applied(dir.path(), &db);
    let args = [
        "revert",
        "plan.toml",
        "--to",
        "start",
        "--no-backup",
        "--format",
        "json",
        "--set",
        "revert_pause=5",
        "--database-url",
        &db.url,
    ];
    let child = planrun_command(PLANRUN, dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the revert of add_email sleeps",
        Duration::from_secs(30),
        || {
            db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()",
        ) == "1"
        },
    );
    db.execute("INSERT INTO notes (body) VALUES ('written during the revert')");
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_REFUSED),
        "{}",
        describe(&output)
    );
    let document = revert_document(&output);
    let refusal = &document["revert"]["refusals"][0];
    assert_eq!(refusal["stage"], "create_notes", "{document:#}");
    assert_eq!(refusal["check"], "no note would be lost");
    assert!(
        refusal["rows"]
            .as_str()
            .unwrap()
            .contains("written during the revert"),
        "{document:#}"
    );
    assert_eq!(state_of(dir.path(), &db, "add_email"), "reverted");
    assert_eq!(state_of(dir.path(), &db, "create_notes"), "applied");
}

#[test]
fn a_rehearse_write_is_checked_offline_like_a_step() {
    let dir = scenario("revertible");
    let plan = dir.path().join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace(
            "sql = \"INSERT INTO customers (name, email) VALUES ('Zed', 'zed@example.com')\"",
            "sql_file = \"missing.sql\"",
        ),
    )
    .unwrap();
    let output = planrun_command(PLANRUN, dir.path(), &["check", "plan.toml"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INVALID_PLAN),
        "{}",
        describe(&output)
    );
    assert!(
        describe(&output).contains("SQL file `missing.sql` of stage `add_email` does not exist"),
        "{}",
        describe(&output)
    );
}

/// A note written by a transaction still open when the revert of `create_notes`
/// starts: the revert takes the lock its `DROP TABLE notes` needs before its
/// precondition ("no note would be lost") reads, so it waits for the writer, then sees
/// the note and refuses (20), the note kept. Before, the precondition read first (the
/// note not yet committed), the `DROP` then waited for the writer and dropped its
/// committed note with the table, and the revert exited 0.
#[test]
fn a_note_committed_while_the_revert_waits_is_not_dropped_with_its_table() {
    let (db, dir) = shop();
    applied(dir.path(), &db);
    let mut writer = db.client();
    writer
        .batch_execute("BEGIN; INSERT INTO notes (body) VALUES ('written as the revert starts');")
        .unwrap();
    let args = [
        "revert",
        "plan.toml",
        "--to",
        "start",
        "--no-backup",
        "--format",
        "json",
        "--database-url",
        &db.url,
    ];
    let mut child = planrun_command(PLANRUN, dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the revert waits for the writer's lock",
        Duration::from_secs(30),
        || {
            child.try_wait().unwrap().is_some()
                || db.scalar(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE NOT l.granted AND c.relname = 'notes'",
                ) != "0"
        },
    );
    writer.batch_execute("COMMIT").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_REFUSED),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM notes WHERE body = 'written as the revert starts'"),
        "1",
        "the committed note is still there"
    );
}
