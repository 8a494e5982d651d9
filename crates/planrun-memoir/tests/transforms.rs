//! The memoir transforms against real PostgreSQL: every row they write is compared with
//! what the pure rules compute from the same legacy rows, for each legacy images type.

mod support;

use planrun_memoir::generate::{invalid_images_cases, tricky_valid_images_cases};
use planrun_memoir::legacy::{insert_chapter, load_legacy, ImagesType, LoadReport};
use planrun_memoir::{register, split_chapter, CollectImages, SplitChapters};
use planrun_transform::{Registry, Transform, TransformError};
use serde_json::{json, Value};
use support::*;

const CHAPTERS: usize = 2_000;

/// Stage 2 then stage 4 on generated data plus the tricky valid cases, checked row by row
/// against the pure rules; then stage 4 again, which must add nothing.
fn end_to_end(images: ImagesType, split_params: &str) {
    let mut db = Db::legacy(images);
    let loaded = load_legacy(&mut db.client, SEED, CHAPTERS, images).expect("load");
    assert_eq!(loaded.chapters, CHAPTERS as u64);
    assert!(loaded.memoirs > 0);
    for (i, case) in tricky_valid_images_cases().into_iter().enumerate() {
        let content = (i % 2 == 0).then_some("First\n\nSecond");
        insert_chapter(&mut db.client, 1, 100_000 + i as i64, content, Some(case))
            .unwrap_or_else(|e| panic!("insert {case}: {e}"));
    }
    let legacy = db.legacy_rows();
    db.stage_one();

    let report = db
        .run(&SplitChapters, split_params)
        .expect("split_chapters");
    let (sections, covers) = expected_split(&mut db, &legacy, &[]);
    assert_eq!(report.rows_read, legacy.len() as u64);
    assert_eq!(report.rows_written, sections.len() as u64);
    assert_eq!(report.rows_quarantined, 0);
    assert!(
        report
            .notes
            .contains(&format!("images column type: {}", images.sql())),
        "{:?}",
        report.notes
    );
    assert_rows_eq(&db.sections(), &sections, "chapter_sections");
    assert_rows_eq(&db.covers(), &covers, "covers");

    // Conservation, as the plan's verification counts it.
    let image_elements: usize = legacy
        .iter()
        .map(|r| {
            split_chapter(r.content.as_deref(), r.images.as_deref())
                .expect("valid")
                .image_count
        })
        .sum();
    assert!(image_elements > 1_000, "the data set has images");
    assert_eq!(
        db.count("SELECT count(*) FROM chapter_sections WHERE image IS NOT NULL"),
        image_elements as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM planrun.memoir_quarantine"),
        0,
        "the quarantine table exists even in fail mode, empty"
    );

    db.client.batch_execute(DROP_LEGACY).expect("drop legacy");
    db.client
        .batch_execute(IMAGES_SCHEMA)
        .expect("images schema");
    let report = db.run(&CollectImages, "").expect("collect_images");
    let expected = db.expected_memoir_images();
    assert_eq!(report.rows_written, expected.len() as u64);
    assert_rows_eq(&db.memoir_images(), &expected, "memoir_images");

    let again = db.run(&CollectImages, "").expect("collect_images again");
    assert_eq!((again.rows_read, again.rows_written), (0, 0));
    assert_eq!(
        db.count("SELECT count(*) FROM memoir_images"),
        expected.len() as i64
    );
}

#[test]
fn jsonb_images_split_and_collect_exactly_as_the_rules_say() {
    end_to_end(ImagesType::Jsonb, "");
}

#[test]
fn json_images_split_and_collect_exactly_as_the_rules_say() {
    // A batch size that does not divide the row count: several batches and a short last one.
    end_to_end(ImagesType::Json, "batch_rows = 333");
}

#[test]
fn text_images_split_and_collect_exactly_as_the_rules_say() {
    end_to_end(ImagesType::Text, "on_invalid = \"fail\"\nbatch_rows = 1000");
}

