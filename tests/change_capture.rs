//! The change capture of batched stages (issue 20): while it is installed on
//! `chapters`, the application's writes run no code another role controls with
//! planrun's privileges, never fail because of what a row holds, and their keys are
//! captured and redone.
//!
//! Each test holds the batched split with `pause_while` right after its first
//! transaction, which commits the checkpoint and the capture together, so the
//! application's writes meet the capture, deterministically, before any batch.

use std::process::{Child, Output};
use std::time::Duration;

use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_tests::app::{AppConfig, AppSimulator};
use planrun_tests::{describe, memoir_plan_edited, spawn_apply, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// A database with the memoir's legacy schema and 600 chapters, and a `hold` flag
/// that keeps the batched split from starting its batches.
fn held_legacy_db() -> TestDb {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).expect("the legacy schema");
    load_legacy(&mut client, 11, 600, ImagesType::Jsonb).expect("the legacy chapters");
    db.execute("CREATE TABLE hold (flag boolean); INSERT INTO hold VALUES (true)");
    db
}

/// `planrun apply --until split_chapters` with the split batched, started in the
/// background; returns once the stage's first transaction committed, so the capture
/// is on `chapters` and no batch runs until [`release`].
fn start_held_split(db: &TestDb) -> (tempfile::TempDir, Child) {
    start_split_held_while(db, "SELECT flag FROM public.hold", "true")
}

/// Like [`start_held_split`], but the batches hold once one of them committed, so
/// that the first 100 chapters are split when the application writes them; returns
/// once that batch committed.
fn start_split_held_after_its_first_batch(db: &TestDb) -> (tempfile::TempDir, Child) {
    start_split_held_while(
        db,
        "SELECT flag AND EXISTS (SELECT 1 FROM public.chapter_sections) FROM public.hold",
        "(SELECT last_key IS NOT NULL FROM planrun.checkpoints)",
    )
}

/// The batched split, held while `pause_while` holds; returns once its first
/// transaction committed and `started` holds.
fn start_split_held_while(
    db: &TestDb,
    pause_while: &str,
    started: &str,
) -> (tempfile::TempDir, Child) {
    let plan = memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            &format!(
                r#"params = {{ on_invalid = "fail", mode = "batched", batch_size = 100, pause_while = "{pause_while}" }}"#
            ),
        )
    });
    let child = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        db,
        &["--until", "split_chapters"],
    );
    planrun_tests::wait_until(
        "the batched stage has started",
        Duration::from_secs(60),
        || {
            db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t"
                && db.scalar("SELECT EXISTS (SELECT 1 FROM planrun.checkpoints)") == "t"
                && db.scalar(&format!("SELECT {started}")) == "t"
        },
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'chapters'::regclass AND tgname LIKE 'planrun_capture_%' AND tgname NOT LIKE '%_truncate'"),
        "4",
        "the capture is installed on chapters: a row trigger (replica sessions) and one per statement for each of INSERT, UPDATE, DELETE"
    );
    (plan, child)
}

/// The capture's trigger functions in the `planrun` schema.
const CAPTURE_FUNCTIONS: &str =
    "FROM pg_proc WHERE pronamespace = 'planrun'::regnamespace AND proname LIKE 'capture\\_%'";

/// Lets the held batches run, waits for the apply to finish, and checks that the
/// capture left nothing behind.
fn release(db: &TestDb, child: Child) -> Output {
    db.execute("UPDATE hold SET flag = false");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun_capture_%'"),
        "0"
    );
    assert_eq!(
        db.scalar(&format!("SELECT count(*) {CAPTURE_FUNCTIONS}")),
        "0"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.changed_keys"), "0");
    output
}

fn sections(db: &TestDb, chapter: i64) -> String {
    db.scalar(&format!(
        "SELECT coalesce(string_agg(content, ' | ' ORDER BY position), '') FROM chapter_sections WHERE chapter_id = {chapter}"
    ))
}

fn captured(db: &TestDb, chapter: i64) -> bool {
    db.scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM planrun.changed_keys WHERE key = {chapter})"
    )) == "t"
}

fn connect_as(db: &TestDb, role: &str) -> postgres::Client {
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names its user");
    postgres::Client::connect(&url, postgres::NoTls).unwrap()
}

