//! The memoir plan's way back with the application writing before, during and after
//! each step (issue 24): apply, `revert --to start`, apply again, the simulated
//! application following the shape the database is in (legacy `chapters` columns, or
//! `chapter_sections` with images in `image` or `memoir_images`). No write it saw
//! commit is lost in either direction, and the sections the application did not touch
//! come back from the re-apply as they were before the revert.
//!
//! The application is restarted between steps, so that each step's result is checked
//! with its writers stopped; within a step it writes throughout `planrun`'s run.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use planrun_tests::app::{AppConfig, AppLog, AppSimulator, Progress};
use planrun_tests::{describe, legacy_db, planrun, repo_root, TestDb};
use serde_json::Value;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");
const PLAN: &str = "plans/memoir.toml";

/// How many writes each phase waits for: enough that every kind of write in both
/// shapes was made, few enough to keep the test short.
const WRITES: u64 = 30;

fn run(db: &TestDb, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--no-backup", "--database-url", &db.url]);
    planrun(PLANRUN, &repo_root(), &all, &[])
}

/// Every stage a user would revert, the optional stage 5 included.
fn apply_all(db: &TestDb) {
    let output = run(db, &["apply", PLAN, "--include-optional"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// Chapters the application writes (ids below this); the others stay as the plan
/// leaves them, so that their sections can be compared across the revert however many
/// writes the application makes.
const WRITTEN_BELOW: i64 = 1000;

/// The application, following the shape, writing the chapters below `WRITTEN_BELOW`
/// at its default pace (2 ms between writes: a slower one lets the reverts' lock
/// races go unseen).
fn application(db: &TestDb) -> AppSimulator {
    AppSimulator::start(
        &db.url,
        AppConfig {
            follow_shape: true,
            chapter_ids_below: Some(WRITTEN_BELOW),
            ..AppConfig::default()
        },
    )
}

fn legacy_commits(p: &Progress) -> u64 {
    p.committed_total() - p.committed_in_new_shape
}

fn wait_for(app: &AppSimulator, what: &str, condition: impl FnMut(&Progress) -> bool) {
    assert!(
        app.wait_until(Duration::from_secs(120), condition),
        "the application never made {what}: {:?}",
        app.progress()
    );
}

/// The memoir plan's `lock_budget`: the application's writes wait 30 s at most.
const BLOCKS_WRITES: Duration = Duration::from_secs(30);

fn assert_nothing_lost(step: &str, log: &AppLog, db: &TestDb) {
    assert!(
        log.longest_write_wait <= BLOCKS_WRITES,
        "{step}: a write waited past the plan's lock budget: {}",
        log.summary()
    );
    let lost = log.lost_writes(&mut db.client());
    assert!(
        lost.is_empty(),
        "{step}: {} committed writes lost:\n{}\n{}\nfirst errors: {:?}",
        lost.len(),
        lost.join("\n"),
        log.summary(),
        log.first_errors
    );
}

type Sections = BTreeMap<(i64, i32), (String, Option<Value>)>;

/// Every section as (content, image object), by chapter and position, whichever shape
/// holds the image; `"paragraph"` and a `null` caption left out, as the way back pins
/// an image the application changed to its section and `memoir_images` keeps no null.
fn sections(db: &TestDb) -> Sections {
    let sql = "SELECT s.chapter_id, s.position, s.content,
                      (SELECT m.meta || jsonb_build_object('url', m.url)
                              || CASE WHEN m.caption IS NULL THEN '{}'
                                      ELSE jsonb_build_object('caption', m.caption) END
                       FROM memoir_images m WHERE m.id = s.image_id)::text
               FROM chapter_sections s";
    db.client()
        .query(sql, &[])
        .expect("read sections through image_id")
        .into_iter()
        .map(|row| {
            let image = row.get::<_, Option<String>>(3).map(|text| {
                let mut value: Value = serde_json::from_str(&text).expect("JSON");
                if let Value::Object(object) = &mut value {
                    object.shift_remove("paragraph");
                }
                value
            });
            ((row.get(0), row.get(1)), (row.get(2), image))
        })
        .collect()
}

#[test]
fn the_application_writing_through_apply_revert_and_apply_again_loses_no_committed_write() {
    let db = legacy_db(2 * WRITTEN_BELOW as usize);

    let app = application(&db);
    wait_for(&app, "legacy writes", |p| legacy_commits(p) >= WRITES);
    apply_all(&db);
    wait_for(&app, "writes in the new shape", |p| {
        p.committed_in_new_shape >= WRITES
    });
    let applied = app.stop();
    assert_nothing_lost("after the apply", &applied, &db);
    let before_revert = sections(&db);

    let app = application(&db);
    wait_for(&app, "writes in the new shape", |p| {
        p.committed_in_new_shape >= WRITES
    });
    let output = run(&db, &["revert", PLAN, "--to", "start"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    wait_for(&app, "legacy writes after the revert", |p| {
        legacy_commits(p) >= WRITES
    });
    let reverted = app.stop();
    assert_eq!(
        db.scalar("SELECT to_regclass('public.chapter_sections') IS NULL"),
        "t"
    );
    let mut touched: BTreeSet<i64> = reverted.written_chapters();
    let log = applied.followed_by(reverted);
    assert_nothing_lost("after the revert", &log, &db);

    let app = application(&db);
    wait_for(&app, "legacy writes", |p| legacy_commits(p) >= WRITES);
    apply_all(&db);
    wait_for(&app, "writes in the new shape after the apply", |p| {
        p.committed_in_new_shape >= WRITES
    });
    let reapplied = app.stop();
    touched.extend(reapplied.written_chapters());
    let log = log.followed_by(reapplied);
    assert_nothing_lost("after the apply again", &log, &db);
    eprintln!("{}", log.summary());

    let again = sections(&db);
    let untouched = |sections: &Sections| -> Sections {
        sections
            .iter()
            .filter(|((chapter, _), _)| !touched.contains(chapter))
            .map(|(key, section)| (*key, section.clone()))
            .collect()
    };
    let (before, after) = (untouched(&before_revert), untouched(&again));
    assert!(
        before.len() * 4 > before_revert.len(),
        "only {} of {} sections compared: the application wrote nearly every chapter",
        before.len(),
        before_revert.len()
    );
    let differing: Vec<_> = before
        .iter()
        .filter(|(key, section)| after.get(key) != Some(section))
        .take(5)
        .collect();
    assert!(
        differing.is_empty() && before.len() == after.len(),
        "sections the application did not touch differ after the revert and the apply \
         ({} before, {} after): {differing:?}",
        before.len(),
        after.len()
    );
}
