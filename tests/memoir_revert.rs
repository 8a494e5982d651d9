//! The memoir plan's way back end to end through the `planrun` binary: apply, then
//! `revert --to start` gives the application's schema and data of before the apply
//! (pg_dump compared, the one documented difference being where `content` and `images`
//! stand among the columns of `chapters`); the application's writes in the new shape
//! come back in the old and split again to the same sections; hostile legacy rows round
//! trip; a revert that would lose data is refused (exit 20) with nothing changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use planrun_engine::exit_codes;
use planrun_memoir::generate::tricky_valid_images_cases;
use planrun_memoir::legacy::{create_legacy_schema, insert_chapter, load_legacy, ImagesType};
use planrun_tests::{describe, planrun, repo_root, TestDb};
use serde_json::Value;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");
const PLAN: &str = "plans/memoir.toml";

fn run(db: &TestDb, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--no-backup", "--database-url", &db.url]);
    planrun(PLANRUN, &repo_root(), &all, &[])
}

fn apply_all(db: &TestDb) {
    let output = run(db, &["apply", PLAN, "--include-optional"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

fn revert_to_start(db: &TestDb) -> Output {
    run(db, &["revert", PLAN, "--to", "start"])
}

/// Hostile legacy content, each valid by the spec.
const HOSTILE_CONTENT: [&str; 8] = [
    "\u{3000}\u{3000}第一段。\n\u{3000}\n\u{a0}\u{a0}\n\u{3000}\u{3000}第二段，\n续行。\n\u{3000}\u{a0} \t\n\u{3000}\u{3000}第三段。\u{3000}",
    "one\rtwo\r\rthree\r\n\rfour\r \r\u{3000}\rfive\r",
    "a\u{2028}b\u{2029}c\n\u{2028}\n\u{2029}\u{2029}\nd\u{2028}\n\u{85}\ne\u{2029}",
    "\u{feff}Title line\n\nBody\n\u{feff}\nafter a BOM-only line",
    "\n\n\nleading and trailing blank lines\n\n\n",
    "x\n\t\u{b}\u{c} \u{85}\u{a0}\u{1680}\u{2000}\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}\ny",
    "",
    "👨\u{200d}👩\u{200d}👧 family\r\n\r\n🏳\u{fe0f}\u{200d}🌈",
];

/// A legacy database: generated chapters, then hostile content with each of the
/// generator's tricky images values.
fn legacy(images: ImagesType) -> TestDb {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, images).expect("legacy schema");
    load_legacy(&mut client, 24, 300, images).expect("legacy chapters");
    for (i, case) in tricky_valid_images_cases().into_iter().enumerate() {
        let content = HOSTILE_CONTENT[i % HOSTILE_CONTENT.len()];
        let content = (i % 9 != 8).then_some(content);
        insert_chapter(&mut client, 1, 50_000 + i as i64, content, Some(case))
            .unwrap_or_else(|e| panic!("insert {case}: {e}"));
    }
    insert_chapter(&mut client, 1, 60_000, None, None).expect("insert");
    db
}

/// `pg_dump` of the application's schema (planrun's own left out) and data, with the
/// columns of each table in name order: reverting puts `content` and `images` back at
/// the end of `chapters`, which is the one difference PostgreSQL leaves.
fn dump(db: &TestDb) -> String {
    let pg_dump = db.cluster.bin_dir().join("pg_dump");
    let output = Command::new(&pg_dump)
        .args([
            "--no-owner",
            "--exclude-schema",
            "planrun",
            "--dbname",
            &db.url,
        ])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    columns_in_name_order(&String::from_utf8(output.stdout).expect("UTF-8 dump"))
}

fn columns_in_name_order(dump: &str) -> String {
    let mut out = Vec::new();
    let mut lines = dump.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") {
            continue;
        }
        if line.starts_with("CREATE TABLE ") && line.ends_with('(') {
            out.push(line.to_owned());
            let mut columns = Vec::new();
            while let Some(column) = lines.next_if(|l| *l != ");") {
                columns.push(column.trim_end_matches(',').to_owned());
            }
            columns.sort();
            out.extend(columns);
            continue;
        }
        if let Some(rest) = line.strip_prefix("COPY ") {
            let (table, columns) = rest.split_once(" (").expect("COPY lists its columns");
            let columns: Vec<&str> = columns
                .trim_end_matches(") FROM stdin;")
                .split(", ")
                .collect();
            let mut order: Vec<usize> = (0..columns.len()).collect();
            order.sort_by_key(|&i| columns[i]);
            let sorted: Vec<&str> = order.iter().map(|&i| columns[i]).collect();
            out.push(format!("COPY {table} ({}) FROM stdin;", sorted.join(", ")));
            let mut rows = Vec::new();
            while let Some(row) = lines.next_if(|l| *l != "\\.") {
                let fields: Vec<&str> = row.split('\t').collect();
                rows.push(
                    order
                        .iter()
                        .map(|&i| fields[i])
                        .collect::<Vec<_>>()
                        .join("\t"),
                );
            }
            rows.sort();
            out.extend(rows);
            continue;
        }
        out.push(line.to_owned());
    }
    out.join("\n")
}