/// The application's role owns `app_owned.mood`, the type of a column of `chapters`,
/// and a cast of it to json whose function makes the role a superuser when it runs
/// as one. It writes the chapter while the capture is installed: the capture runs
/// no conversion, so the cast never runs with planrun's privileges.
#[test]
fn a_cast_the_application_role_owns_never_runs_as_planrun_during_the_capture() {
    let db = held_legacy_db();
    db.execute(
        "CREATE ROLE app_writer LOGIN NOSUPERUSER;
         GRANT SELECT, INSERT, UPDATE, DELETE ON chapters TO app_writer;
         CREATE SCHEMA app_owned AUTHORIZATION app_writer;",
    );
    let mut app = connect_as(&db, "app_writer");
    app.batch_execute(
        "CREATE TYPE app_owned.mood AS ENUM ('calm', 'bold');
         CREATE TABLE app_owned.witness (who text, superuser boolean);
         CREATE FUNCTION app_owned.mood_json(app_owned.mood) RETURNS json
         LANGUAGE plpgsql AS $f$
         BEGIN
             INSERT INTO app_owned.witness
             SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
             IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                 ALTER ROLE app_writer SUPERUSER;
             END IF;
             RETURN to_json($1::text);
         END
         $f$;
         CREATE CAST (app_owned.mood AS json) WITH FUNCTION app_owned.mood_json(app_owned.mood);",
    )
    .expect("the application's role creates its type, function and cast");
    db.execute(
        "ALTER TABLE chapters ADD COLUMN mood app_owned.mood; UPDATE chapters SET mood = 'calm'",
    );

    let (_plan, child) = start_held_split(&db);
    app.execute(
        "UPDATE chapters SET content = 'written by the application role', mood = 'bold' WHERE id = 70",
        &[],
    )
    .expect("the application's write succeeds");

    assert_eq!(
        db.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = 'app_writer'"),
        "f",
        "the application's role is no superuser after its write"
    );
    assert_eq!(
        db.column("SELECT who || ' superuser=' || superuser FROM app_owned.witness WHERE who <> 'app_writer'"),
        Vec::<Option<String>>::new(),
        "the cast's function never ran as another role"
    );
    assert!(captured(&db, 70), "the write's key is captured");
    assert_eq!(
        db.column(&format!(
            "SELECT prosecdef || ' ' || pg_get_userbyid(proowner) || ' ' || has_function_privilege('app_writer', oid, 'EXECUTE') {CAPTURE_FUNCTIONS}"
        )),
        vec![Some("true postgres false".to_owned()); 4],
        "two functions per table (per row and per statement; chapters, and chapter_sections watched by the per-key checks), each SECURITY DEFINER, owned by planrun's role, not executable by the application's"
    );
    release(&db, child);
    assert_eq!(sections(&db, 70), "written by the application role");
}

/// Values a `json` column holds and `jsonb` cannot: NUL, a lone surrogate, a number
/// beyond `numeric`.
const NOT_JSONB: [&str; 3] = [r#"["\u0000"]"#, r#"["\ud800"]"#, "[1e999999]"];

/// Rows holding those values are updated and deleted by the application while the
/// capture is installed: every write succeeds, its key is captured, and the stage
/// redoes it.
#[test]
fn application_writes_of_rows_jsonb_cannot_hold_succeed_and_are_captured() {
    let db = held_legacy_db();
    db.execute("ALTER TABLE chapters ADD COLUMN notes json");
    let updated = [101_i64, 102, 103];
    let deleted = [111_i64, 112, 113];
    for (value, (update, delete)) in NOT_JSONB.iter().zip(updated.iter().zip(&deleted)) {
        let literal = value.replace('\'', "''");
        db.execute(&format!(
            "UPDATE chapters SET notes = '{literal}' WHERE id IN ({update}, {delete})"
        ));
    }

    let (_plan, child) = start_held_split(&db);
    let mut app = db.client();
    let mut failures = Vec::new();
    for (update, delete) in updated.iter().zip(&deleted) {
        let content = format!("updated {update}");
        let statements = [
            format!("UPDATE chapters SET content = '{content}', images = '[]' WHERE id = {update}"),
            format!("DELETE FROM chapters WHERE id = {delete}"),
        ];
        for statement in statements {
            if let Err(error) = app.batch_execute(&statement) {
                failures.push(format!("{statement}: {error:?}"));
            }
        }
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "every application write succeeds"
    );
    for key in updated.iter().chain(&deleted) {
        assert!(captured(&db, *key), "the key {key} is captured");
    }

    release(&db, child);
    for key in updated {
        assert_eq!(sections(&db, key), format!("updated {key}"));
    }
    for key in deleted {
        assert_eq!(
            sections(&db, key),
            "",
            "a deleted chapter keeps no sections"
        );
    }
}

/// A key column of a type other than pg_catalog's integers (here a domain over
/// bigint, whose checks are code its owner wrote) is refused before the stage
/// starts: the stage fails, saying why; nothing is installed and nothing migrated.
#[test]
fn a_source_key_that_is_not_a_builtin_integer_is_refused_and_nothing_is_installed() {
    let db = held_legacy_db();
    db.execute(
        "CREATE DOMAIN chapter_key AS bigint CHECK (VALUE > 0);
         ALTER TABLE chapters ALTER COLUMN id TYPE chapter_key",
    );
    let plan = memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            r#"params = { on_invalid = "fail", mode = "batched", batch_size = 100 }"#,
        )
    });
    let output = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        &db,
        &["--until", "split_chapters"],
    )
    .wait_with_output()
    .unwrap();
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    let report = describe(&output);
    assert!(
        report.contains("split_chapters    FAILED")
            && report.contains(
                "its key column `id` is of type public.chapter_key, not smallint, integer or bigint"
            ),
        "{report}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun_capture_%'"),
        "0"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM chapter_sections"), "0");
}