#[test]
fn the_spec_worked_example_end_to_end() {
    let mut db = Db::legacy(ImagesType::Jsonb);
    insert_chapter(
        &mut db.client,
        1,
        7,
        Some("A\n\n\u{3000}\u{3000}B1\nB2\r\n \r\nC"),
        Some(r#"["x.jpg", {"url":"y.jpg","paragraph":0,"w":3}, {"url":"z.jpg","paragraph":0}, "q.jpg", "r.jpg"]"#),
    )
    .expect("insert");
    db.stage_one();
    let report = db.run(&SplitChapters, "").expect("split");
    assert_eq!((report.rows_read, report.rows_written), (1, 5));

    let expected: Vec<SectionRow> = vec![
        (
            7,
            0,
            "A".into(),
            Some(json!({"url": "y.jpg", "paragraph": 0, "w": 3})),
        ),
        (
            7,
            1,
            "\u{3000}\u{3000}B1\nB2".into(),
            Some(json!({"url": "x.jpg"})),
        ),
        (
            7,
            2,
            "C".into(),
            Some(json!({"url": "z.jpg", "paragraph": 0})),
        ),
        (7, 3, "".into(), Some(json!({"url": "q.jpg"}))),
        (7, 4, "".into(), Some(json!({"url": "r.jpg"}))),
    ];
    assert_eq!(db.sections(), expected);
    assert_eq!(db.covers(), vec![(7, Some(json!({"url": "x.jpg"})))]);

    db.client.batch_execute(DROP_LEGACY).expect("drop legacy");
    db.client
        .batch_execute(IMAGES_SCHEMA)
        .expect("images schema");
    let report = db.run(&CollectImages, "").expect("collect");
    assert_eq!(report.rows_written, 6);
    let ids: Vec<i64> = db
        .client
        .query("SELECT id FROM chapter_sections ORDER BY position", &[])
        .expect("section ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let row = |section: Option<i64>, url: &str, meta: Value| {
        (7, section, url.to_owned(), None::<String>, meta)
    };
    assert_eq!(
        db.memoir_images(),
        vec![
            row(None, "x.jpg", json!({})),
            row(Some(ids[0]), "y.jpg", json!({"paragraph": 0, "w": 3})),
            row(Some(ids[1]), "x.jpg", json!({})),
            row(Some(ids[2]), "z.jpg", json!({"paragraph": 0})),
            row(Some(ids[3]), "q.jpg", json!({})),
            row(Some(ids[4]), "r.jpg", json!({})),
        ]
    );

    // Stage 5 drops chapter_sections.image; collecting again still works and adds nothing.
    db.stage_five();
    let report = db.run(&CollectImages, "").expect("collect after stage 5");
    assert_eq!(report.rows_written, 0);
    assert!(
        report.notes.iter().any(|n| n.contains("stage 5")),
        "{:?}",
        report.notes
    );
}

#[test]
fn an_invalid_row_fails_naming_chapter_and_path_and_changes_nothing() {
    let mut db = Db::legacy(ImagesType::Text);
    load_legacy(&mut db.client, SEED, 60, ImagesType::Text).expect("load");
    db.stage_one();
    let before = db.legacy_rows();
    for (i, (images, path)) in invalid_images_cases().into_iter().enumerate() {
        let id = 5_000 + i as i64;
        insert_chapter(&mut db.client, 2, id, Some("Some text"), Some(images)).expect("insert");
        match db.run(&SplitChapters, "batch_rows = 25") {
            Err(TransformError::InvalidRow {
                table,
                key,
                path: actual,
                reason,
            }) => {
                assert_eq!(table, "chapters");
                assert_eq!(key, format!("id {id}"), "case {images:?}");
                assert_eq!(actual, path, "case {images:?}");
                assert!(!reason.is_empty());
            }
            other => panic!("case {images:?}: expected InvalidRow, got {other:?}"),
        }
        assert_eq!(db.count("SELECT count(*) FROM chapter_sections"), 0);
        assert_eq!(
            db.count("SELECT count(*) FROM chapters WHERE cover_image IS NOT NULL"),
            0
        );
        db.client
            .execute("DELETE FROM chapters WHERE id = $1", &[&id])
            .expect("delete");
    }
    let after = db.legacy_rows();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'planrun'"),
        0,
        "the quarantine table was rolled back with the rest"
    );
}

