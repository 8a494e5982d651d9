//! The memoir plan while the application keeps running (the spec's section "While the
//! application keeps running"): every committed application write ends up in the
//! migrated data or the stage fails with nothing committed; readers of `chapters` are
//! not frozen by a transform; a stage that cannot get its locks retries, then fails
//! naming who held them; stages 4 and 5 accept what the application changed between
//! stages and lose nothing of it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tests::app::{AppConfig, AppSimulator};
use planrun_tests::{
    describe, legacy_db, memoir_plan_edited, planrun_command, repo_root, spawn_apply, stdout,
    TestDb,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");
/// The advisory lock key a gated plan's stage waits on while it holds its locks.
const GATE: i64 = 4242;

fn apply(cwd: &Path, plan: &str, db: &TestDb, extra: &[&str]) -> Output {
    let mut args = vec!["apply", plan, "--no-backup", "--database-url", &db.url];
    args.extend(extra);
    planrun_command(PLANRUN, cwd, &args)
        .output()
        .expect("planrun runs")
}

/// Inserts `text` right after the first occurrence of `anchor`.
fn insert_after(text: String, anchor: &str, inserted: &str) -> String {
    let at = text.find(anchor).expect("anchor in the plan") + anchor.len();
    format!("{}{inserted}{}", &text[..at], &text[at..])
}

/// Replaces the plan's retry schedule, to keep failing tests short.
fn with_retries(text: String, retries: &str) -> String {
    let original = r#"lock_retries = { attempts = 10, delay = "1s", max_delay = "10s" }"#;
    assert!(
        text.contains(original),
        "the memoir plan's lock_retries changed"
    );
    text.replace(original, &format!("lock_retries = {retries}"))
}

/// The memoir plan whose split stage, after its transform, waits on advisory lock
/// `GATE` (still holding every lock the stage took).
fn split_gated_after_transform() -> tempfile::TempDir {
    memoir_plan_edited(|text| {
        insert_after(
            text,
            "transform = \"memoir.split_chapters\"\nparams = { on_invalid = \"fail\" }\n",
            &format!("\n[[stage.step]]\nname = \"test gate\"\nsql = \"SELECT pg_advisory_xact_lock({GATE})\"\n"),
        )
    })
}

/// `planrun apply` of the memoir plan held after its split transform, on advisory
/// lock `GATE`, with every lock of the stage still held.
struct GatedSplit {
    _plan: tempfile::TempDir,
    gate: postgres::Client,
    child: std::process::Child,
}

impl GatedSplit {
    fn start(db: &TestDb) -> GatedSplit {
        let plan = split_gated_after_transform();
        let mut gate = db.client();
        gate.batch_execute(&format!("SELECT pg_advisory_lock({GATE})"))
            .unwrap();
        // `-v`: the split step's notes say which keys stayed in place.
        let child = spawn_apply(PLANRUN, plan.path(), "memoir.toml", db, &["-v"]);
        wait_for_gate(db);
        GatedSplit {
            _plan: plan,
            gate,
            child,
        }
    }

    /// Lets the stage go on and waits for the apply to end.
    fn release(mut self) -> Output {
        self.gate
            .batch_execute(&format!("SELECT pg_advisory_unlock({GATE})"))
            .unwrap();
        self.child.wait_with_output().unwrap()
    }
}

/// Lock modes planrun's apply session holds on `table` now, sorted.
fn planrun_locks_on(db: &TestDb, table: &str) -> Vec<String> {
    db.column(&format!(
        "SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE a.application_name LIKE 'planrun apply%' AND l.granted \
           AND l.relation = '{table}'::regclass ORDER BY l.mode"
    ))
    .into_iter()
    .flatten()
    .collect()
}

/// Planrun holds EXCLUSIVE on the table (writers wait) and nothing that stops readers.
fn assert_strongest_is_exclusive(modes: &[String]) {
    assert!(
        modes.iter().any(|mode| mode == "ExclusiveLock")
            && !modes.iter().any(|mode| mode == "AccessExclusiveLock"),
        "{modes:?}"
    );
}

/// Waits until a planrun session waits on advisory lock `GATE`.
fn wait_for_gate(db: &TestDb) {
    let waiting = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {GATE} AND NOT granted"
    );
    for _ in 0..600 {
        if db.scalar(&waiting) == "1" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("planrun never reached the gate");
}

/// The split holds EXCLUSIVE on chapters from its start to its commit, and nothing
/// stronger once the transform has run: an application read goes through while the
/// stage is still open, and an application write waits (fails on a short lock
/// timeout). Before this change the transform's key rebuild held ACCESS EXCLUSIVE on
/// chapters, so the read waited for the whole stage.
#[test]
fn the_split_stops_writers_of_chapters_but_never_their_readers() {
    let db = legacy_db(300);
    let split = GatedSplit::start(&db);

    assert_strongest_is_exclusive(&planrun_locks_on(&db, "chapters"));
    let mut reader = db.client();
    reader
        .batch_execute("SET statement_timeout = '5s'")
        .unwrap();
    let title: String = reader
        .query_one("SELECT title FROM chapters WHERE id = 7", &[])
        .expect("an application read of chapters goes through during the split")
        .get(0);
    assert!(!title.is_empty());
    let mut writer = db.client();
    writer.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let write = writer.execute("UPDATE chapters SET content = 'late' WHERE id = 7", &[]);
    let code = write
        .expect_err("a write waits for the split")
        .code()
        .cloned();
    assert_eq!(code.map(|c| c.code().to_owned()).as_deref(), Some("55P03"));

    let output = split.release();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// The application runs through the whole plan (stages 1 to 5): reads, content and
/// image updates, inserts and deletes. Every write it saw commit is in the migrated
/// data, split by the spec's rules; the writes that came after the legacy columns went
/// failed in the application, as they must.
#[test]
fn no_committed_application_write_is_lost_by_the_whole_plan() {
    let db = legacy_db(1500);
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(
        app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3),
        "the application got going"
    );
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--include-optional"],
    );
    let log = app.stop();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(log.committed_total() > 0, "{}", log.summary());
    let lost = log.lost_writes(&mut db.client());
    assert!(
        lost.is_empty(),
        "{} committed writes lost:\n{}\n{}",
        lost.len(),
        lost.join("\n"),
        log.summary()
    );
}

