//! The way back of the memoir plan against real PostgreSQL, transform by transform and
//! SQL file by SQL file, as the plan runs them (the end-to-end runs through `planrun
//! revert` are in the workspace's tests/memoir_revert.rs): legacy rows the split alone
//! cannot give back, restored byte for byte from what `memoir.keep_legacy` kept;
//! chapters changed in the new shape written back so that they split again the same;
//! what the old shape cannot hold refused by the plan's precondition and by the
//! transform alike; memoir_images rows carried back into the JSON.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use planrun_memoir::legacy::{insert_chapter, load_legacy, ImagesType};
use planrun_memoir::{
    split_chapter, unsplit_chapter, CollectImages, KeepLegacy, SplitChapters, UnsplitChapters,
};
use planrun_transform::TransformError;
use serde_json::Value;
use support::*;

const REVERT_FOREIGN_KEY: &str = include_str!("../../../plans/memoir/02_revert_foreign_key.sql");
const FOREIGN_KEY: &str = include_str!("../../../plans/memoir/02_chapter_sections_foreign_key.sql");
const CARRY_IMAGES_BACK: &str =
    include_str!("../../../plans/memoir/04_revert_carry_images_back.sql");
const REVERT_IMAGES_SCHEMA: &str =
    include_str!("../../../plans/memoir/03_revert_images_schema.sql");
const KEEP_SECTION_IMAGES: &str = include_str!("../../../plans/memoir/05_keep_section_images.sql");
const REVERT_SECTION_IMAGE_FK: &str =
    include_str!("../../../plans/memoir/05_revert_section_image_fk.sql");
const PLAN: &str = include_str!("../../../plans/memoir.toml");

