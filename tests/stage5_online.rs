//! Stage 5 of the memoir plan online (issue 23): `image_id` filled in batches beside
//! the application, which keeps replacing and removing sections' images; the sections it
//! changes are linked again before `image` is dropped, so no committed write is lost and
//! every section's `memoir_images` row equals its image as the cutover saw it; the
//! readers of `chapter_sections` wait only for the column drop. A `memoir_images` row
//! the application edits, before or after its section's batch, is carried into the
//! image rather than overwritten from it (issue 24).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tests::app::{AppConfig, SectionApp};
use planrun_tests::{
    describe, legacy_db, memoir_plan_edited, planrun_command, spawn_apply, wait_until, TestDb,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The plan's stage 5 batching, replaced by the tests.
const STAGE_5_PARAMS: &str =
    r#"params = { mode = "batched", batch_size = 5000, batch_target = "500ms" }"#;

fn apply(cwd: &Path, db: &TestDb, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "memoir.toml",
        "--no-backup",
        "--database-url",
        &db.url,
    ];
    args.extend(extra);
    planrun_command(PLANRUN, cwd, &args)
        .output()
        .expect("planrun runs")
}

/// The memoir plan with stage 5's batched step given `params` instead.
fn plan_with_stage_5(params: &str) -> tempfile::TempDir {
    memoir_plan_edited(|text| {
        assert!(text.contains(STAGE_5_PARAMS), "stage 5's params changed");
        text.replace(STAGE_5_PARAMS, &format!("params = {{ {params} }}"))
    })
}

/// A database after stages 1 to 4 of the memoir plan.
fn collected_db(chapters: usize, plan: &Path) -> TestDb {
    let db = legacy_db(chapters);
    let output = apply(plan, &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    db
}

/// The application replaces and removes sections' images while stage 5 runs in small
/// batches, paced so that it spans many of the application's writes. Every image it
/// saw commit is the section's `memoir_images` row afterwards, as is every image it did
/// not touch; the sections it changed behind the checkpoint were linked again; the key
/// is validated; its readers never waited a second.
#[test]
fn stage_5_online_keeps_every_image_the_application_commits_and_never_stops_its_readers() {
    let plan = plan_with_stage_5(r#"mode = "batched", batch_size = 300, pause = "20ms""#);
    let db = collected_db(1500, plan.path());
    let app = SectionApp::start(
        &db.url,
        AppConfig {
            writers: 2,
            readers: 2,
            pause: Duration::from_millis(2),
            ..AppConfig::default()
        },
    );
    assert!(
        app.wait_for(20, 20, Duration::from_secs(60)),
        "the application got going"
    );
    let output = apply(
        plan.path(),
        &db,
        &["--include-optional", "--format", "json"],
    );
    let log = app.stop();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        describe(&output),
        log.summary()
    );

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let stage = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["id"] == "section_image_fk")
        .expect("stage 5 reported");
    assert_eq!(stage["status"], "applied", "{stage}");
    let catch_up = stage["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["kind"] == "catch-up")
        .expect("a catch-up step");
    assert!(
        catch_up["rows_read"].as_u64().unwrap() > 0,
        "the application changed sections behind the checkpoint: {catch_up}\n{}",
        log.summary()
    );

    assert!(log.writes > 0, "{}", log.summary());
    let lost = log.lost_images(&mut db.client());
    assert!(
        lost.is_empty(),
        "{} committed images lost:\n{}\n{}",
        lost.len(),
        lost.join("\n"),
        log.summary()
    );
    assert_eq!(
        db.scalar(
            "SELECT (SELECT count(*) FROM memoir_images WHERE section_id IS NOT NULL)
                  = (SELECT count(*) FROM chapter_sections WHERE image_id IS NOT NULL)"
        ),
        "t",
        "no memoir_images row of a section is left unpointed"
    );
    assert_eq!(
        db.scalar(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'chapter_sections_image_id_fkey'"
        ),
        "t"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun\\_capture\\_%'"),
        "0"
    );
    assert!(
        log.longest_read_wait < Duration::from_secs(1),
        "{}",
        log.summary()
    );
}

/// A section's `memoir_images` row is changed by the application after the batch that
/// linked its section, its JSON left alone, while the stage waits between batches
/// (issue 24). The change capture watches `memoir_images` by `section_id`, so the
/// section is linked again in a catch-up pass or at the cutover, and the edit is carried
/// into the JSON rather than overwritten from it: the stage commits and the section
/// points at the row the application wrote. (Before: the cutover's check of every
/// section against its image refused the stage, exit 12.)
#[test]
fn a_row_edited_after_its_batch_is_carried_and_kept() {
    let plan = plan_with_stage_5(
        r#"mode = "batched", batch_size = 200, pause_while = "SELECT EXISTS (SELECT FROM public.chapter_sections WHERE image_id IS NOT NULL) AND (SELECT flag FROM public.hold)""#,
    );
    let db = collected_db(300, plan.path());
    db.execute("CREATE TABLE public.hold (flag boolean); INSERT INTO public.hold VALUES (true)");
    let child = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        &db,
        &["--include-optional"],
    );
    wait_until(
        "the first batch of stage 5 committed",
        Duration::from_secs(120),
        || {
            db.scalar(
                "SELECT coalesce((SELECT batches FROM planrun.checkpoints
                                  WHERE stage_id = 'section_image_fk'), 0)",
            ) != "0"
        },
    );
    let section = db.scalar("SELECT min(id) FROM chapter_sections WHERE image_id IS NOT NULL");
    db.execute(&format!(
        "UPDATE memoir_images SET url = 'swapped.jpg' WHERE section_id = {section};
         UPDATE public.hold SET flag = false"
    ));
    let output = child.wait_with_output().expect("planrun finishes");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar(&format!(
            "SELECT m.url FROM chapter_sections s JOIN memoir_images m ON m.id = s.image_id
             WHERE s.id = {section}"
        )),
        "swapped.jpg",
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'chapter_sections' AND column_name = 'image'"
        ),
        "0"
    );
}