/// The first line where two dumps differ, with its neighbours.
fn first_difference(before: &str, after: &str) -> String {
    let before: Vec<&str> = before.lines().collect();
    let after: Vec<&str> = after.lines().collect();
    let at = before
        .iter()
        .zip(&after)
        .position(|(b, a)| b != a)
        .unwrap_or(before.len().min(after.len()));
    let around = |lines: &[&str]| lines[at.saturating_sub(3)..(at + 3).min(lines.len())].join("\n");
    format!(
        "line {at}:\n--- before\n{}\n--- after\n{}",
        around(&before),
        around(&after)
    )
}

#[test]
fn revert_to_start_gives_back_the_application_schema_and_data_of_before_the_apply() {
    for images in [ImagesType::Jsonb, ImagesType::Json, ImagesType::Text] {
        let db = legacy(images);
        let before = dump(&db);
        apply_all(&db);
        let output = revert_to_start(&db);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let after = dump(&db);
        assert!(
            before == after,
            "{images}: {}",
            first_difference(&before, &after)
        );

        // And the plan applies again, from the start.
        apply_all(&db);
    }
}

/// The application's writes in the new shape (after stage 5: sections point at
/// memoir_images), each one the old shape can hold.
const NEW_SHAPE_WRITES: &str = "
UPDATE chapter_sections SET content = content || ' (edited)'
WHERE chapter_id % 7 = 0 AND content <> '';
WITH renumbered AS (
    DELETE FROM chapter_sections s
    WHERE s.chapter_id % 13 = 0 AND s.image_id IS NULL
      AND s.position = (SELECT max(position) FROM chapter_sections WHERE chapter_id = s.chapter_id)
    RETURNING s.chapter_id)
SELECT count(*) FROM renumbered;
UPDATE memoir_images m SET caption = 'changed', meta = meta || '{\"edited\": true}'
WHERE m.section_id IS NOT NULL AND m.chapter_id % 5 = 0
  AND NOT EXISTS (SELECT 1 FROM memoir_images c WHERE c.chapter_id = m.chapter_id AND c.section_id IS NULL);
INSERT INTO chapters (id, memoir_id, position, title, cover_image)
VALUES (80001, 1, 1000, 'added after the migration', '{\"url\": \"cover.jpg\"}'),
       (80002, 1, 1001, 'added, no content', NULL);
INSERT INTO memoir_images (chapter_id, section_id, url, caption, meta) VALUES (80001, NULL, 'cover.jpg', NULL, '{}');
WITH s AS (
    INSERT INTO chapter_sections (chapter_id, position, content) VALUES
        (80001, 0, '　　新的一段。'), (80001, 1, 'second paragraph')
    RETURNING id, position)
INSERT INTO memoir_images (chapter_id, section_id, url, caption, meta)
SELECT 80001, id, 'cover.jpg', NULL, '{}' FROM s WHERE position = 1;
UPDATE chapter_sections s SET image_id = m.id FROM memoir_images m WHERE m.section_id = s.id AND s.chapter_id = 80001;
";

type Sections = BTreeMap<(i64, i32), (String, Option<Value>)>;

/// Every section as (content, image object without `paragraph`), by chapter and
/// position, whichever shape holds the image.
fn sections(db: &TestDb) -> Sections {
    let has_image = db.scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapter_sections' AND column_name = 'image'",
    ) == "1";
    let sql = if has_image {
        "SELECT chapter_id, position, content, image::text FROM chapter_sections"
    } else {
        "SELECT s.chapter_id, s.position, s.content,
                (SELECT m.meta || jsonb_build_object('url', m.url)
                        || CASE WHEN m.caption IS NULL THEN '{}' ELSE jsonb_build_object('caption', m.caption) END
                 FROM memoir_images m WHERE m.id = s.image_id)::text
         FROM chapter_sections s"
    };
    db.client()
        .query(sql, &[])
        .expect("read sections")
        .into_iter()
        .map(|row| {
            let image: Option<String> = row.get(3);
            let image = image.map(|text| {
                let mut value: Value = serde_json::from_str(&text).expect("JSON");
                if let Value::Object(object) = &mut value {
                    object.shift_remove("paragraph");
                    if object.get("caption") == Some(&Value::Null) {
                        object.shift_remove("caption");
                    }
                }
                value
            });
            ((row.get(0), row.get(1)), (row.get(2), image))
        })
        .collect()
}

