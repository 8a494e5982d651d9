//! The live-application simulator checked against itself: on a quiet database it finds
//! every committed write, it reports a write changed behind its back, and after the
//! memoir migration it finds every committed write in the sections (with images in
//! `chapter_sections.image`, then through `memoir_images`) and reports a damaged one.

use std::time::Duration;

use planrun_memoir::legacy::insert_chapter;
use planrun_tests::{
    describe, legacy_db, planrun_on, repo_root, AppConfig, AppLog, AppSimulator, TestDb,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// Runs the simulated application until it has committed every kind of write a few
/// times and read a while, then stops it.
fn run_app(db: &TestDb) -> AppLog {
    let app = AppSimulator::start(&db.url, AppConfig::default());
    let enough = app.wait_until(Duration::from_secs(60), |progress| {
        progress.committed_least() >= 5 && progress.reads >= 100
    });
    let progress = app.progress();
    let log = app.stop();
    assert!(
        enough,
        "the application did too little in 60 s: {progress:?}\n{}\n{:?}",
        log.summary(),
        log.first_errors
    );
    log
}

/// Every kind of write committed, none failed, the readers read.
fn assert_quiet_run(log: &AppLog) {
    let context = format!("{}\n{:#?}", log.summary(), log.first_errors);
    assert_eq!(log.failed_total(), 0, "{context}");
    assert_eq!(log.in_doubt, 0, "{context}");
    assert_eq!(log.failed_reads, 0, "{context}");
    assert!(log.reads > 0, "{context}");
    for (kind, count) in &log.committed {
        assert!(*count > 0, "no {} committed: {context}", kind.name());
    }
}

#[test]
fn a_quiet_database_reflects_every_committed_write() {
    let db = legacy_db(200);
    let log = run_app(&db);
    assert_quiet_run(&log);

    let expected = log.expected_chapters();
    assert!(
        expected.values().any(Option::is_none),
        "some chapter was deleted"
    );
    assert!(
        expected.values().any(Option::is_some),
        "some chapter was written"
    );
    assert_eq!(log.lost_writes(&mut db.client()), Vec::<String>::new());
}

#[test]
fn a_write_changed_behind_the_applications_back_is_reported() {
    let db = legacy_db(200);
    let log = run_app(&db);
    assert_quiet_run(&log);
    let expected = log.expected_chapters();
    let mut client = db.client();

    let (&edited, state) = expected
        .iter()
        .find(|(_, state)| state.is_some())
        .expect("a chapter a committed write left in place");
    let committed_content = state.as_ref().unwrap().0.clone();
    client
        .execute(
            "UPDATE chapters SET content = coalesce(content, '') || ' (edited by hand)'
             WHERE id = $1",
            &[&edited],
        )
        .unwrap();
    let lost = log.lost_writes(&mut client);
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert!(
        lost[0].starts_with(&format!("chapter {edited}: content: expected ")),
        "{lost:#?}"
    );
    assert!(lost[0].contains("(edited by hand)"), "{lost:#?}");

    client
        .execute(
            "UPDATE chapters SET content = $1 WHERE id = $2",
            &[&committed_content, &edited],
        )
        .unwrap();
    assert_eq!(log.lost_writes(&mut client), Vec::<String>::new());

    let deleted = *expected
        .iter()
        .find(|(_, state)| state.is_none())
        .expect("a chapter a committed write deleted")
        .0;
    insert_chapter(&mut client, 1, deleted, Some("back again"), None).unwrap();
    let lost = log.lost_writes(&mut client);
    assert_eq!(
        lost,
        vec![format!(
            "chapter {deleted}: deleted by a committed write, but the row exists with \
             content \"back again\" and images NULL"
        )]
    );
}

#[test]
fn after_the_memoir_migration_every_committed_write_is_in_the_sections() {
    let db = legacy_db(200);
    let log = run_app(&db);
    assert_quiet_run(&log);
    let touched: Vec<i64> = log.expected_chapters().into_keys().collect();

    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &["apply", "plans/memoir.toml", "--no-backup"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name = 'content'"), "0");
    assert_eq!(log.lost_writes(&mut db.client()), Vec::<String>::new());

    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &[
            "apply",
            "plans/memoir.toml",
            "--no-backup",
            "--include-optional",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapter_sections' AND column_name = 'image'"), "0");
    assert_eq!(log.lost_writes(&mut db.client()), Vec::<String>::new());

    let mut client = db.client();
    let damaged: i64 = client
        .query_one(
            "UPDATE chapter_sections SET content = content || ' (damaged)'
             WHERE id = (SELECT min(id) FROM chapter_sections
                         WHERE chapter_id = ANY($1) AND position = 1)
             RETURNING chapter_id",
            &[&touched],
        )
        .unwrap()
        .get(0);
    let lost = log.lost_writes(&mut client);
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert!(
        lost[0].starts_with(&format!("chapter {damaged}: section 1 content: expected ")),
        "{lost:#?}"
    );

    let unlinked: i64 = client
        .query_one(
            "UPDATE chapter_sections SET image_id = NULL
             WHERE id = (SELECT min(id) FROM chapter_sections
                         WHERE chapter_id = ANY($1) AND chapter_id <> $2
                           AND image_id IS NOT NULL)
             RETURNING chapter_id",
            &[&touched, &damaged],
        )
        .unwrap()
        .get(0);
    let lost = log.lost_writes(&mut client);
    assert_eq!(lost.len(), 2, "{lost:#?}");
    assert!(
        lost.iter().any(
            |line| line.starts_with(&format!("chapter {unlinked}: section "))
                && line.contains(" image: expected {")
                && line.ends_with("found NULL")
        ),
        "{lost:#?}"
    );
}