/// A table of the new application that references chapter_sections(id) exists before
/// the split. The old DeferredConstraints tried to drop chapter_sections' key, failed
/// on the dependency, swallowed the error and split holding no lock on chapters; now
/// the key stays, the split still holds EXCLUSIVE on chapters, and writers wait.
#[test]
fn a_table_referencing_chapter_sections_keeps_the_split_locked() {
    let db = legacy_db(200);
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--until", "sections_schema"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    db.execute(
        "CREATE TABLE section_notes (id bigserial PRIMARY KEY,
                                     section_id bigint NOT NULL REFERENCES chapter_sections(id) ON DELETE CASCADE,
                                     note text)",
    );
    let split = GatedSplit::start(&db);
    assert_strongest_is_exclusive(&planrun_locks_on(&db, "chapters"));
    let mut writer = db.client();
    writer.batch_execute("SET lock_timeout = '300ms'").unwrap();
    assert!(writer
        .execute("UPDATE chapters SET content = 'lost?' WHERE id = 3", &[])
        .is_err());
    let output = split.release();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_constraint WHERE conrelid = 'section_notes'::regclass AND contype = 'f'"),
        "1"
    );
    assert!(
        stdout(&output)
            .contains("kept in place during the load: chapter_sections_pkey (another table's foreign key rests on it)"),
        "{}",
        describe(&output)
    );
}

