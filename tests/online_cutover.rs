//! The online split's cutover at a cost that follows the changes, not the table
//! (issue 23): `memoir.keep_legacy`, the step after the batched split, is made key by
//! key (`Transform::per_key_inputs`, `online/follow_up.rs`): in batches before the
//! cutover, outside its locks, and under them only for the keys changed since. What
//! the way back keeps must still be every chapter as it ends, with the digest of its
//! final split, whenever the application changed it.

use std::process::Output;
use std::time::Duration;

use planrun_tests::{describe, legacy_db, memoir_plan_edited, spawn_apply, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The memoir plan with the split batched with `params` added.
fn batched_plan(params: &str) -> tempfile::TempDir {
    memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            &format!(r#"params = {{ on_invalid = "fail", mode = "batched", {params} }}"#),
        )
    })
}

/// `-v`: each step is in the report, with its notes.
const UNTIL_SPLIT: [&str; 3] = ["--until", "split_chapters", "-v"];

fn wait_until_for(what: &str, condition: impl FnMut() -> bool) {
    planrun_tests::wait_until(what, Duration::from_secs(60), condition)
}

/// Waits until the batches have committed past chapter `key`.
fn wait_for_checkpoint(db: &TestDb, key: i64) {
    let passed = format!("SELECT coalesce((SELECT last_key FROM planrun.checkpoints), 0) >= {key}");
    wait_until_for(&format!("the batches pass chapter {key}"), || {
        db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t"
            && db.scalar(&passed) == "t"
    });
}

fn assert_success(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", describe(output));
}

/// The chapters whose kept digest is not the digest of their sections and cover
/// now (`memoir.keep_legacy`'s own formula): the way back would write them from
/// their sections instead of giving their legacy values back byte for byte.
const STALE_DIGESTS: &str = "
SELECT count(*) FROM planrun.memoir_legacy l
JOIN chapters c ON c.id = l.chapter_id
LEFT JOIN (SELECT chapter_id,
                  string_agg(position || ':' || md5(content) || ':' || coalesce(image::text, '-'), ','
                             ORDER BY position) AS digest_part
           FROM chapter_sections GROUP BY chapter_id) s ON s.chapter_id = c.id
WHERE l.split_digest <> md5(coalesce(c.cover_image::text, '-') || '|' || coalesce(s.digest_part, ''))";

/// Every chapter kept once, none that is gone, each with its final digest, and the
/// step says it was made key by key.
fn assert_kept_as_they_end(output: &Output, db: &TestDb) {
    assert_success(output);
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.memoir_legacy"),
        db.scalar("SELECT count(*) FROM chapters"),
        "one kept row per chapter"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.memoir_legacy l WHERE NOT EXISTS (SELECT FROM chapters c WHERE c.id = l.chapter_id)"),
        "0",
        "a deleted chapter keeps nothing"
    );
    assert_eq!(
        db.scalar(STALE_DIGESTS),
        "0",
        "every digest is the final split's"
    );
    assert!(
        stdout(output).contains("made key by key"),
        "{}",
        describe(output)
    );
}

fn kept_content(db: &TestDb, chapter: i64) -> String {
    db.scalar(&format!(
        "SELECT coalesce(content, '<none>') FROM planrun.memoir_legacy WHERE chapter_id = {chapter}"
    ))
}

/// A chapter changed in a batch already done, one deleted, one inserted, while the
/// split runs: the legacy copy holds each as it ends.
#[test]
fn the_legacy_copy_made_key_by_key_keeps_each_chapter_as_it_ends() {
    let db = legacy_db(2000);
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    db.execute("UPDATE chapters SET content = E'changed\\n\\nbehind the checkpoint' WHERE id = 50");
    db.execute("DELETE FROM chapters WHERE id = 20");
    db.execute("INSERT INTO chapters (id, memoir_id, position, title, content) SELECT 100000, memoir_id, 100000, 'new', 'written meanwhile' FROM chapters WHERE id = 60");
    let output = child.wait_with_output().unwrap();
    assert_kept_as_they_end(&output, &db);
    assert_eq!(kept_content(&db, 50), "changed\n\nbehind the checkpoint");
    assert_eq!(kept_content(&db, 100000), "written meanwhile");
    assert_eq!(
        kept_content(&db, 20),
        "NULL",
        "no row for a deleted chapter"
    );
}

/// A chapter changed by a transaction that commits while the cutover waits for its
/// locks, after the snapshot before it: redone under the locks, and kept as it ends.
#[test]
fn a_chapter_changed_while_the_cutover_waits_is_kept_as_it_ends() {
    let db = legacy_db(1000);
    let plan = batched_plan(r#"batch_size = 100, pause = "50ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    let mut writer = db.client();
    let mut changing = writer.transaction().unwrap();
    changing
        .batch_execute(
            "UPDATE chapters SET content = 'changed while the cutover waits' WHERE id = 40",
        )
        .unwrap();
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE NOT l.granted AND l.locktype = 'relation'
           AND l.relation = 'public.chapters'::regclass
           AND a.application_name LIKE 'planrun%'";
    wait_until_for("the cutover waits for chapters", || {
        db.scalar(waiting) != "0"
    });
    changing.commit().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_kept_as_they_end(&output, &db);
    assert_eq!(kept_content(&db, 40), "changed while the cutover waits");
}