/// Issue 24: a `memoir_images` row the application edits while stage 5 runs online,
/// in a section whose batch is still to come and whose JSON it leaves alone, is carried
/// into the JSON by that batch (`memoir.link_section_images`) rather than overwritten
/// from it: the section points at the row with the application's caption. (Before the
/// fix: exit 0, the caption back to the JSON's.)
#[test]
fn a_row_edited_before_its_batch_during_stage_5_is_not_overwritten() {
    let plan = plan_with_stage_5(
        r#"mode = "batched", batch_size = 200, pause_while = "SELECT EXISTS (SELECT FROM public.chapter_sections WHERE image_id IS NOT NULL) AND (SELECT flag FROM public.hold)""#,
    );
    let db = collected_db(300, plan.path());
    db.execute("CREATE TABLE public.hold (flag boolean); INSERT INTO public.hold VALUES (true)");
    let child = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        &db,
        &["--include-optional"],
    );
    wait_until(
        "the first batch of stage 5 committed",
        Duration::from_secs(120),
        || {
            db.scalar(
                "SELECT coalesce((SELECT batches FROM planrun.checkpoints
                                  WHERE stage_id = 'section_image_fk'), 0)",
            ) != "0"
        },
    );
    let section = db.scalar(
        "SELECT max(s.id) FROM chapter_sections s
         WHERE s.image_id IS NULL AND EXISTS (SELECT FROM memoir_images m WHERE m.section_id = s.id)",
    );
    db.execute(&format!(
        "UPDATE memoir_images SET caption = 'edited while stage 5 runs' WHERE section_id = {section};
         UPDATE public.hold SET flag = false"
    ));
    let output = child.wait_with_output().expect("planrun finishes");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar(&format!(
            "SELECT m.caption FROM chapter_sections s JOIN memoir_images m ON m.id = s.image_id
             WHERE s.id = {section}"
        )),
        "edited while stage 5 runs",
        "{}",
        describe(&output)
    );
}

