//! Batched mode (`mode = "batched"` on `memoir.split_chapters`): every batch commits
//! with its checkpoint, a failed or killed run resumes after the last committed batch,
//! and the final rows equal those of a clean atomic run.

use std::path::Path;
use std::time::{Duration, Instant};

use planrun_engine::exit_codes;
use planrun_tests::{
    describe, legacy_db, memoir_plan_with, planrun, repo_path, spawn_apply, TestDb,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// `planrun apply -v`: the steps' notes (batches, where a re-run resumed) are shown.
fn apply(dir: &Path, db: &TestDb) -> std::process::Output {
    planrun(
        PLANRUN,
        dir,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "-v",
            "--database-url",
            &db.url,
        ],
        &[],
    )
}

/// What the migration produced, independent of serial ids and timestamps.
fn digest(db: &TestDb) -> (String, String, String) {
    (
        db.scalar(
            "SELECT md5(string_agg(chapter_id || ':' || position || ':' || content || ':' || coalesce(image::text, '-'), '|' \
             ORDER BY chapter_id, position)) FROM chapter_sections",
        ),
        db.scalar("SELECT md5(string_agg(id || ':' || coalesce(cover_image::text, '-'), '|' ORDER BY id)) FROM chapters"),
        db.scalar(
            "SELECT md5(string_agg(m.chapter_id || ':' || coalesce(s.position::text, 'cover') || ':' || m.url || ':' || \
             coalesce(m.caption, '-') || ':' || m.meta::text, '|' ORDER BY m.chapter_id, s.position NULLS FIRST)) \
             FROM memoir_images m LEFT JOIN chapter_sections s ON s.id = m.section_id",
        ),
    )
}

fn clean_run_digest(chapters: usize) -> (String, String, String) {
    let db = legacy_db(chapters);
    let output = planrun(
        PLANRUN,
        &repo_path(""),
        &[
            "apply",
            "plans/memoir.toml",
            "--no-backup",
            "--database-url",
            &db.url,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    digest(&db)
}

#[test]
fn batched_split_gives_the_rows_of_an_atomic_run() {
    let db = legacy_db(700);
    let plan = memoir_plan_with(r#"on_invalid = "fail", mode = "batched", batch_size = 97"#);
    let output = apply(plan.path(), &db);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("batched: 8 batches (first size 97, last 97)"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.checkpoints"),
        "0",
        "a finished stage leaves no checkpoint"
    );
    assert_eq!(digest(&db), clean_run_digest(700));
}

#[test]
fn a_failed_batch_keeps_earlier_batches_and_the_rerun_resumes() {
    let db = legacy_db(500);
    db.execute(r#"UPDATE chapters SET images = '[{"url": 5}]' WHERE id = 260"#);
    let plan = memoir_plan_with(r#"on_invalid = "fail", mode = "batched", batch_size = 50"#);
    let failed = apply(plan.path(), &db);
    assert_eq!(
        failed.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&failed)
    );
    let text = String::from_utf8_lossy(&failed.stdout).into_owned();
    assert!(
        text.contains("id 260") && text.contains("images[0].url"),
        "{text}"
    );
    assert!(
        text.contains("5 batches committed before this one; a re-run resumes after key 250"),
        "{text}"
    );
    assert_eq!(db.scalar("SELECT last_key FROM planrun.checkpoints"), "250");
    assert_eq!(
        db.scalar("SELECT max(chapter_id) <= 250 FROM chapter_sections"),
        "t"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT chapter_id) > 200 FROM chapter_sections"),
        "t"
    );
    let status = planrun(
        PLANRUN,
        plan.path(),
        &["status", "memoir.toml", "--database-url", &db.url],
        &[],
    );
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status_text.contains("partial"), "{status_text}");
    assert!(
        status_text.contains("5 batches committed, 250 of 500 rows read"),
        "{status_text}"
    );

    // Repair the row the way it was meant to be, then finish.
    let original = planrun_memoir::generate::chapter(11, 259).images;
    db.client()
        .execute(
            "UPDATE chapters SET images = $1::text::jsonb WHERE id = 260",
            &[&original],
        )
        .unwrap();
    let resumed = apply(plan.path(), &db);
    assert_eq!(resumed.status.code(), Some(0), "{}", describe(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains("resumed after key 250"),
        "{}",
        describe(&resumed)
    );
    assert_eq!(digest(&db), clean_run_digest(500));
}

#[test]
fn sigkill_in_the_middle_of_a_batched_split_loses_and_doubles_nothing() {
    let db = legacy_db(3_000);
    let plan = memoir_plan_with(
        r#"on_invalid = "fail", mode = "batched", batch_size = 150, pause = "60ms""#,
    );
    let mut child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ledger_ready =
            db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t";
        let batches = if ledger_ready {
            db.column("SELECT batches FROM planrun.checkpoints")
        } else {
            Vec::new()
        };
        if batches
            .first()
            .cloned()
            .flatten()
            .and_then(|b| b.parse::<i64>().ok())
            .unwrap_or(0)
            >= 3
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batched stage never committed three batches"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "planrun finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A commit already on the wire may still land: read only once planrun's sessions
    // are gone, and read the checkpoint and the rows in one snapshot.
    let gone = Instant::now() + Duration::from_secs(60);
    while db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'planrun%'")
        != "0"
    {
        assert!(
            Instant::now() < gone,
            "the killed planrun's sessions linger"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let state = db.scalar(
        "SELECT last_key || ' ' || (SELECT count(*) FROM chapter_sections s WHERE s.chapter_id > c.last_key) \
         FROM planrun.checkpoints c",
    );
    let (last_key, sections_after) = state.split_once(' ').unwrap();
    let last_key: i64 = last_key.parse().unwrap();
    assert!(last_key < 3_000, "killed before the end");
    assert_eq!(
        sections_after, "0",
        "the database holds exactly the committed batches"
    );
    let resumed = apply(plan.path(), &db);
    assert_eq!(resumed.status.code(), Some(0), "{}", describe(&resumed));
    assert_eq!(digest(&db), clean_run_digest(3_000));
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.stage_results WHERE stage_id = 'split_chapters' AND status = 'applied'"), "1");
}

/// A database copied from another cluster (a rehearsal's copy, a restored dump)
/// brings `planrun.own_transactions` with it: ids of that cluster's transactions,
/// which this cluster may not have reached yet. A batched stage clears the finished
/// ones on its way; an id from the future is not one of this cluster's, so it goes
/// too, instead of failing the stage ("transaction ID ... is in the future", seen in
/// `planrun rehearse --revert` of the memoir plan at 100k chapters).
#[test]
fn ids_of_another_cluster_s_transactions_left_in_the_copy_do_not_stop_a_batched_stage() {
    let db = legacy_db(300);
    db.execute(
        "CREATE SCHEMA IF NOT EXISTS planrun;
         CREATE TABLE planrun.own_transactions (xid xid8 PRIMARY KEY);
         INSERT INTO planrun.own_transactions
         VALUES ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000)::text::xid8)",
    );
    let plan = memoir_plan_with(r#"on_invalid = "fail", mode = "batched", batch_size = 97"#);
    let output = apply(plan.path(), &db);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_ne!(
        db.scalar("SELECT count(*) FROM chapter_sections"),
        "0",
        "the split ran"
    );
}