/// Two chapters among the first 100 (split by the first batch) with more than one
/// image.
fn two_chapters_with_images(db: &TestDb) -> Vec<i64> {
    db.column(
        "SELECT id FROM chapters WHERE id <= 100
           AND CASE WHEN jsonb_typeof(images) = 'array' THEN jsonb_array_length(images) ELSE 0 END > 1
         ORDER BY id LIMIT 2",
    )
    .into_iter()
    .map(|id| id.unwrap().parse().unwrap())
    .collect()
}

/// Gives each of the chapters `ids` as many new images as it had: the counts the
/// split stage captures stay the same, only the images change.
fn replace_images_keeping_counts(app: &mut postgres::Client, ids: &[i64]) {
    let replaced = app
        .execute(
            "UPDATE chapters c SET images = (
                 SELECT jsonb_agg(jsonb_build_object('url', 'replaced-' || c.id || '-' || n || '.jpg') ORDER BY n)
                 FROM jsonb_array_elements(c.images) WITH ORDINALITY e(element, n))
             WHERE c.id = ANY($1)",
            &[&ids],
        )
        .expect("the images are replaced");
    assert_eq!(replaced, 2, "two chapters with images");
}

/// Each of the chapters `replaced` (by [`replace_images_keeping_counts`]) ends split
/// from its new images: its sections and its cover hold them.
fn assert_split_from_their_new_images(db: &TestDb, replaced: &[i64]) {
    for &key in replaced {
        let (images, cover) = split_images(db, key);
        assert!(
            images
                .split(' ')
                .all(|url| url.starts_with(&format!("replaced-{key}-"))),
            "chapter {key}'s sections hold its new images: {images}"
        );
        assert_eq!(
            cover,
            format!("replaced-{key}-1.jpg"),
            "chapter {key}'s cover"
        );
    }
}

/// The images of a chapter's sections in order, and its cover.
fn split_images(db: &TestDb, chapter: i64) -> (String, String) {
    (
        db.scalar(&format!(
            "SELECT coalesce(string_agg(image->>'url', ' ' ORDER BY image->>'url'), '') FROM chapter_sections WHERE chapter_id = {chapter} AND image IS NOT NULL"
        )),
        db.scalar(&format!(
            "SELECT coalesce(cover_image->>'url', '-') FROM chapters WHERE id = {chapter}"
        )),
    )
}

/// A session with `session_replication_role = replica` (what a logical-replication
/// subscription's apply worker runs with, and what bulk tools set to skip triggers)
/// replaces the images of two chapters the first batch split, keeping their counts,
/// while the batched split is held: the capture fires for it all the same, and the
/// two chapters end split from their new rows. The simulated application writes
/// the other chapters throughout (it is started while the two are out of the table,
/// so it never writes them): none of its committed writes is lost, and it waits no
/// longer than the plan's `lock_budget`.
#[test]
fn writes_under_session_replication_role_replica_are_captured_and_split_again() {
    let db = held_legacy_db();
    let replaced = two_chapters_with_images(&db);
    let ids = format!("{}, {}", replaced[0], replaced[1]);
    db.execute(&format!(
        "CREATE TABLE set_aside AS SELECT * FROM chapters WHERE id IN ({ids});
         DELETE FROM chapters WHERE id IN ({ids})"
    ));
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    db.execute("INSERT INTO chapters SELECT * FROM set_aside");

    let (_plan, child) = start_split_held_after_its_first_batch(&db);
    let mut replica = db.client();
    replica
        .batch_execute("SET session_replication_role = replica")
        .unwrap();
    replace_images_keeping_counts(&mut replica, &replaced);
    for key in &replaced {
        assert!(
            captured(&db, *key),
            "the replica-role write of {key} is captured"
        );
    }

    release(&db, child);
    let log = app.stop();
    assert_split_from_their_new_images(&db, &replaced);
    let lost = log.lost_writes(&mut db.client());
    assert!(lost.is_empty(), "{}", lost.join("\n"));
    assert!(log.committed_total() > 0, "{}", log.summary());
    // The memoir plan's lock_budget: blocks_reads = "1s", blocks_writes = "30s".
    assert!(
        log.longest_read_wait <= Duration::from_secs(1)
            && log.longest_write_wait <= Duration::from_secs(30),
        "{}",
        log.summary()
    );
    eprintln!("application: {}", log.summary());
}