#[test]
fn quarantine_keeps_raw_values_verbatim_and_migrates_the_rest() {
    let mut db = Db::legacy(ImagesType::Text);
    load_legacy(&mut db.client, SEED, 300, ImagesType::Text).expect("load");
    let cases = invalid_images_cases();
    let mut bad = Vec::new();
    for (i, (images, _)) in cases.iter().enumerate() {
        // Spread among the valid chapters so bad rows fall in different batches.
        let id = 1_000 + 37 * i as i64;
        let content = format!("Chapter with bad images\r\n\r\n  indented {i}\t");
        let content = (i % 3 != 0).then_some(content);
        insert_chapter(&mut db.client, 3, id, content.as_deref(), Some(images)).expect("insert");
        bad.push(id);
    }
    let legacy = db.legacy_rows();
    db.stage_one();

    let report = db
        .run(
            &SplitChapters,
            "on_invalid = \"quarantine\"\nbatch_rows = 100",
        )
        .expect("split in quarantine mode");
    assert_eq!(report.rows_quarantined, cases.len() as u64);
    assert_eq!(report.rows_read, legacy.len() as u64);

    let quarantined = db
        .client
        .query(
            "SELECT chapter_id, content, images, images_type, path, reason, run_id, stage_id
             FROM planrun.memoir_quarantine ORDER BY chapter_id",
            &[],
        )
        .expect("read quarantine");
    assert_eq!(quarantined.len(), cases.len());
    for (row, ((_, path), id)) in quarantined.iter().zip(cases.iter().zip(&bad)) {
        let original = legacy.iter().find(|r| r.id == *id).expect("legacy row");
        assert_eq!(row.get::<_, i64>(0), *id);
        assert_eq!(row.get::<_, Option<String>>(1), original.content);
        assert_eq!(row.get::<_, Option<String>>(2), original.images);
        assert_eq!(row.get::<_, String>(3), "text");
        assert_eq!(row.get::<_, String>(4), *path);
        assert!(!row.get::<_, String>(5).is_empty());
        assert_eq!(row.get::<_, i64>(6), RUN_ID);
        assert_eq!(row.get::<_, String>(7), "test_stage");
    }

    let (sections, covers) = expected_split(&mut db, &legacy, &bad);
    assert_eq!(report.rows_written, sections.len() as u64);
    assert_rows_eq(&db.sections(), &sections, "chapter_sections");
    assert_rows_eq(&db.covers(), &covers, "covers");
}

/// A `json` or `text` column holding what `jsonb` cannot store: the row is invalid, named
/// by chapter id and path, instead of failing the COPY into `jsonb` with a bare "value
/// overflows numeric format" (which also aborted quarantine mode); numbers at the very
/// edge of the range migrate.
fn unstorable_values_fail_or_are_quarantined(images: ImagesType) {
    let mut db = Db::legacy(images);
    load_legacy(&mut db.client, SEED, 40, images).expect("load");
    let bad = [
        (
            1_001,
            r#"[{"url": "a.jpg", "x": 1e200000}]"#,
            "images[0].x",
            "number 1e+200000 is outside the range PostgreSQL's numeric can store",
        ),
        (
            1_002,
            r#"["a.jpg", {"url": "b.jpg", "meta": {"sizes": [1, 1e-20000]}}]"#,
            "images[1].meta.sizes[1]",
            "number 1e-20000 is outside the range PostgreSQL's numeric can store",
        ),
        (
            1_003,
            r#"[{"url": "a.jpg", "caption": "\ud800"}]"#,
            "images[0].caption",
            r"a lone surrogate \ud800 cannot be stored in jsonb",
        ),
    ];
    for (id, json, _, _) in bad {
        insert_chapter(&mut db.client, 2, id, Some("p"), Some(json)).expect("insert");
    }
    let edge = r#"[{"url": "e.jpg", "x": 1e131071, "y": -1.5e-16382, "z": 0e999999}]"#;
    insert_chapter(&mut db.client, 2, 1_004, Some("p"), Some(edge)).expect("insert");
    let legacy = db.legacy_rows();
    db.stage_one();

    match db.run(&SplitChapters, "batch_rows = 7") {
        Err(TransformError::InvalidRow {
            key, path, reason, ..
        }) => {
            assert_eq!((key.as_str(), path.as_str()), ("id 1001", "images[0].x"));
            assert!(reason.starts_with(bad[0].3), "{reason}");
        }
        other => panic!("{images}: expected InvalidRow, got {other:?}"),
    }
    assert_eq!(db.count("SELECT count(*) FROM chapter_sections"), 0);

    let report = db
        .run(
            &SplitChapters,
            "on_invalid = \"quarantine\"\nbatch_rows = 7",
        )
        .expect("split in quarantine mode");
    assert_eq!(report.rows_quarantined, bad.len() as u64);
    let quarantined: Vec<(i64, String, String, String)> = db
        .client
        .query(
            "SELECT chapter_id, images, path, reason FROM planrun.memoir_quarantine
             ORDER BY chapter_id",
            &[],
        )
        .expect("read quarantine")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(quarantined.len(), bad.len());
    for ((id, json, path, reason), row) in bad.iter().zip(&quarantined) {
        assert_eq!((row.0, row.1.as_str(), row.2.as_str()), (*id, *json, *path));
        assert!(row.3.starts_with(reason), "{}", row.3);
    }
    let (sections, covers) = expected_split(&mut db, &legacy, &bad.map(|b| b.0));
    assert_rows_eq(&db.sections(), &sections, "chapter_sections");
    assert_rows_eq(&db.covers(), &covers, "covers");
    let edge_image: String = db
        .client
        .query_one(
            "SELECT image->>'x' FROM chapter_sections WHERE chapter_id = 1004",
            &[],
        )
        .expect("the edge chapter migrated")
        .get(0);
    assert_eq!(edge_image.len(), 131_072);
}