#[test]
fn writes_in_the_new_shape_come_back_and_split_again_to_the_same_sections() {
    let db = legacy(ImagesType::Jsonb);
    apply_all(&db);
    db.execute(NEW_SHAPE_WRITES);
    let written = sections(&db);
    assert!(written.contains_key(&(80001, 1)));

    let output = revert_to_start(&db);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let added = db.scalar("SELECT content || ' | ' || images::text FROM chapters WHERE id = 80001");
    assert!(
        added.contains("新的一段") && added.contains("cover.jpg"),
        "{added}"
    );

    apply_all(&db);
    let again = sections(&db);
    assert_eq!(again.len(), written.len());
    for (key, section) in &written {
        assert_eq!(again.get(key), Some(section), "section {key:?}");
    }
}

#[test]
fn a_revert_that_would_lose_data_is_refused_and_changes_nothing() {
    let db = legacy(ImagesType::Jsonb);
    apply_all(&db);
    db.execute(
        "INSERT INTO chapters (id, memoir_id, position, title) VALUES (70001, 1, 2000, 'two paragraphs in one section');
         INSERT INTO chapter_sections (chapter_id, position, content) VALUES (70001, 0, E'A\\n\\nB');",
    );
    let before = dump(&db);
    let output = revert_to_start(&db);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_REFUSED),
        "{}",
        describe(&output)
    );
    let text = describe(&output);
    assert!(text.contains("chapter 70001"), "{text}");
    assert!(before == dump(&db), "nothing changed");
}

/// Sections and a chapter of the collected shape (stages 1 to 4) for the tests of
/// images edited on either side: a chapter with a cover and at least two section
/// images, the section whose image is its cover and another; a section image of
/// another chapter that is not that chapter's cover.
struct Picked {
    chapter: String,
    cover_twin: String,
    other: String,
    json_side: String,
    json_side_chapter: String,
}

fn pick(db: &TestDb) -> Picked {
    let chapter = db.scalar(
        "SELECT c.id FROM chapters c WHERE c.cover_image IS NOT NULL
           AND (SELECT count(*) FROM chapter_sections s WHERE s.chapter_id = c.id AND s.image IS NOT NULL) >= 2
         ORDER BY c.id LIMIT 1",
    );
    let twin = |equal: &str, chapter_is: &str| {
        db.scalar(&format!(
            "SELECT s.id FROM chapter_sections s JOIN chapters c ON c.id = s.chapter_id
             WHERE s.chapter_id {chapter_is} AND s.image IS NOT NULL
               AND (s.image - 'paragraph' = c.cover_image - 'paragraph') = {equal}
             ORDER BY s.id LIMIT 1"
        ))
    };
    let json_side = twin("false", &format!("<> {chapter}"));
    Picked {
        json_side_chapter: db.scalar(&format!(
            "SELECT chapter_id FROM chapter_sections WHERE id = {json_side}"
        )),
        json_side,
        cover_twin: twin("true", &format!("= {chapter}")),
        other: twin("false", &format!("= {chapter}")),
        chapter,
    }
}

fn revert_to(db: &TestDb, stage: &str) -> Output {
    run(db, &["revert", PLAN, "--to", stage])
}

/// Issue 24: after stage 4 the application may write `memoir_images` as well as the
/// JSON it was collected from. An edit of a row (a cover and its section, another
/// section's caption and meta) and an edit of another section's JSON both come back
/// in the old shape: the way back carries each side the application changed.
#[test]
fn images_edited_on_either_side_after_stage_4_come_back_with_the_revert() {
    let db = legacy(ImagesType::Jsonb);
    let output = run(&db, &["apply", PLAN]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let p = pick(&db);
    db.execute(&format!(
        "UPDATE memoir_images SET url = 'edited-cover.jpg'
         WHERE chapter_id = {chapter} AND (section_id IS NULL OR section_id = {twin});
         UPDATE memoir_images SET caption = 'edited caption', meta = meta || '{{\"edited\": true}}'
         WHERE section_id = {other};
         UPDATE chapter_sections SET image = image || '{{\"caption\": \"json edit\"}}' WHERE id = {json};",
        chapter = p.chapter,
        twin = p.cover_twin,
        other = p.other,
        json = p.json_side,
    ));

    let output = revert_to(&db, "split_chapters");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let seen = db.scalar(&format!(
        "SELECT concat_ws(' | ',
                (SELECT cover_image->>'url' FROM chapters WHERE id = {chapter}),
                (SELECT image->>'url' FROM chapter_sections WHERE id = {twin}),
                (SELECT (image->>'caption') || ' ' || (image->>'edited') FROM chapter_sections WHERE id = {other}),
                (SELECT image->>'caption' FROM chapter_sections WHERE id = {json}))",
        chapter = p.chapter,
        twin = p.cover_twin,
        other = p.other,
        json = p.json_side,
    ));
    assert_eq!(
        seen, "edited-cover.jpg | edited-cover.jpg | edited caption true | json edit",
        "the JSON after the revert of stages 4 and 3"
    );

    let output = revert_to_start(&db);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let images = |chapter: &str| {
        db.scalar(&format!(
            "SELECT images::text FROM chapters WHERE id = {chapter}"
        ))
    };
    let edited = images(&p.chapter);
    for written in ["edited-cover.jpg", "edited caption", "\"edited\": true"] {
        assert!(edited.contains(written), "{written} in {edited}");
    }
    let json_side = images(&p.json_side_chapter);
    assert!(json_side.contains("json edit"), "{json_side}");
}