/// Issue 24: an image the application changes on both sides while stage 5's batches
/// run, before its section's batch, differently (its `memoir_images` row one caption,
/// its JSON another), cannot be carried: the batch fails, naming the section, and
/// `image` stays. Once the application makes both say the same, applying again resumes
/// the stage and keeps that image.
#[test]
fn an_image_changed_on_both_sides_during_stage_5_stops_it_naming_the_section() {
    let plan = plan_with_stage_5(
        r#"mode = "batched", batch_size = 200, pause_while = "SELECT EXISTS (SELECT FROM public.chapter_sections WHERE image_id IS NOT NULL) AND (SELECT flag FROM public.hold)""#,
    );
    let db = collected_db(300, plan.path());
    db.execute("CREATE TABLE public.hold (flag boolean); INSERT INTO public.hold VALUES (true)");
    let child = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        &db,
        &["--include-optional"],
    );
    wait_until(
        "the first batch of stage 5 committed",
        Duration::from_secs(120),
        || {
            db.scalar(
                "SELECT coalesce((SELECT batches FROM planrun.checkpoints
                                  WHERE stage_id = 'section_image_fk'), 0)",
            ) != "0"
        },
    );
    let section = db.scalar(
        "SELECT max(s.id) FROM chapter_sections s
         WHERE s.image_id IS NULL AND EXISTS (SELECT FROM memoir_images m WHERE m.section_id = s.id)",
    );
    db.execute(&format!(
        "UPDATE memoir_images SET caption = 'row side' WHERE section_id = {section};
         UPDATE chapter_sections SET image = image || '{{\"caption\": \"json side\"}}' WHERE id = {section};
         UPDATE public.hold SET flag = false"
    ));
    let output = child.wait_with_output().expect("planrun finishes");
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let text = describe(&output);
    assert!(text.contains(&format!("id {section}")), "{text}");
    assert!(text.contains("both in the JSON and in its"), "{text}");
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'chapter_sections' AND column_name = 'image'"
        ),
        "1"
    );

    db.execute(&format!(
        "UPDATE memoir_images SET caption = 'json side' WHERE section_id = {section}"
    ));
    let output = apply(plan.path(), &db, &["--include-optional"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar(&format!(
            "SELECT m.caption FROM chapter_sections s JOIN memoir_images m ON m.id = s.image_id
             WHERE s.id = {section}"
        )),
        "json side"
    );
}

/// Whole-table reads of `chapter_sections` so far, as the server counts them, once
/// every planrun session has ended (a session's counts reach the statistics when it
/// exits).
fn section_seq_scans(db: &TestDb) -> i64 {
    wait_until("planrun's sessions ended", Duration::from_secs(30), || {
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'planrun%'")
            == "0"
    });
    db.scalar(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'public.chapter_sections'::regclass",
    )
    .parse()
    .expect("a count")
}

/// The application removed many sections' images after stage 4, so the batches delete
/// as many `memoir_images` rows. Nothing indexes `chapter_sections.image_id`: had the
/// key on it been in place during the batches, its `ON DELETE SET NULL` would have read
/// the whole sections table once per deleted row (at 100k chapters, 0.1 s each, which
/// is how the batches fell behind the application, docs/performance.md). The stage reads
/// the table whole a few times, however many images went, and loses none of them.
#[test]
fn removed_images_cost_stage_5_no_read_of_every_section_each() {
    let plan = plan_with_stage_5(r#"mode = "batched", batch_size = 5000"#);
    let db = collected_db(300, plan.path());
    db.execute(
        "UPDATE chapter_sections SET image = NULL
         WHERE id IN (SELECT id FROM chapter_sections WHERE image IS NOT NULL ORDER BY id LIMIT 400)",
    );
    let before = section_seq_scans(&db);
    let output = apply(plan.path(), &db, &["--include-optional"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let scans = section_seq_scans(&db) - before;
    assert!(
        scans < 100,
        "stage 5 read every section {scans} times for 400 removed images"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM memoir_images m
             WHERE m.section_id IS NOT NULL
               AND NOT EXISTS (SELECT FROM chapter_sections s WHERE s.image_id = m.id)"
        ),
        "0",
        "every removed image's memoir_images row is gone"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM chapter_sections WHERE image_id IS NOT NULL"),
        db.scalar("SELECT count(*) FROM planrun.memoir_section_images"),
    );
}