#[test]
fn unstorable_values_in_a_json_column_fail_or_are_quarantined() {
    unstorable_values_fail_or_are_quarantined(ImagesType::Json);
}

#[test]
fn unstorable_values_in_a_text_column_fail_or_are_quarantined() {
    unstorable_values_fail_or_are_quarantined(ImagesType::Text);
}

// The plan's own conservation and content checks after a quarantine run are proved
// end to end, on the real plan, by tests/memoir.rs (quarantine mode) and
// tests/hostile_data.rs (quarantine with each images column type).

#[test]
fn missing_schema_is_reported_as_a_schema_error() {
    let mut db = Db::legacy(ImagesType::Jsonb);
    db.client
        .batch_execute("CREATE SCHEMA planrun")
        .expect("planrun");
    match db.run(&SplitChapters, "") {
        Err(TransformError::Schema(message)) => {
            assert!(message.contains("cover_image"), "{message}")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    db.client
        .batch_execute("ALTER TABLE chapters ADD COLUMN cover_image jsonb")
        .expect("cover_image");
    match db.run(&SplitChapters, "") {
        Err(TransformError::Schema(message)) => {
            assert!(message.contains("chapter_sections"), "{message}")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    match db.run(&CollectImages, "") {
        Err(TransformError::Schema(message)) => {
            assert!(message.contains("memoir_images"), "{message}")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    db.client
        .batch_execute("ALTER TABLE chapters DROP COLUMN content")
        .expect("drop content");
    match db.run(&SplitChapters, "") {
        Err(TransformError::Schema(message)) => {
            assert!(message.contains("chapters.content"), "{message}")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[test]
fn an_invalid_stored_image_fails_collect_with_its_section() {
    let mut db = Db::legacy(ImagesType::Jsonb);
    insert_chapter(
        &mut db.client,
        1,
        3,
        Some("a\n\nb"),
        Some(r#"["a.jpg", "b.jpg"]"#),
    )
    .expect("insert");
    db.stage_one();
    db.run(&SplitChapters, "").expect("split");
    db.client
        .batch_execute(IMAGES_SCHEMA)
        .expect("images schema");
    let id: i64 = db
        .client
        .query_one(
            "UPDATE chapter_sections SET image = '{\"caption\": \"no url\"}'
             WHERE position = 1 RETURNING id",
            &[],
        )
        .expect("break an image")
        .get(0);
    match db.run(&CollectImages, "") {
        Err(TransformError::InvalidRow {
            table, key, path, ..
        }) => {
            assert_eq!(
                (table.as_str(), key, path.as_str()),
                ("chapter_sections", format!("id {id}"), "image.url")
            );
        }
        other => panic!("expected InvalidRow, got {other:?}"),
    }
    assert_eq!(db.count("SELECT count(*) FROM memoir_images"), 0);
}

#[test]
fn params_are_checked_offline() {
    let check = |transform: &dyn Transform, text: &str| -> Vec<String> {
        let params: toml::Table = toml::from_str(text).expect("TOML");
        transform
            .check_params(&params)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    };
    assert!(check(&SplitChapters, "").is_empty());
    assert!(check(
        &SplitChapters,
        "on_invalid = \"quarantine\"\nbatch_rows = 10"
    )
    .is_empty());
    assert_eq!(
        check(&SplitChapters, "on_invalid = \"skip\""),
        ["on_invalid"]
    );
    assert_eq!(check(&SplitChapters, "on_invalid = 1"), ["on_invalid"]);
    assert_eq!(check(&SplitChapters, "batch_rows = 0"), ["batch_rows"]);
    assert_eq!(check(&SplitChapters, "batch_rows = \"5\""), ["batch_rows"]);
    assert_eq!(
        check(&SplitChapters, "on_invalids = \"fail\""),
        ["on_invalids"]
    );
    assert!(check(&CollectImages, "batch_rows = 100").is_empty());
    assert_eq!(
        check(&CollectImages, "on_invalid = \"fail\""),
        ["on_invalid"]
    );

    let params: toml::Table = toml::from_str("on_invalid = \"skip\"").expect("TOML");
    let message = &SplitChapters.check_params(&params)[0].1;
    assert!(message.contains("\"fail\" or \"quarantine\""), "{message}");
}

#[test]
fn register_adds_every_memoir_transform() {
    let mut registry = Registry::new();
    register(&mut registry);
    let names: Vec<&str> = registry.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "memoir.collect_images",
            "memoir.keep_legacy",
            "memoir.link_section_images",
            "memoir.split_chapters",
            "memoir.unsplit_chapters",
        ]
    );
    for transform in registry.iter() {
        assert_eq!(transform.version(), "1");
        assert!(!transform.summary().is_empty());
    }
}

#[test]
fn load_legacy_is_byte_exact_for_text_and_json() {
    for images in [ImagesType::Text, ImagesType::Json] {
        let mut db = Db::legacy(images);
        let report = load_legacy(&mut db.client, SEED, 400, images).expect("load");
        assert_eq!(
            report,
            LoadReport {
                memoirs: planrun_memoir::generate::memoir_count(400) as u64,
                chapters: 400
            }
        );
        let rows = db.legacy_rows();
        for (row, generated) in rows
            .iter()
            .zip(planrun_memoir::generate::generate(SEED, 400))
        {
            assert_eq!(row.id, generated.id);
            assert_eq!(row.content, generated.content, "chapter {}", row.id);
            assert_eq!(row.images, generated.images, "chapter {}", row.id);
        }
        // The sequences moved past the loaded ids.
        let next: i64 = db
            .client
            .query_one(
                "INSERT INTO chapters (memoir_id, position, title) VALUES (1, 99, 't') RETURNING id",
                &[],
            )
            .expect("insert with a default id")
            .get(0);
        assert_eq!(next, 401);
    }
}

#[test]
fn split_runs_inside_a_savepoint_as_in_a_dry_run() {
    let mut db = Db::legacy(ImagesType::Jsonb);
    load_legacy(&mut db.client, SEED, 500, ImagesType::Jsonb).expect("load");
    db.stage_one();
    let params = toml::Table::new();
    let mut outer = db.client.transaction().expect("begin");
    let mut savepoint = outer.transaction().expect("savepoint");
    let report = SplitChapters
        .run(&mut planrun_transform::TransformContext {
            transaction: &mut savepoint,
            params: &params,
            stage_id: "dry_run",
            run_id: 1,
            progress: &planrun_transform::NoProgress,
        })
        .expect("split in a savepoint");
    assert_eq!(report.rows_read, 500);
    let inside: i64 = savepoint
        .query_one("SELECT count(*) FROM chapter_sections", &[])
        .expect("count")
        .get(0);
    assert_eq!(inside, report.rows_written as i64);
    savepoint.rollback().expect("rollback savepoint");
    let after: i64 = outer
        .query_one("SELECT count(*) FROM chapter_sections", &[])
        .expect("count")
        .get(0);
    assert_eq!(after, 0);
    outer.rollback().expect("rollback");
}