/// A write the capture cannot see (its trigger disabled by a superuser) replaces the
/// images of two chapters, keeping their counts: the cutover's verification compares
/// every chapter's images with its sections and cover, so the stage rolls back
/// instead of committing the stale split.
#[test]
fn a_same_count_image_change_the_capture_missed_fails_the_cutover() {
    let db = held_legacy_db();
    let replaced = two_chapters_with_images(&db);
    let (_plan, child) = start_split_held_after_its_first_batch(&db);
    let mut app = db.client();
    app.batch_execute("ALTER TABLE chapters DISABLE TRIGGER USER")
        .unwrap();
    replace_images_keeping_counts(&mut app, &replaced);
    app.batch_execute("ALTER TABLE chapters ENABLE TRIGGER USER")
        .unwrap();
    for key in &replaced {
        assert!(
            !captured(&db, *key),
            "the write of {key} bypassed the capture"
        );
    }

    db.execute("UPDATE hold SET flag = false");
    let output = child.wait_with_output().unwrap();
    let report = describe(&output);
    assert_eq!(
        output.status.code(),
        Some(planrun_engine::exit_codes::VERIFICATION_FAILED),
        "{report}"
    );
    assert!(
        report.contains("every chapter's images are its sections' images and cover"),
        "{report}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name IN ('content', 'images')"),
        "2",
        "the cutover rolled back: the legacy columns are still there"
    );
}

/// The same through a real logical-replication subscription: the database planrun
/// migrates subscribes to `chapters` on another cluster (`wal_level = logical`),
/// whose application replaces the images of two chapters the first batch split. The
/// subscription's apply worker writes them with `session_replication_role =
/// replica`; the capture records them and the two chapters end split from their new
/// rows.
#[test]
fn a_logical_replication_subscriptions_writes_are_captured_and_split_again() {
    let publisher = planrun_tempdb::TempCluster::builder()
        .setting("wal_level", "logical")
        .start()
        .expect("the publishing cluster starts");
    let publisher_url = publisher
        .create_database("published")
        .expect("the published database");
    let mut published = postgres::Client::connect(&publisher_url, postgres::NoTls).unwrap();
    create_legacy_schema(&mut published, ImagesType::Jsonb).expect("the legacy schema");
    load_legacy(&mut published, 11, 600, ImagesType::Jsonb).expect("the legacy chapters");
    published
        .batch_execute("CREATE PUBLICATION chapters_out FOR TABLE chapters")
        .unwrap();

    let db = held_legacy_db();
    db.execute(&format!(
        "CREATE SUBSCRIPTION chapters_in CONNECTION '{publisher_url}' PUBLICATION chapters_out WITH (copy_data = false)"
    ));
    planrun_tests::wait_until("the subscription streams", Duration::from_secs(60), || {
        publisher
            .psql("published", "SELECT count(*) FROM pg_stat_replication")
            .is_ok_and(|count| count.trim() == "1")
    });
    let replaced = two_chapters_with_images(&db);
    let (_plan, child) = start_split_held_after_its_first_batch(&db);
    replace_images_keeping_counts(&mut published, &replaced);
    planrun_tests::wait_until(
        "the subscription applied the new images",
        Duration::from_secs(60),
        || {
            db.scalar(&format!(
                "SELECT count(*) FROM chapters WHERE id = ANY('{{{}, {}}}') AND images->0->>'url' LIKE 'replaced-%'",
                replaced[0], replaced[1]
            )) == "2"
        },
    );
    for key in &replaced {
        assert!(
            captured(&db, *key),
            "the subscription's write of {key} is captured"
        );
    }

    release(&db, child);
    db.execute("DROP SUBSCRIPTION chapters_in");
    assert_split_from_their_new_images(&db, &replaced);
}

/// An application session that sets `planrun.own_write = on` (the mark planrun's own
/// writes once carried, which any session could set) replaces the images of two
/// chapters the first batch split: its writes are the application's all the same,
/// captured and split again, and the stage completes. Only planrun's transaction,
/// recorded in its own table, which no other role may write, is skipped.
#[test]
fn a_session_cannot_pass_its_writes_off_as_planruns_and_hide_them_from_the_capture() {
    let db = held_legacy_db();
    let replaced = two_chapters_with_images(&db);
    let (_plan, child) = start_split_held_after_its_first_batch(&db);
    let mut app = db.client();
    app.batch_execute("SET planrun.own_write = 'on'").unwrap();
    replace_images_keeping_counts(&mut app, &replaced);
    for key in &replaced {
        assert!(
            captured(&db, *key),
            "the write of {key} under planrun.own_write = on is captured"
        );
    }
    release(&db, child);
    assert_split_from_their_new_images(&db, &replaced);
}
