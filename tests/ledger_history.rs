//! The ledger cannot be fooled by an edited plan: an applied stage renamed, removed,
//! or a new stage placed before applied ones is reported by `plan` and `status` and
//! refused by `apply` (exit 14) until accepted with a flag, and the decision is kept
//! in the ledger and the report.

use std::path::Path;
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::{describe, planrun, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

const A: &str = "[[stage]]\nid = \"a\"\n[[stage.step]]\nsql = \"CREATE TABLE a (x int)\"\n";

fn stage_b(id: &str) -> String {
    format!("[[stage]]\nid = \"{id}\"\ndepends_on = [\"a\"]\n[[stage.step]]\nsql = \"CREATE TABLE b (x int)\"\n")
}

fn write_plan(dir: &Path, stages: &[&str]) {
    std::fs::write(
        dir.join("plan.toml"),
        format!("[plan]\nname = \"history\"\n\n{}", stages.join("\n")),
    )
    .unwrap();
}

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["plan.toml", "--database-url", &db.url]);
    if args[0] == "apply" {
        all.push("--no-backup");
    }
    planrun(PLANRUN, dir, &all, &[])
}

fn statuses(db: &TestDb) -> Vec<String> {
    db.column("SELECT stage_id || ':' || status FROM planrun.stage_results ORDER BY id")
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn a_renamed_stage_is_refused_until_the_rename_is_recorded_and_never_runs_twice() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    write_plan(dir.path(), &[A, &stage_b("b")]);
    assert_eq!(run(dir.path(), &db, &["apply"]).status.code(), Some(0));

    write_plan(dir.path(), &[A, &stage_b("b_tables")]);
    let plan = run(dir.path(), &db, &["plan"]);
    assert!(
        stdout(&plan).contains("stage `b_tables` is applied stage `b` under a new id"),
        "{}",
        describe(&plan)
    );
    let status = run(dir.path(), &db, &["status"]);
    assert!(
        stdout(&status).contains("--rename b=b_tables"),
        "{}",
        describe(&status)
    );
    let refused = run(dir.path(), &db, &["apply", "--format", "json"]);
    assert_eq!(
        refused.status.code(),
        Some(exit_codes::DRIFT),
        "{}",
        describe(&refused)
    );
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert!(
        report["history"][0]
            .as_str()
            .unwrap()
            .contains("--rename b=b_tables"),
        "{report:#}"
    );

    let wrong = run(dir.path(), &db, &["apply", "--rename", "b=nowhere"]);
    assert_ne!(wrong.status.code(), Some(0), "{}", describe(&wrong));
    let accepted = run(dir.path(), &db, &["apply", "--rename", "b=b_tables"]);
    assert_eq!(accepted.status.code(), Some(0), "{}", describe(&accepted));
    assert!(stdout(&accepted).contains("recorded the rename of applied stage `b` to `b_tables`"));
    assert_eq!(
        statuses(&db),
        ["a:applied", "b:applied", "b:renamed", "b_tables:applied"]
    );
    let again = run(dir.path(), &db, &["apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        describe(&again)
    );
}

#[test]
fn an_applied_stage_removed_from_the_plan_is_refused_until_accepted() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    write_plan(dir.path(), &[A, &stage_b("b")]);
    assert_eq!(run(dir.path(), &db, &["apply"]).status.code(), Some(0));

    write_plan(dir.path(), &[A]);
    let status = run(dir.path(), &db, &["status"]);
    assert!(
        stdout(&status).contains("applied stage `b` is no longer in the plan"),
        "{}",
        describe(&status)
    );
    let refused = run(dir.path(), &db, &["apply"]);
    assert_eq!(
        refused.status.code(),
        Some(exit_codes::DRIFT),
        "{}",
        describe(&refused)
    );
    let accepted = run(dir.path(), &db, &["apply", "--accept-missing"]);
    assert_eq!(accepted.status.code(), Some(0), "{}", describe(&accepted));
    assert_eq!(statuses(&db), ["a:applied", "b:applied", "b:retired"]);
    assert_eq!(
        db.scalar("SELECT to_regclass('b') IS NOT NULL"),
        "t",
        "its changes stay"
    );
    let again = run(dir.path(), &db, &["apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
}

#[test]
fn a_stage_inserted_before_applied_ones_is_refused_until_allowed() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    write_plan(dir.path(), &[A, &stage_b("b")]);
    assert_eq!(run(dir.path(), &db, &["apply"]).status.code(), Some(0));

    let early = "[[stage]]\nid = \"early\"\n[[stage.step]]\nsql = \"CREATE TABLE early (x int)\"\n";
    write_plan(dir.path(), &[A, early, &stage_b("b")]);
    let refused = run(dir.path(), &db, &["apply"]);
    assert_eq!(
        refused.status.code(),
        Some(exit_codes::DRIFT),
        "{}",
        describe(&refused)
    );
    assert!(
        stdout(&refused).contains("pending stage `early` comes before applied stage `b`"),
        "{}",
        describe(&refused)
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('early') IS NULL"),
        "t",
        "nothing ran"
    );
    let allowed = run(dir.path(), &db, &["apply", "--allow-out-of-order"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", describe(&allowed));
    assert_eq!(db.scalar("SELECT to_regclass('early') IS NOT NULL"), "t");
}