/// Legacy rows the split alone cannot give back: each splits to sections from which the
/// unsplit gives other bytes (separators, line ends, shorthand, order, spelling, NULL).
const NOT_INVERTIBLE: [(Option<&str>, Option<&str>); 9] = [
    (Some("A\n\n\n\nB"), None),
    (Some("A\r\nA2\r\n\r\nB"), Some(r#"["a.jpg"]"#)),
    (Some("A\n \u{3000}\nB\n"), Some("[]")),
    (Some("\n\nA"), Some("null")),
    (Some(""), None),
    (None, Some(r#"["x.jpg", {"url": "y.jpg", "paragraph": 0}]"#)),
    (
        Some("A\n\nB"),
        Some(r#"[{"url":"b.jpg","paragraph":1}, "a.jpg"]"#),
    ),
    (
        Some("A"),
        Some(r#"[ {"caption": null, "url": "c.jpg", "n": 1.50} ]"#),
    ),
    (Some("A"), Some(r#"[{"url": "z.jpg", "paragraph": 7}]"#)),
];

const FIRST_ODD_ID: i64 = 900_000;

fn run_sql(db: &mut Db, sql: &str) {
    db.client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// The SQL of a plan entry, e.g. `("split_chapters", "revert_precondition", 0)`.
fn plan_sql(stage: &str, key: &str, index: usize) -> String {
    let plan: toml::Table = toml::from_str(PLAN).expect("the memoir plan parses");
    let stages = plan["stage"].as_array().expect("stages");
    let stage = stages
        .iter()
        .find(|s| s["id"].as_str() == Some(stage))
        .expect("the stage");
    stage[key].as_array().expect(key)[index]["sql"]
        .as_str()
        .expect("sql")
        .to_owned()
}

/// `(id, content, images::text, images' type)` of every chapter.
fn chapter_rows(db: &mut Db) -> Vec<(i64, Option<String>, Option<String>, String)> {
    db.client
        .query(
            "SELECT id, content, images::text, pg_typeof(images)::text FROM chapters ORDER BY id",
            &[],
        )
        .expect("read chapters")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Stage 1 and stage 2 as the plan runs them: split, keep, foreign key, drop.
fn split(db: &mut Db) {
    run_sql(db, SESSION);
    db.stage_one();
    db.run(&SplitChapters, r#"on_invalid = "quarantine""#)
        .expect("split");
    db.run(&KeepLegacy, "").expect("keep_legacy");
    run_sql(db, FOREIGN_KEY);
    run_sql(db, DROP_LEGACY);
}

/// Stage 2's way back as the plan runs it; the transform's first note.
fn unsplit(db: &mut Db, params: &str) -> Result<String, TransformError> {
    let report = db.run(&UnsplitChapters, params)?;
    run_sql(db, REVERT_FOREIGN_KEY);
    Ok(report.notes[0].clone())
}

fn legacy_with_odd_rows(images: ImagesType) -> Db {
    let mut db = Db::legacy(images);
    load_legacy(&mut db.client, SEED, 500, images).expect("load");
    for (i, (content, images)) in NOT_INVERTIBLE.iter().enumerate() {
        insert_chapter(
            &mut db.client,
            1,
            FIRST_ODD_ID + i as i64,
            *content,
            *images,
        )
        .expect("insert");
    }
    db
}

#[test]
fn the_split_alone_cannot_give_these_legacy_rows_back() {
    for (content, images) in NOT_INVERTIBLE {
        let split = split_chapter(content, images).expect("valid");
        let back = unsplit_chapter(&split.sections, split.cover_image.as_ref());
        assert!(
            (back.content.as_deref(), back.images.as_deref()) != (content, images),
            "{content:?} {images:?} comes back as it was"
        );
        let again = split_chapter(back.content.as_deref(), back.images.as_deref()).expect("valid");
        assert_eq!(
            again.sections.len(),
            split.sections.len(),
            "{content:?} {images:?}"
        );
    }
}

#[test]
fn chapters_nobody_changed_get_their_legacy_values_back_byte_for_byte() {
    for images in ImagesType::ALL {
        let mut db = legacy_with_odd_rows(images);
        // One row the split quarantines.
        insert_chapter(&mut db.client, 1, 990_000, Some("q"), Some(" [1]")).expect("insert");
        let before = chapter_rows(&mut db);
        split(&mut db);
        assert_eq!(
            db.count("SELECT count(*) FROM planrun.memoir_legacy"),
            before.len() as i64
        );
        let refused = plan_sql("split_chapters", "revert_precondition", 0);
        assert_eq!(
            db.client.query(&refused, &[]).expect("precondition").len(),
            0
        );

        let note = unsplit(&mut db, "").expect("unsplit");
        assert!(
            note.starts_with(&format!(
                "{} chapters got their legacy values back byte for byte, 0 were",
                before.len()
            )),
            "{note}"
        );
        assert_eq!(chapter_rows(&mut db), before, "{images}");
        assert_eq!(db.count("SELECT count(*) FROM chapter_sections"), 0);
        assert_eq!(
            db.count("SELECT count(*) FROM chapters WHERE cover_image IS NOT NULL"),
            0
        );
        assert_eq!(
            db.count("SELECT count(*) FROM planrun.memoir_quarantine"),
            0
        );
    }
}

/// The application's writes in the new shape, each representable by the old one.
const NEW_SHAPE_WRITES: &str = "
UPDATE chapter_sections SET content = content || ' (edited)'
WHERE chapter_id IN (SELECT id FROM chapters WHERE id % 7 = 0) AND content <> '';
UPDATE chapter_sections SET image = jsonb_build_object('url', 'new-' || id || '.jpg', 'caption', NULL, 'w', 2.50)
WHERE chapter_id % 11 = 0 AND image IS NOT NULL AND position > 0 AND content <> ''
  AND image <> (SELECT cover_image FROM chapters WHERE id = chapter_id);
DELETE FROM chapter_sections s
WHERE s.chapter_id % 13 = 0
  AND s.position = (SELECT max(position) FROM chapter_sections WHERE chapter_id = s.chapter_id)
  AND s.image IS NULL;
INSERT INTO chapters (id, memoir_id, position, title, cover_image)
VALUES (800001, 1, 1000, 'added', '{\"url\": \"cover.jpg\"}'),
       (800002, 1, 1001, 'added, empty', NULL),
       (800003, 1, 1002, 'added, images only', '{\"url\": \"tail-b.jpg\", \"k\": [1]}');
INSERT INTO chapter_sections (chapter_id, position, content, image) VALUES
  (800001, 0, '　　第一段。', NULL),
  (800001, 1, 'second\nline', '{\"url\": \"cover.jpg\"}'),
  (800003, 0, '', '{\"url\": \"tail-b.jpg\", \"k\": [1]}'),
  (800003, 1, '', '{\"url\": \"tail-c.jpg\", \"caption\": \"c\"}');
";

type Sections = BTreeMap<(i64, i32), (String, Option<Value>)>;

/// Every section, image objects without `paragraph` (the anchor the way back may add).
fn sections_unanchored(db: &mut Db) -> (Sections, Vec<(i64, Option<Value>)>) {
    let strip = |v: Option<Value>| {
        v.map(|mut v| {
            if let Value::Object(o) = &mut v {
                o.shift_remove("paragraph");
            }
            v
        })
    };
    let sections = db
        .sections()
        .into_iter()
        .map(|(c, p, content, image)| ((c, p), (content, strip(image))))
        .collect();
    let covers = db
        .covers()
        .into_iter()
        .map(|(id, cover)| (id, strip(cover)))
        .collect();
    (sections, covers)
}

#[test]
fn chapters_changed_in_the_new_shape_split_again_to_the_same_sections() {
    for images in [ImagesType::Jsonb, ImagesType::Text] {
        let mut db = legacy_with_odd_rows(images);
        split(&mut db);
        run_sql(&mut db, NEW_SHAPE_WRITES);
        let refused = plan_sql("split_chapters", "revert_precondition", 0);
        let problems = db.client.query(&refused, &[]).expect("precondition");
        assert!(
            problems.is_empty(),
            "{:?}",
            problems
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        );
        let (sections, covers) = sections_unanchored(&mut db);

        let note = unsplit(&mut db, "").expect("unsplit");
        let written: Vec<u64> = note
            .split(' ')
            .filter_map(|word| word.parse().ok())
            .collect();
        assert!(written[1] + written[2] > 50, "{note}");
        assert!(written[2] > 0, "some images anchored: {note}");
        let added: Option<String> = db
            .client
            .query_one("SELECT images::text FROM chapters WHERE id = 800003", &[])
            .unwrap()
            .get(0);
        assert!(added.expect("images").contains("tail-c.jpg"));

        db.run(&SplitChapters, r#"on_invalid = "quarantine""#)
            .expect("split again");
        let (again, covers_again) = sections_unanchored(&mut db);
        assert_eq!(again.len(), sections.len());
        for (key, section) in &sections {
            assert_eq!(again.get(key), Some(section), "{images}: section {key:?}");
        }
        assert_eq!(covers_again, covers, "{images}: covers");
    }
}

/// New-shape chapters the legacy columns cannot hold, one per rule.
const UNHOLDABLE: &str = "
INSERT INTO chapters (id, memoir_id, position, title, cover_image) VALUES
  (700001, 1, 2000, 'two paragraphs in one section', NULL),
  (700002, 1, 2001, 'a gap', NULL),
  (700003, 1, 2002, 'an empty section first', '{\"url\": \"e.jpg\"}'),
  (700004, 1, 2003, 'a cover that is no section image', '{\"url\": \"elsewhere.jpg\"}'),
  (700005, 1, 2004, 'an image with no cover', NULL),
  (700006, 1, 2005, 'an image that would move', '{\"url\": \"m.jpg\"}'),
  (700007, 1, 2006, 'a blank section', NULL);
INSERT INTO chapter_sections (chapter_id, position, content, image) VALUES
  (700001, 0, E'A\\n\\nB', NULL),
  (700002, 1, 'A', NULL),
  (700003, 0, '', '{\"url\": \"e.jpg\"}'), (700003, 1, 'B', NULL),
  (700004, 0, 'A', '{\"url\": \"a.jpg\"}'),
  (700005, 0, 'A', '{\"url\": \"a.jpg\"}'),
  (700006, 0, 'A', NULL), (700006, 1, '', '{\"url\": \"m.jpg\"}'),
  (700007, 0, ' ', NULL);
";

/// The chapters the plan's stage 2 revert precondition names.
fn refused_chapters(db: &mut Db) -> BTreeSet<String> {
    let refused = plan_sql("split_chapters", "revert_precondition", 0);
    db.client
        .query(&refused, &[])
        .expect("precondition")
        .iter()
        .map(|r| r.get::<_, String>(0).split(':').next().unwrap().to_owned())
        .collect()
}

/// Stages 3 to 5 forward, as the plan runs them.
fn stages_three_to_five(db: &mut Db) {
    run_sql(db, IMAGES_SCHEMA);
    db.run(&CollectImages, "").expect("collect");
    db.run(&CollectImages, "").expect("collect");
    run_sql(db, KEEP_SECTION_IMAGES);
    db.stage_five();
}

/// Stages 5 to 3 reverted, as the plan runs them.
fn revert_five_to_three(db: &mut Db) {
    run_sql(db, REVERT_SECTION_IMAGE_FK);
    run_sql(db, CARRY_IMAGES_BACK);
    run_sql(db, CARRY_IMAGES_BACK);
    run_sql(db, REVERT_IMAGES_SCHEMA);
}

#[test]
fn what_the_legacy_columns_cannot_hold_is_refused_naming_the_chapters() {
    let mut db = legacy_with_odd_rows(ImagesType::Jsonb);
    split(&mut db);
    run_sql(&mut db, UNHOLDABLE);
    let expected: BTreeSet<String> = (700001..=700007)
        .map(|id| format!("chapter {id}"))
        .collect();
    assert_eq!(refused_chapters(&mut db), expected);

    // Judged before the newer stages' reverts run, from whatever shape holds the images.
    stages_three_to_five(&mut db);
    assert_eq!(
        refused_chapters(&mut db),
        expected,
        "in the shape of stage 5"
    );
    revert_five_to_three(&mut db);
    assert_eq!(
        refused_chapters(&mut db),
        expected,
        "after the reverts of stages 5 to 3"
    );

    let before = (db.sections(), db.covers());
    let error = unsplit(&mut db, "").expect_err("refused");
    let text = error.to_string();
    for id in 700001..=700007 {
        assert!(text.contains(&format!("chapter {id}")), "{text}");
    }
    assert_eq!((db.sections(), db.covers()), before, "nothing changed");
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name = 'content'"),
        0
    );

    unsplit(&mut db, "allow_loss = true").expect("the loss declared");
    assert_eq!(db.count("SELECT count(*) FROM chapter_sections"), 0);
}

#[test]
fn every_chapter_the_split_wrote_meets_the_precondition_in_every_shape() {
    let mut db = legacy_with_odd_rows(ImagesType::Text);
    split(&mut db);
    assert_eq!(refused_chapters(&mut db), BTreeSet::new());
    stages_three_to_five(&mut db);
    assert_eq!(refused_chapters(&mut db), BTreeSet::new(), "stage 5");
    revert_five_to_three(&mut db);
    // Stages 3 to 5 there and back changed no section or cover: every chapter still
    // has the digest of its split, so every one gets its legacy values back.
    let note = unsplit(&mut db, "").expect("unsplit");
    assert!(
        note.contains(", 0 were written from sections that split back exactly, 0 with"),
        "{note}"
    );
}

#[test]
fn images_the_application_added_to_memoir_images_come_back_as_json() {
    let mut db = legacy_with_odd_rows(ImagesType::Jsonb);
    split(&mut db);
    run_sql(&mut db, IMAGES_SCHEMA);
    db.run(&CollectImages, "").expect("collect");
    // A paragraph section without an image gets one, the new way only; the chapter
    // had no images, so it gets its cover too.
    let (chapter, section): (i64, i64) = {
        let row = db
            .client
            .query_one(
                "SELECT s.chapter_id, s.id FROM chapter_sections s JOIN chapters c ON c.id = s.chapter_id
                 WHERE c.cover_image IS NULL AND s.position = 0 AND s.content <> ''
                 ORDER BY s.id LIMIT 1",
                &[],
            )
            .expect("a chapter with content and no images");
        (row.get(0), row.get(1))
    };
    db.client
        .execute(
            "INSERT INTO memoir_images (chapter_id, section_id, url, caption, meta) VALUES
               ($1, $2, 'added.jpg', 'new', '{\"w\": 3}'), ($1, NULL, 'added.jpg', 'new', '{\"w\": 3}')",
            &[&chapter, &section],
        )
        .expect("insert images");

    run_sql(&mut db, CARRY_IMAGES_BACK);
    run_sql(&mut db, CARRY_IMAGES_BACK);
    run_sql(&mut db, REVERT_IMAGES_SCHEMA);
    unsplit(&mut db, "").expect("unsplit");
    let images: String = db
        .client
        .query_one(
            "SELECT images::text FROM chapters WHERE id = $1",
            &[&chapter],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        images,
        r#"[{"w": 3, "url": "added.jpg", "caption": "new"}]"#
    );
}

#[test]
fn stage_five_reverted_gives_each_section_its_image_object_back() {
    let mut db = legacy_with_odd_rows(ImagesType::Jsonb);
    split(&mut db);
    run_sql(&mut db, IMAGES_SCHEMA);
    db.run(&CollectImages, "").expect("collect");
    let before = db.sections();
    assert!(
        before.iter().any(|s| s
            .3
            .as_ref()
            .is_some_and(|i| i.get("caption") == Some(&Value::Null))),
        "the data has a `\"caption\": null`"
    );
    run_sql(&mut db, KEEP_SECTION_IMAGES);
    db.stage_five();
    run_sql(&mut db, REVERT_SECTION_IMAGE_FK);
    assert_rows_eq(
        &db.sections(),
        &before,
        "sections after the revert of stage 5",
    );
}

/// Every split of the generated legacy data, written back from its sections alone (as
/// if the application had touched every chapter), splits again to the same sections
/// and cover: exactly, or with `"paragraph"` anchors added.
#[test]
fn every_generated_chapter_written_back_from_its_sections_splits_again_the_same() {
    let strip = |v: &Option<Value>| {
        v.clone().map(|mut v| {
            if let Value::Object(o) = &mut v {
                o.shift_remove("paragraph");
            }
            v
        })
    };
    let mut ways = BTreeMap::new();
    for chapter in planrun_memoir::generate::generate(SEED, 20_000) {
        let Ok(split) = split_chapter(chapter.content.as_deref(), chapter.images.as_deref()) else {
            continue;
        };
        let back = unsplit_chapter(&split.sections, split.cover_image.as_ref());
        *ways.entry(format!("{:?}", back.fidelity)).or_insert(0) += 1;
        let again = split_chapter(back.content.as_deref(), back.images.as_deref())
            .unwrap_or_else(|e| panic!("chapter {}: {e}", chapter.id));
        assert_eq!(
            again.sections.len(),
            split.sections.len(),
            "chapter {}",
            chapter.id
        );
        for (a, s) in again.sections.iter().zip(&split.sections) {
            assert_eq!(
                (&a.content, strip(&a.image)),
                (&s.content, strip(&s.image)),
                "chapter {}",
                chapter.id
            );
        }
        assert_eq!(
            strip(&again.cover_image),
            strip(&split.cover_image),
            "chapter {}",
            chapter.id
        );
    }
    assert_eq!(
        ways.keys().filter(|k| k.starts_with("Lossy")).count(),
        0,
        "{ways:?}"
    );
    assert!(ways.len() == 2, "both ways are exercised: {ways:?}");
}

/// What the way back costs at 100,000 generated chapters, printed (docs/memoir.md):
/// `cargo test --release -p planrun-memoir --test unsplit -- --ignored --nocapture way_back_at_scale`
#[test]
#[ignore = "a measurement, run by hand"]
fn way_back_at_scale() {
    use std::time::Instant;
    let mut db = Db::legacy(ImagesType::Jsonb);
    load_legacy(&mut db.client, SEED, 100_000, ImagesType::Jsonb).expect("load");
    run_sql(&mut db, SESSION);
    db.stage_one();
    let timed = |db: &mut Db, what: &str, f: &dyn Fn(&mut Db)| {
        let start = Instant::now();
        f(db);
        println!("{what}: {:.2} s", start.elapsed().as_secs_f64());
    };
    timed(&mut db, "memoir.split_chapters", &|db| {
        db.run(&SplitChapters, "").expect("split");
    });
    timed(&mut db, "memoir.keep_legacy", &|db| {
        db.run(&KeepLegacy, "").expect("keep");
    });
    run_sql(&mut db, FOREIGN_KEY);
    run_sql(&mut db, DROP_LEGACY);
    run_sql(&mut db, NEW_SHAPE_WRITES);
    timed(&mut db, "stage 2's revert precondition", &|db| {
        assert_eq!(refused_chapters(db), BTreeSet::new());
    });
    timed(&mut db, "memoir.unsplit_chapters", &|db| {
        println!("  {}", unsplit(db, "").expect("unsplit"));
    });
}