/// An application session idle in a transaction that read chapters: the split's
/// EXCLUSIVE does not conflict with it, but dropping the legacy columns needs ACCESS
/// EXCLUSIVE. Each attempt gives up after lock_timeout, the schedule runs out, and the
/// stage fails naming the idle session, with nothing committed and no write lost;
/// other readers waited at most about one lock_timeout at a time. Once the session
/// ends, the same command finishes the job.
#[test]
fn an_idle_in_transaction_reader_fails_the_split_closed_and_names_itself() {
    let db = legacy_db(400);
    let plan = memoir_plan_edited(|text| {
        with_retries(
            text,
            r#"{ attempts = 3, delay = "200ms", max_delay = "200ms" }"#,
        )
    });
    let output = apply(
        plan.path(),
        "memoir.toml",
        &db,
        &["--until", "sections_schema"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let before = db.dump_application();

    let idle_url = format!("{}?application_name=idle-reporting-job", db.url);
    let mut idle = postgres::Client::connect(&idle_url, postgres::NoTls).unwrap();
    idle.batch_execute("BEGIN; SELECT count(*) FROM chapters;")
        .unwrap();
    let app = AppSimulator::start(
        &db.url,
        AppConfig {
            writers: 1,
            readers: 2,
            ..AppConfig::default()
        },
    );
    let output = apply(plan.path(), "memoir.toml", &db, &["--format", "json"]);
    let log = app.stop();
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let split = &report["stages"][1];
    assert_eq!(split["status"], "failed", "{report:#}");
    assert_eq!(split["error"]["sqlstate"], "55P03");
    let blockers = split["error"]["blocked_by"].to_string();
    assert!(blockers.contains("idle-reporting-job"), "{report:#}");
    assert!(
        split["lock_retries"].as_array().unwrap().len() >= 2,
        "{report:#}"
    );
    assert!(log.lost_writes(&mut db.client()).is_empty());
    assert_eq!(db.scalar("SELECT count(*) FROM chapter_sections"), "0");
    assert!(
        log.longest_read_wait < Duration::from_secs(3),
        "a reader waited {:?} behind the waiting DDL (lock_timeout is 500ms)",
        log.longest_read_wait
    );
    drop(before);

    idle.batch_execute("COMMIT").unwrap();
    let output = apply(plan.path(), "memoir.toml", &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(log.lost_writes(&mut db.client()).is_empty());
}

/// A writer holds a row lock on chapters for longer than lock_timeout. The split's
/// first attempt at EXCLUSIVE times out and says so, naming the writer; the test then
/// commits the writer, and the next attempt succeeds: the write is in the sections.
#[test]
fn the_retry_schedule_succeeds_once_a_short_blocker_goes_away() {
    let db = legacy_db(100);
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--until", "sections_schema"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let holder_url = format!("{}?application_name=app-slow-writer", db.url);
    let mut holder = postgres::Client::connect(&holder_url, postgres::NoTls).unwrap();
    holder
        .batch_execute(
            "BEGIN; UPDATE chapters SET content = E'held\\n\\nwrite', images = NULL WHERE id = 5;",
        )
        .unwrap();

    let mut child = spawn_apply(PLANRUN, &repo_root(), "plans/memoir.toml", &db, &[]);
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let retry_line = lines
        .by_ref()
        .map(|line| line.unwrap())
        .find(|line| line.contains("lock attempt 1/"))
        .expect("planrun reports its first failed attempt");
    assert!(retry_line.contains("app-slow-writer"), "{retry_line}");
    holder.batch_execute("COMMIT").unwrap();
    let rest: Vec<String> = lines.map(|line| line.unwrap()).collect();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        describe(&output),
        rest.join("\n")
    );
    assert_eq!(
        db.column("SELECT content FROM chapter_sections WHERE chapter_id = 5 ORDER BY position"),
        [Some("held".to_owned()), Some("write".to_owned())]
    );
}

/// The same writer never lets go: the schedule runs out, the stage fails naming it,
/// nothing of the split is committed, and the writer's commit afterwards is kept in
/// the legacy columns.
#[test]
fn a_blocker_that_stays_fails_the_stage_with_nothing_committed() {
    let db = legacy_db(100);
    let plan =
        memoir_plan_edited(|text| with_retries(text, r#"{ attempts = 2, delay = "100ms" }"#));
    let output = apply(
        plan.path(),
        "memoir.toml",
        &db,
        &["--until", "sections_schema"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let holder_url = format!("{}?application_name=app-stuck-writer", db.url);
    let mut holder = postgres::Client::connect(&holder_url, postgres::NoTls).unwrap();
    holder
        .batch_execute("BEGIN; UPDATE chapters SET content = 'kept' WHERE id = 9;")
        .unwrap();
    let output = apply(plan.path(), "memoir.toml", &db, &[]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let text = stdout(&output);
    assert!(text.contains("could not take the stage's locks"), "{text}");
    assert!(text.contains("app-stuck-writer"), "{text}");
    holder.batch_execute("COMMIT").unwrap();
    assert_eq!(db.scalar("SELECT count(*) FROM chapter_sections"), "0");
    assert_eq!(
        db.scalar("SELECT content FROM chapters WHERE id = 9"),
        "kept"
    );
}

/// Between stage 2 and stage 4 the application deletes a chapter with images, as is
/// its right. Stage 4 used to compare with the legacy counts and fail for ever; now it
/// conserves what it finds and says how much the application changed.
#[test]
fn stage_4_accepts_an_application_delete_and_reports_it() {
    let db = legacy_db(200);
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--until", "split_chapters"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let chapter = db.scalar(
        "SELECT c.id FROM chapters c WHERE c.cover_image IS NOT NULL \
         AND (SELECT count(*) FROM chapter_sections s WHERE s.chapter_id = c.id AND s.image IS NOT NULL) >= 2 \
         ORDER BY c.id LIMIT 1",
    );
    let images = db.scalar(&format!(
        "SELECT count(*) FROM chapter_sections WHERE chapter_id = {chapter} AND image IS NOT NULL"
    ));
    db.execute(&format!("DELETE FROM chapters WHERE id = {chapter}"));

    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let collect = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["id"] == "collect_images")
        .unwrap();
    assert_eq!(
        collect["captures"]["section_images_changed_by_application_since_split"],
        format!("-{images}")
    );
    assert_eq!(
        collect["captures"]["covers_changed_by_application_since_split"],
        "-1"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM memoir_images WHERE chapter_id = {chapter}"
        )),
        "0"
    );
}

/// After stage 4 the application replaces a section's photo (a new url and caption,
/// another key). Stage 5 used to drop chapter_sections.image with the change in it and
/// point image_id at the stale row; now it brings memoir_images up to date first.
#[test]
fn stage_5_loses_no_image_changed_after_stage_4() {
    let db = legacy_db(100);
    let output = apply(&repo_root(), "plans/memoir.toml", &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let section = db.scalar("SELECT min(id) FROM chapter_sections WHERE image IS NOT NULL");
    db.execute(&format!(
        "UPDATE chapter_sections SET image = '{{\"url\": \"replaced.jpg\", \"caption\": \"new\", \"w\": 640}}' WHERE id = {section}"
    ));
    db.execute(
        "INSERT INTO chapter_sections (chapter_id, position, content, image) \
         SELECT id, 1000, 'added by the application', '{\"url\": \"added.jpg\"}' FROM chapters ORDER BY id LIMIT 1",
    );

    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--include-optional"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar(&format!(
            "SELECT m.url || '|' || m.caption || '|' || m.meta::text FROM chapter_sections s \
             JOIN memoir_images m ON m.id = s.image_id WHERE s.id = {section}"
        )),
        r#"replaced.jpg|new|{"w": 640}"#
    );
    assert_eq!(
        db.scalar("SELECT m.url FROM chapter_sections s JOIN memoir_images m ON m.id = s.image_id WHERE s.position = 1000"),
        "added.jpg"
    );
}

/// `apply --dry-run` holds everything in one transaction until its final rollback, so
/// stage 1's ACCESS EXCLUSIVE on `chapters`, held for an instant in the real run,
/// would stop the application's readers through the split (issue 21, item 12). With
/// the application reading and writing, the dry run is refused before it starts,
/// saying which lock and pointing to `rehearse`: the application waits no longer than
/// the plan's `lock_budget` and nothing is changed.
#[test]
fn a_dry_run_that_would_hold_a_lock_blocking_the_application_past_its_stage_is_refused() {
    let db = legacy_db(600);
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    let output = apply(&repo_root(), "plans/memoir.toml", &db, &["--dry-run"]);
    let log = app.stop();
    eprintln!("{}", log.summary());
    assert_eq!(
        output.status.code(),
        Some(exit_codes::USAGE),
        "{}",
        describe(&output)
    );
    let text = describe(&output)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for expected in [
        "cannot dry-run without stopping the application",
        "`sections_schema` would hold ACCESS EXCLUSIVE on chapters through every stage after it, blocking the application's reads (lock_budget blocks_reads = 1s)",
        "planrun rehearse",
        "--hold-locks",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
    assert!(log.lost_writes(&mut db.client()).is_empty());
    // The memoir plan's lock_budget: blocks_reads 1s, blocks_writes 30s.
    assert!(
        log.longest_read_wait <= Duration::from_secs(1),
        "{}",
        log.summary()
    );
    assert!(
        log.longest_write_wait <= Duration::from_secs(30),
        "{}",
        log.summary()
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('public.chapter_sections') IS NULL"),
        "t"
    );
}