/// An image the application changed on both sides since stage 4, differently, cannot
/// come back whole: the revert refuses before it changes anything, naming the
/// section and the cover.
#[test]
fn an_image_changed_on_both_sides_differently_refuses_the_revert() {
    let db = legacy(ImagesType::Jsonb);
    let output = run(&db, &["apply", PLAN]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let p = pick(&db);
    db.execute(&format!(
        "UPDATE memoir_images SET caption = 'row side' WHERE section_id = {other};
         UPDATE chapter_sections SET image = image || '{{\"caption\": \"json side\"}}' WHERE id = {other};
         UPDATE memoir_images SET url = 'row-cover.jpg' WHERE chapter_id = {chapter} AND section_id IS NULL;
         UPDATE chapters SET cover_image = cover_image || '{{\"url\": \"json-cover.jpg\"}}' WHERE id = {chapter};",
        chapter = p.chapter,
        other = p.other,
    ));
    let before = dump(&db);
    let output = revert_to(&db, "split_chapters");
    assert_eq!(
        output.status.code(),
        Some(exit_codes::REVERT_REFUSED),
        "{}",
        describe(&output)
    );
    let text = describe(&output);
    assert!(text.contains(&format!("section {}", p.other)), "{text}");
    assert!(text.contains(&format!("chapter {}", p.chapter)), "{text}");
    assert!(before == dump(&db), "nothing changed");
}

/// Stage 5 makes `memoir_images` match the sections' JSON before it drops it: a row
/// the application edited after stage 4, its JSON unchanged, is carried into the JSON
/// first rather than overwritten by it; an image changed on both sides differently is
/// refused, naming it, before anything changes.
#[test]
fn stage_5_keeps_a_memoir_images_row_edited_after_stage_4() {
    let db = legacy(ImagesType::Jsonb);
    let output = run(&db, &["apply", PLAN]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let p = pick(&db);
    db.execute(&format!(
        "UPDATE memoir_images SET caption = 'row side' WHERE section_id IN ({other}, {json});
         UPDATE chapter_sections SET image = image || '{{\"caption\": \"json side\"}}' WHERE id = {json};",
        other = p.other,
        json = p.json_side,
    ));
    let output = run(&db, &["apply", PLAN, "--include-optional"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::PRECONDITION_FAILED),
        "{}",
        describe(&output)
    );
    let text = describe(&output);
    assert!(text.contains(&format!("section {}", p.json_side)), "{text}");

    db.execute(&format!(
        "UPDATE memoir_images SET caption = 'json side' WHERE section_id = {json}",
        json = p.json_side,
    ));
    let output = run(&db, &["apply", PLAN, "--include-optional"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let captions = db.scalar(&format!(
        "SELECT string_agg(m.caption, ' | ' ORDER BY s.id) FROM chapter_sections s
         JOIN memoir_images m ON m.id = s.image_id WHERE s.id IN ({other}, {json})",
        other = p.other,
        json = p.json_side,
    ));
    let expected = if p.other.parse::<i64>().unwrap() < p.json_side.parse::<i64>().unwrap() {
        "row side | json side"
    } else {
        "json side | row side"
    };
    assert_eq!(captions, expected);
}

#[test]
fn the_dump_normaliser_forgives_column_order_only() {
    let a = "CREATE TABLE public.t (\n    a int,\n    b text\n);\nCOPY public.t (a, b) FROM stdin;\n1\tx\n\\.";
    let b = "CREATE TABLE public.t (\n    b text,\n    a int\n);\nCOPY public.t (b, a) FROM stdin;\nx\t1\n\\.";
    let c = "CREATE TABLE public.t (\n    b text,\n    a int\n);\nCOPY public.t (b, a) FROM stdin;\ny\t1\n\\.";
    assert_eq!(columns_in_name_order(a), columns_in_name_order(b));
    assert_ne!(columns_in_name_order(a), columns_in_name_order(c));
    let _ = Path::new(PLAN);
}
