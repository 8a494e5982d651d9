//! Online batched stages (issue 13): while the memoir split runs in batches, the
//! application's changes to `chapters` are captured and split again, so writes
//! during the batches, behind the checkpoint, during catch-up, between a SIGKILL and
//! the resume, and during the cutover all end up in the migrated data, and the stage
//! completes. `planrun reset` abandons a half-done stage cleanly; `pause_while`
//! holds the batches.

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tests::app::{AppConfig, AppSimulator};
use planrun_tests::online_split::{
    assert_exactly_the_split_at_the_cutover, batched_plan_keeping_the_cutover_rows,
};
use planrun_tests::{
    describe, legacy_db, memoir_plan_edited, planrun_command, spawn_apply, stdout, TestDb,
};

/// `planrun_tests::wait_until` with this file's limit.
/// `planrun apply memoir.toml --no-backup --until split_chapters` in `dir`, waited for.
fn apply_until_split(dir: &Path, db: &TestDb) -> Output {
    run(
        dir,
        db,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--until",
            "split_chapters",
        ],
    )
}

fn wait_until_for(what: &str, condition: impl FnMut() -> bool) {
    planrun_tests::wait_until(what, Duration::from_secs(60), condition)
}

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

const UNTIL_SPLIT: [&str; 2] = ["--until", "split_chapters"];

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--database-url", &db.url]);
    planrun_command(PLANRUN, dir, &all).output().unwrap()
}

fn has_checkpoints(db: &TestDb) -> bool {
    db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t"
}

/// Waits until the batches have committed past chapter `key`.
fn wait_for_checkpoint(db: &TestDb, key: i64) {
    let passed = format!("SELECT coalesce((SELECT last_key FROM planrun.checkpoints), 0) >= {key}");
    wait_until_for(&format!("the batches pass chapter {key}"), || {
        has_checkpoints(db) && db.scalar(&passed) == "t"
    });
}

/// Waits until the batched stage has started, then checks that a second and a half
/// later it still has committed no batch: something holds it (`why`).
fn assert_batches_held(db: &TestDb, why: &str) {
    wait_until_for("the stage has started", || {
        has_checkpoints(db) && db.scalar("SELECT EXISTS (SELECT 1 FROM planrun.checkpoints)") == "t"
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        db.scalar("SELECT batches FROM planrun.checkpoints"),
        "0",
        "no batch while {why}"
    );
}

/// The run ended well and said on stderr why it waited.
fn assert_success_after_waiting(output: &Output, reason: &str) {
    assert_success(output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(reason), "{}", describe(output));
}

fn sections(db: &TestDb, chapter: i64) -> String {
    db.scalar(&format!(
        "SELECT coalesce(string_agg(content, ' | ' ORDER BY position), '') FROM chapter_sections WHERE chapter_id = {chapter}"
    ))
}

/// Nothing of the capture (triggers, functions, changes) is left once the stage is
/// done or reset.
fn assert_no_capture_left(db: &TestDb) {
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun_capture_%'"),
        "0"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_proc WHERE pronamespace = 'planrun'::regnamespace AND proname LIKE 'capture\\_%'"),
        "0",
        "no trigger function of the capture is left"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.changed_keys"), "0");
}

fn assert_success(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", describe(output));
}

/// Changes three chapters below the checkpoint: new content, images removed, and
/// one deleted.
fn change_behind(db: &TestDb) {
    db.execute("UPDATE chapters SET content = E'changed\\n\\nbehind the checkpoint' WHERE id = 50");
    db.execute("UPDATE chapters SET images = '[]' WHERE id = (SELECT min(id) FROM chapters WHERE id BETWEEN 60 AND 200 AND cover_image IS NOT NULL)");
    db.execute("DELETE FROM chapters WHERE id = 20");
}

fn assert_changes_behind_are_migrated(db: &TestDb) {
    assert_eq!(sections(db, 50), "changed | behind the checkpoint");
    assert_eq!(sections(db, 20), "", "a deleted chapter keeps no sections");
    assert_eq!(
        db.scalar("SELECT count(*) FROM chapter_sections s WHERE NOT EXISTS (SELECT 1 FROM chapters c WHERE c.id = s.chapter_id)"),
        "0"
    );
}

#[test]
fn writes_behind_the_checkpoint_are_split_again_and_the_stage_completes() {
    let db = legacy_db(2000);
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    // `-v`: the catch-up is a step of its own in the report.
    let child = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        &db,
        &["--until", "split_chapters", "-v"],
    );
    wait_for_checkpoint(&db, 300);
    change_behind(&db);
    let output = child.wait_with_output().unwrap();
    assert_success(&output);
    assert_changes_behind_are_migrated(&db);
    let text = stdout(&output);
    assert!(
        text.contains("catch-up: rows the application changed meanwhile"),
        "{text}"
    );
    assert_no_capture_left(&db);
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.checkpoints"), "0");
}

