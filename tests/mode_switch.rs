//! An online (batched) stage left half done, then applied atomically (issue 21, item
//! 2): the atomic apply removes the abandoned attempt's checkpoint, capture and
//! rows in its own transaction before it splits, `status` reports the ledger's
//! truth, and `reset` refuses a stage the ledger records as applied, deleting
//! nothing.

use std::path::Path;

use planrun_engine::exit_codes;
use planrun_tests::{describe, legacy_db, memoir_plan_with, planrun_on, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> std::process::Output {
    planrun_on(PLANRUN, dir, db, args)
}

/// What the split produced and kept: sections, covers, quarantined chapters.
fn split_counts(db: &TestDb) -> (String, String, String) {
    (
        db.scalar("SELECT count(*) FROM chapter_sections"),
        db.scalar("SELECT count(*) FROM chapters WHERE cover_image IS NOT NULL"),
        db.scalar("SELECT count(*) FROM planrun.memoir_quarantine"),
    )
}

fn capture_triggers(db: &TestDb) -> String {
    db.scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'chapters'::regclass AND tgname LIKE 'planrun_capture_%'",
    )
}

/// The issue's sequence: the online split fails on a bad row (in its first batch,
/// then after 5 batches), the application writes on, the step is switched to atomic
/// with quarantine and applied, then `reset` is run with the batched plan.
#[test]
fn an_atomic_apply_after_a_half_done_online_stage_leaves_nothing_reset_can_delete() {
    for bad_row in [20, 260] {
        switch_to_atomic_then_reset(bad_row);
    }
}

fn switch_to_atomic_then_reset(bad_row: i64) {
    let db = legacy_db(500);
    db.execute(&format!(
        r#"UPDATE chapters SET images = '[{{"url": 5}}]' WHERE id = {bad_row}"#
    ));
    let batched = memoir_plan_with(r#"on_invalid = "fail", mode = "batched", batch_size = 50"#);
    let failed = run(
        batched.path(),
        &db,
        &["apply", "memoir.toml", "--no-backup"],
    );
    assert_eq!(
        failed.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&failed)
    );
    assert_eq!(
        capture_triggers(&db),
        "5",
        "the half-done stage's capture: a row, three statement and a TRUNCATE trigger"
    );
    db.execute("UPDATE chapters SET content = content || ' (edited)' WHERE id IN (10, 300)");

    let atomic = memoir_plan_with(r#"on_invalid = "quarantine""#);
    let applied = run(
        atomic.path(),
        &db,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--until",
            "split_chapters",
        ],
    );
    assert_eq!(applied.status.code(), Some(0), "{}", describe(&applied));
    assert_eq!(capture_triggers(&db), "0", "no capture trigger on chapters");
    assert!(
        stdout(&applied).contains("the half-done batched attempt of run"),
        "the apply says it removed the abandoned attempt: {}",
        describe(&applied)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.checkpoints"),
        "0",
        "no checkpoint"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.changed_keys"),
        "0",
        "no recorded change"
    );
    let split = split_counts(&db);
    assert_eq!(
        db.scalar("SELECT string_agg(chapter_id::text, ',') FROM planrun.memoir_quarantine"),
        bad_row.to_string(),
        "the bad chapter is quarantined"
    );
    assert_eq!(
        db.scalar("SELECT string_agg(content, ' ' ORDER BY position) LIKE '%(edited)' FROM chapter_sections WHERE chapter_id = 300"),
        "t",
        "the application's edit is split"
    );

    let status = run(atomic.path(), &db, &["status", "memoir.toml"]);
    let shown = stdout(&status);
    let line = shown
        .lines()
        .find(|line| line.contains("split_chapters"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        line.contains("applied") && !line.contains("partial"),
        "{shown}"
    );
    assert!(
        shown.contains("half-done batched attempt of run"),
        "status notes what was removed: {shown}"
    );

    let reset = run(
        batched.path(),
        &db,
        &["reset", "split_chapters", "memoir.toml"],
    );
    assert_ne!(reset.status.code(), Some(0), "{}", describe(&reset));
    assert!(
        describe(&reset).contains("is applied"),
        "reset says why it refuses: {}",
        describe(&reset)
    );
    assert_eq!(split_counts(&db), split, "reset deleted nothing");
    assert_eq!(capture_triggers(&db), "0");
}

/// A database left by planrun before issue 21: the stage applied atomically, and
/// the batched attempt's checkpoint still beside it. `status` keeps the ledger's
/// `applied` and notes the checkpoint; `reset` refuses, deleting nothing.
#[test]
fn status_keeps_an_applied_stage_applied_beside_an_old_checkpoint_and_reset_refuses_it() {
    let db = legacy_db(200);
    let atomic = memoir_plan_with(r#"on_invalid = "quarantine""#);
    let applied = run(
        atomic.path(),
        &db,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--until",
            "split_chapters",
        ],
    );
    assert_eq!(applied.status.code(), Some(0), "{}", describe(&applied));
    db.execute(
        "INSERT INTO planrun.checkpoints (plan_name, stage_id, run_id, checksum, last_key, batches)
         VALUES ('memoir', 'split_chapters', 1, 'an earlier batched definition', 100, 2)",
    );
    let split = split_counts(&db);

    let status = run(atomic.path(), &db, &["status", "memoir.toml"]);
    let shown = stdout(&status);
    let line = shown
        .lines()
        .find(|line| line.contains("split_chapters"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        line.contains("applied") && !line.contains("partial"),
        "{shown}"
    );
    assert!(
        line.contains("checkpoint of an abandoned batched attempt (run 1, 2 batches)"),
        "{shown}"
    );

    let batched = memoir_plan_with(r#"on_invalid = "fail", mode = "batched", batch_size = 50"#);
    let reset = run(
        batched.path(),
        &db,
        &["reset", "split_chapters", "memoir.toml"],
    );
    assert_ne!(reset.status.code(), Some(0), "{}", describe(&reset));
    assert!(
        describe(&reset).contains("is applied"),
        "{}",
        describe(&reset)
    );
    assert_eq!(split_counts(&db), split, "reset deleted nothing");
}