#[test]
fn the_application_writing_throughout_loses_nothing_and_the_result_is_the_spec_split_of_the_final_rows(
) {
    let db = legacy_db(3000);
    let plan = batched_plan_keeping_the_cutover_rows(r#"batch_size = 200, pause = "20ms""#, "");
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    let output = apply_until_split(plan.path(), &db);
    let log = app.stop();
    let lost = log.lost_writes(&mut db.client());
    assert!(
        lost.is_empty(),
        "{} committed writes lost:\n{}\n{}",
        lost.len(),
        lost.join("\n"),
        describe(&output)
    );
    assert_success(&output);
    assert!(log.committed_total() > 0, "{}", log.summary());
    assert_exactly_the_split_at_the_cutover(&db, "");
    assert_no_capture_left(&db);
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_resume_after_sigkill_redoes_what_the_application_changed_meanwhile() {
    let db = legacy_db(2000);
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    kill(child);
    wait_until_for("the killed session is gone", || {
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'planrun%'")
            == "0"
    });
    // While planrun is away: behind the checkpoint, and ahead of it.
    change_behind(&db);
    db.execute(
        "UPDATE chapters SET content = 'ahead of the checkpoint', images = '[]' WHERE id = 1500",
    );
    let status = run(plan.path(), &db, &["status", "memoir.toml"]);
    assert!(
        stdout(&status).contains("changes by the application to redo"),
        "{}",
        describe(&status)
    );
    let resumed = apply_until_split(plan.path(), &db);
    assert_success(&resumed);
    assert!(stdout(&resumed).contains("resumed after key"));
    assert_changes_behind_are_migrated(&db);
    assert_eq!(sections(&db, 1500), "ahead of the checkpoint");
    assert_no_capture_left(&db);
}

#[test]
fn reset_abandons_a_half_done_stage_cleanly_and_apply_starts_over() {
    let db = legacy_db(1500);
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    kill(child);
    change_behind(&db);

    let reset = run(
        plan.path(),
        &db,
        &["reset", "split_chapters", "memoir.toml"],
    );
    assert_success(&reset);
    assert!(
        stdout(&reset).contains("is abandoned"),
        "{}",
        describe(&reset)
    );
    assert_eq!(db.scalar("SELECT count(*) FROM chapter_sections"), "0");
    assert_eq!(
        db.scalar("SELECT count(*) FROM chapters WHERE cover_image IS NOT NULL"),
        "0"
    );
    assert_no_capture_left(&db);
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.checkpoints"), "0");
    assert_eq!(
        db.scalar("SELECT status FROM planrun.stage_results WHERE stage_id = 'split_chapters' ORDER BY id DESC LIMIT 1"),
        "reset"
    );
    let again = run(
        plan.path(),
        &db,
        &["reset", "split_chapters", "memoir.toml"],
    );
    assert_ne!(
        again.status.code(),
        Some(0),
        "nothing is half done any more"
    );

    let applied = apply_until_split(plan.path(), &db);
    assert_success(&applied);
    assert_changes_behind_are_migrated(&db);
}

/// A reset the database refuses (the transform's table is gone) exits as a database
/// error (1), as `apply` does, not as bad usage (2), and changes nothing; a reset
/// waits `--lock-wait` for the plan's lock held by another planrun, then exits
/// LOCKED (15), as `apply` does.
#[test]
fn a_reset_the_database_refuses_exits_as_apply_does_and_changes_nothing() {
    let db = legacy_db(1500);
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    kill(child);
    db.execute("ALTER TABLE chapter_sections RENAME TO chapter_sections_elsewhere");

    let refused = run(
        plan.path(),
        &db,
        &["reset", "split_chapters", "memoir.toml"],
    );
    assert_eq!(
        refused.status.code(),
        Some(exit_codes::ERROR),
        "{}",
        describe(&refused)
    );
    assert!(
        describe(&refused).contains("chapter_sections"),
        "the error names what the database refused: {}",
        describe(&refused)
    );
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.checkpoints"), "1");

    let mut holder = db.client();
    holder
        .execute(
            "SELECT pg_catalog.pg_advisory_lock($1::int4, $2::int4)",
            &[
                &0x706c_616e_i32,
                &planrun_engine::lock::plan_lock_key("memoir"),
            ],
        )
        .unwrap();
    let locked = run(
        plan.path(),
        &db,
        &[
            "reset",
            "split_chapters",
            "memoir.toml",
            "--lock-wait",
            "0.3",
        ],
    );
    assert_eq!(
        locked.status.code(),
        Some(exit_codes::LOCKED),
        "{}",
        describe(&locked)
    );
}

#[test]
fn pause_while_holds_the_batches_until_it_turns_false() {
    let db = legacy_db(600);
    db.execute("CREATE TABLE hold (flag boolean); INSERT INTO hold VALUES (true)");
    let plan = batched_plan(r#"batch_size = 100, pause_while = "SELECT flag FROM public.hold""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    assert_batches_held(&db, "pause_while holds");
    db.execute("UPDATE hold SET flag = false");
    let output = child.wait_with_output().unwrap();
    assert_success_after_waiting(
        &output,
        "waiting: the plan's pause_while query returns true",
    );
}

#[test]
fn replica_lag_holds_the_batches_until_the_replica_catches_up() {
    let db = legacy_db(600);
    let replica = db
        .cluster
        .start_replica()
        .expect("a streaming replica starts");
    replica
        .wait_until_streaming(Duration::from_secs(60))
        .expect("the replica streams");
    replica.pause_replay().unwrap();
    db.execute("CREATE TABLE wal_filler AS SELECT g FROM generate_series(1, 20000) g");
    wait_until_for("the replica lags more than a second", || {
        db.scalar("SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) > 1.5 FROM pg_stat_replication")
            == "t"
    });
    let plan = batched_plan(r#"batch_size = 100, max_replica_lag = "1s""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    assert_batches_held(&db, "the replica lags");
    replica.resume_replay().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_success_after_waiting(
        &output,
        &format!("waiting: replica {} replays", replica.application_name()),
    );
    replica
        .wait_until_caught_up(Duration::from_secs(60))
        .expect("the replica catches up");
    assert_eq!(
        replica
            .psql("planrun_test", "SELECT count(*) > 0 FROM chapter_sections")
            .unwrap()
            .trim(),
        "t"
    );
}

#[test]
fn a_transaction_open_too_long_holds_the_batches_until_it_ends() {
    let db = legacy_db(600);
    let mut idle = db.client();
    idle.batch_execute("BEGIN; SELECT 1").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let plan = batched_plan(r#"batch_size = 100, max_transaction_age = "1s""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    assert_batches_held(&db, "an old transaction is open");
    idle.batch_execute("COMMIT").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_success_after_waiting(&output, "has had a transaction open for");
}

/// The application's role owns nothing of planrun's and is no superuser: its writes
/// during a batched stage still work (the capture's function runs as planrun's role)
/// and are captured.
#[test]
fn an_application_role_without_privileges_on_the_ledger_writes_and_is_captured() {
    let db = legacy_db(2000);
    db.execute(
        "CREATE ROLE app_writer LOGIN NOSUPERUSER;
         GRANT SELECT, INSERT, UPDATE, DELETE ON chapters TO app_writer",
    );
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    let app_url = db.url.replacen("postgres@", "app_writer@", 1);
    assert_ne!(app_url, db.url, "the test URL names its user");
    let mut app = postgres::Client::connect(&app_url, postgres::NoTls).unwrap();
    app.execute(
        "UPDATE chapters SET content = 'written by the application role', images = '[]' WHERE id = 70",
        &[],
    )
    .expect("the application's role writes while the capture is in place");
    let refused = app.batch_execute("TRUNCATE chapters");
    assert!(
        refused.is_err(),
        "TRUNCATE of a source is refused meanwhile"
    );
    let output = child.wait_with_output().unwrap();
    assert_success(&output);
    assert_eq!(sections(&db, 70), "written by the application role");
    assert_no_capture_left(&db);
}

/// Overwrites the first section of chapter `chapter` as no transform would: a write
/// behind the split's back, which its verification must catch.
const CORRUPT_A_SECTION: &str = "UPDATE chapter_sections SET content = 'corrupted behind the transform' \
     WHERE id = (SELECT min(id) FROM chapter_sections WHERE chapter_id = (SELECT min(chapter_id) FROM chapter_sections WHERE content <> ''))";

/// The stage refused to commit for a failed check, and the legacy columns are
/// still there: nothing of the cutover committed.
fn assert_refused_by_its_checks(output: &Output, db: &TestDb) {
    assert_eq!(
        output.status.code(),
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(output)
    );
    assert!(
        describe(output).contains("section contents joined equal the legacy paragraphs"),
        "the failing check is named: {}",
        describe(output)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name = 'content'"),
        "1",
        "the cutover did not commit"
    );
}

/// Issue 23: the split's checks run per key, every key on a snapshot before the
/// cutover and the keys changed since under its locks. A section overwritten behind
/// the transform's back in a batch already done is a key changed since the batch:
/// the stage still refuses to commit.
#[test]
fn a_section_corrupted_in_a_batch_already_done_still_fails_the_online_split() {
    let db = legacy_db(2000);
    let plan = batched_plan(r#"batch_size = 100, pause = "100ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    db.execute(CORRUPT_A_SECTION);
    let output = child.wait_with_output().unwrap();
    assert_refused_by_its_checks(&output, &db);
}

/// Issue 23: a section overwritten by a transaction that commits while the cutover
/// waits for its locks, after the snapshot the keys were checked on, is checked
/// again under the locks: the stage still refuses to commit.
#[test]
fn a_section_corrupted_while_the_cutover_waits_still_fails_the_online_split() {
    refused_when_written_while_the_cutover_waits(CORRUPT_A_SECTION);
}

/// The capture of the watched `chapter_sections` records per statement (issue 23):
/// an application's `INSERT` of sections into two chapters already split, in one
/// statement, committed while the cutover waits, is checked again under its locks.
#[test]
fn sections_inserted_while_the_cutover_waits_still_fail_the_online_split() {
    refused_when_written_while_the_cutover_waits(
        "INSERT INTO chapter_sections (chapter_id, position, content)
         SELECT chapter_id, 1000, 'added behind the transform'
         FROM (SELECT DISTINCT chapter_id FROM chapter_sections ORDER BY 1 LIMIT 2) done",
    );
}

/// The same for a `DELETE` of a section of a chapter already split.
#[test]
fn a_section_deleted_while_the_cutover_waits_still_fails_the_online_split() {
    refused_when_written_while_the_cutover_waits(
        "DELETE FROM chapter_sections
         WHERE id = (SELECT min(id) FROM chapter_sections WHERE content <> '')",
    );
}

/// Runs the online split, makes `statement` commit while the cutover waits for
/// `chapter_sections`, and asserts that the checks under the locks refuse it.
fn refused_when_written_while_the_cutover_waits(statement: &str) {
    let db = legacy_db(1000);
    let plan = batched_plan(r#"batch_size = 100, pause = "50ms""#);
    let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", &db, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 300);
    let mut writer = db.client();
    let mut corrupting = writer.transaction().unwrap();
    corrupting.batch_execute(statement).unwrap();
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE NOT l.granted AND l.locktype = 'relation'
           AND l.relation = 'public.chapter_sections'::regclass
           AND a.application_name LIKE 'planrun%'";
    wait_until_for("the cutover waits for chapter_sections", || {
        db.scalar(waiting) != "0"
    });
    corrupting.commit().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_refused_by_its_checks(&output, &db);
    assert!(
        !describe(&output).contains("(on a snapshot before the cutover)"),
        "caught under the cutover's locks, not on the snapshot before: {}",
        describe(&output)
    );
}

/// Issue 23: with the checks per key, the online split's cutover checks only the
/// keys changed since the snapshot, and says so.
#[test]
fn the_online_split_checks_every_key_before_the_cutover_and_the_changed_ones_under_it() {
    let db = legacy_db(1000);
    let plan = batched_plan(r#"batch_size = 200"#);
    let output = run(
        plan.path(),
        &db,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--until",
            "split_chapters",
            "-v",
        ],
    );
    assert_success(&output);
    assert!(
        describe(&output).contains("7 checks passed for 1000 keys outside the cutover's locks"),
        "{}",
        describe(&output)
    );
    assert!(
        stdout(&output).contains("no rows (1000 keys before the cutover, 0 under its locks)"),
        "{}",
        describe(&output)
    );
    assert_no_capture_left(&db);
}

/// Issue 23: `planrun check` names the batched stage's checks that have no per-key
/// form, which run whole under the cutover's locks; the memoir split has two, both
/// cheap there: a count of chapters, and the witness's guard, which reads nothing when
/// no atomic split wrote a witness.
#[test]
fn check_names_the_checks_the_cutover_runs_whole() {
    let plan = batched_plan(r#"batch_size = 200"#);
    let output = planrun_command(PLANRUN, plan.path(), &["check", "memoir.toml"])
        .output()
        .unwrap();
    assert_success(&output);
    assert!(
        stdout(&output).contains(
            "note: stage `split_chapters` (batched): 2 checks after `memoir.split_chapters` have no `per_key_sql`, so they run whole under the cutover's locks: nothing wrote chapter_sections behind the split; no chapter lost"
        ),
        "{}",
        describe(&output)
    );
}
