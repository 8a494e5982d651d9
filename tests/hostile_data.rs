//! Hostile legacy data through the real `planrun` binary and the memoir plan: odd
//! Unicode in content and images, invalid and deeply nested JSON, numbers and escapes
//! `jsonb` cannot store, a 5 MB chapter and a chapter with 10,000 images. Each valid row
//! must migrate exactly as the pure `split_chapter` rules say (and pass every
//! verification of the plan, whose SQL paragraph rule in `plans/memoir/session.sql` is
//! independent of the Rust one); each invalid row must fail the stage naming the chapter
//! id and JSON path, or be quarantined verbatim; and the process's memory must stay
//! bounded.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use planrun_engine::exit_codes;
use planrun_memoir::legacy::{create_legacy_schema, insert_chapter, load_legacy, ImagesType};
use planrun_tests::{describe, memoir_plan_with, planrun, planrun_command, repo_root, TestDb};
use serde_json::Value;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// Normal generated chapters loaded next to the hostile ones.
const NORMAL_CHAPTERS: usize = 300;

/// First id of the hostile chapters (the generated ones are numbered from 1).
const HOSTILE_IDS: i64 = 10_000;

/// `n` arrays nested in one another around a `0`.
fn nested_arrays(n: usize) -> String {
    format!("{}0{}", "[".repeat(n), "]".repeat(n))
}

/// `n` levels alternating objects and arrays: `{"a": [{"a": [...]}]}`.
fn nested_mixed(n: usize) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for level in 0..n {
        if level % 2 == 0 {
            open.push_str(r#"{"a": "#);
            close.insert(0, '}');
        } else {
            open.push('[');
            close.insert(0, ']');
        }
    }
    format!("{open}null{close}")
}

/// A valid hostile row: a label for messages, content, and the images JSON text.
struct Valid {
    label: &'static str,
    content: Option<String>,
    images: Option<String>,
}

fn valid(label: &'static str, content: &str, images: Option<&str>) -> Valid {
    Valid {
        label,
        content: Some(content.to_owned()),
        images: images.map(str::to_owned),
    }
}

/// Rows that are valid by the spec in every images column type.
fn valid_hostile_rows() -> Vec<Valid> {
    let zalgo = format!("Z{}algo", "\u{301}\u{316}\u{33f}\u{35c}".repeat(40));
    vec![
        valid(
            "ZWJ emoji sequences",
            "👨\u{200d}👩\u{200d}👧\u{200d}👦 family\n\n🏳\u{fe0f}\u{200d}🌈\u{200d}\n\n👩🏽\u{200d}💻 code",
            Some(r#"[{"url": "👨‍👩‍👧.jpg", "caption": "🧑‍🤝‍🧑", "paragraph": 2, "🏳️‍🌈": "flag"}, "🐈‍⬛.png"]"#),
        ),
        valid(
            "combining marks",
            &format!("e\u{301}\u{302}\u{303}\u{304}\n\u{301}\u{301}\u{301}\n\n{zalgo}\n\n\u{300}"),
            Some(r#"[{"url": "A\u030a.jpg", "caption": "Å", "Å": "A\u030a", "paragraph": 3}]"#),
        ),
        valid(
            "U+2028/U+2029 inside content",
            "a\u{2028}b\u{2029}c\n\u{2028}\n\u{2029}\u{2029}\nd\u{2028}\n\u{85}\ne\u{2029}",
            Some("[{\"url\": \"ls.jpg\", \"caption\": \"x\u{2028}y\u{2029}z\", \"esc\": \"\\u2028\\u2029\"}]"),
        ),
        valid(
            "BOM at the start of content",
            "\u{feff}Title line\n\nBody\n\u{feff}\nafter a BOM-only line",
            None,
        ),
        valid(
            "NBSP and U+3000-only lines",
            "\u{3000}\u{3000}第一段。\n\u{3000}\n\u{a0}\u{a0}\n\u{3000}\u{3000}第二段，\n续行。\n\u{3000}\u{a0} \t\n\u{3000}\u{3000}第三段。\u{3000}",
            Some(r#"["a.jpg", {"url": "b.jpg", "paragraph": 1, "caption": "\u3000说明"}]"#),
        ),
        valid(
            "RTL text and direction marks",
            "שלום עולם\n\u{200f}\n\nمرحبا بالعالم \u{202b}embedded\u{202c}\n\u{61c}\n\n\u{200e}ltr mark",
            Some(r#"[{"url": "ع.jpg", "caption": "صورة", "paragraph": 0, "כיוון": "rtl"}, {"url": "ש.jpg", "paragraph": 9}]"#),
        ),
        valid(
            "lone CR line endings",
            "one\rtwo\r\rthree\r\n\rfour\r \r\u{3000}\rfive\r",
            Some(r#"["cr.jpg", {"url": "cr2.jpg", "paragraph": 2}]"#),
        ),
        valid(
            "every White_Space character on one blank line",
            "x\n\t\u{b}\u{c} \u{85}\u{a0}\u{1680}\u{2000}\u{2001}\u{2002}\u{2003}\u{2004}\u{2005}\u{2006}\u{2007}\u{2008}\u{2009}\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}\ny",
            Some("[]"),
        ),
        valid(
            "invisible characters that are not White_Space",
            "x\n\u{200b}\n\u{180e}\n\u{2060}\n\u{feff}\n\u{1c}\u{1d}\u{1e}\u{1f}\n\u{200d}\ny",
            Some("null"),
        ),
        valid(
            "only white space content, with an image",
            "\u{3000}\n\u{2028}\r\n\u{a0}\r \r",
            Some(r#"["only.jpg"]"#),
        ),
        valid(
            "escapes and JSON white space around the images",
            "p",
            Some(" \r\n\t[ \"sp.jpg\" ,\n {\"url\":\"\\ud83d\\ude00.jpg\",\"caption\":\"\\u00e9\\u0301\"} ]\n "),
        ),
        valid(
            "numbers at the edge of numeric's range",
            "edge",
            Some(r#"[{"url": "edge.jpg", "most": 9.9e131071, "finest": -1.5e-16382, "zero": 0e999999, "paragraph": 0}]"#),
        ),
        valid(
            "nesting 100 deep in an extra key (below the parser's limit)",
            "deep",
            Some(&format!(
                r#"[{{"url": "deep.jpg", "exif": {}, "n": {}}}]"#,
                nested_mixed(100),
                nested_arrays(120)
            )),
        ),
    ]
}

/// An invalid hostile row and the error it must produce.
struct Invalid {
    label: &'static str,
    content: Option<String>,
    images: String,
    /// The column types that can hold the value at all.
    types: &'static [ImagesType],
    path: &'static str,
    reason: &'static str,
}

const ALL: &[ImagesType] = &ImagesType::ALL;
const NOT_JSONB: &[ImagesType] = &[ImagesType::Json, ImagesType::Text];
const TEXT: &[ImagesType] = &[ImagesType::Text];

fn invalid_hostile_rows() -> Vec<Invalid> {
    let content = Some("kept\r\nverbatim\u{2028} \u{3000}\n\n👨\u{200d}👩".to_owned());
    let row = |label, images: String, types, path, reason| Invalid {
        label,
        content: content.clone(),
        images,
        types,
        path,
        reason,
    };
    vec![
        row(
            "invalid JSON: trailing comma",
            r#"[{"url": "a.jpg",}]"#.to_owned(),
            TEXT,
            "images",
            "not valid JSON: trailing comma",
        ),
        row(
            "invalid JSON: truncated",
            r#"["a.jpg", {"url": "b.jpg""#.to_owned(),
            TEXT,
            "images",
            "not valid JSON: EOF while parsing",
        ),
        row(
            "invalid JSON: single quotes",
            "['a.jpg']".to_owned(),
            TEXT,
            "images",
            "not valid JSON",
        ),
        row(
            "BOM at the start of the images text",
            "\u{feff}[\"a.jpg\"]".to_owned(),
            TEXT,
            "images",
            "not valid JSON: expected value at line 1",
        ),
        row(
            "whole images value nested 100,000 deep (beyond PostgreSQL's own limit)",
            nested_arrays(100_000),
            TEXT,
            "images[0][0]",
            "nested more than 127 deep",
        ),
        row(
            "lone surrogate escape",
            r#"[{"url": "a.jpg", "caption": "\ud800"}]"#.to_owned(),
            NOT_JSONB,
            "images[0].caption",
            r"a lone surrogate \ud800 cannot be stored in jsonb",
        ),
        row(
            "number above numeric's range in an extra key",
            r#"["ok.jpg", {"url": "a.jpg", "x": 1e200000}]"#.to_owned(),
            NOT_JSONB,
            "images[1].x",
            "number 1e+200000 is outside the range PostgreSQL's numeric can store",
        ),
        row(
            "number with more decimals than numeric keeps, nested",
            r#"[{"url": "a.jpg", "meta": {"sizes": [1, 1e-16384]}}]"#.to_owned(),
            NOT_JSONB,
            "images[0].meta.sizes[1]",
            "number 1e-16384 is outside the range",
        ),
        row(
            "NUL escape in a url",
            r#"["ok.jpg", {"url": "a\u0000.jpg"}]"#.to_owned(),
            NOT_JSONB,
            "images[1].url",
            "U+0000",
        ),
        row(
            "extra key nested 200 deep",
            format!(
                r#"["a.jpg", {{"url": "b.jpg", "exif": {}}}]"#,
                nested_mixed(200)
            ),
            ALL,
            "images[1].exif",
            "nested more than 127 deep",
        ),
        row(
            "extra key nested 5,000 deep",
            format!(r#"[{{"url": "b.jpg", "a b": {}}}]"#, nested_arrays(5_000)),
            ALL,
            r#"images[0]["a b"]"#,
            "nested more than 127 deep",
        ),
        row(
            "whole images value nested 200 deep",
            nested_arrays(200),
            ALL,
            "images[0][0]",
            "nested more than 127 deep",
        ),
    ]
}

fn apply_args<'a>(plan: &'a str, db: &'a TestDb) -> Vec<&'a str> {
    vec![
        "apply",
        plan,
        "--include-optional",
        "--no-backup",
        "--format",
        "json",
        "--database-url",
        &db.url,
    ]
}

fn apply(cwd: &Path, plan: &str, db: &TestDb) -> (Output, Value) {
    let output = planrun(PLANRUN, cwd, &apply_args(plan, db), &[]);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}): {}", describe(&output)));
    (output, report)
}

/// Asserts a successful apply whose every verification ran and passed; returns how many
/// chapters the split quarantined.
fn assert_success(output: &Output, report: &Value) -> u64 {
    assert_eq!(output.status.code(), Some(0), "{}", describe(output));
    assert_eq!(report["outcome"], "applied", "{}", describe(output));
    let stages = report["stages"].as_array().unwrap();
    let split = stages.iter().find(|s| s["id"] == "split_chapters").unwrap();
    let checks = split["verifications"].as_array().unwrap();
    assert!(checks.len() >= 8, "{}", describe(output));
    for stage in stages {
        assert!(
            ["applied", "already_applied"].contains(&stage["status"].as_str().unwrap()),
            "{}",
            describe(output)
        );
        for check in stage["verifications"].as_array().unwrap() {
            assert_eq!(check["passed"], true, "{check}");
        }
    }
    split["rows_quarantined"].as_u64().unwrap_or(0)
}

fn legacy_db(images: ImagesType) -> TestDb {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, images).unwrap();
    load_legacy(&mut client, 21, NORMAL_CHAPTERS, images).unwrap();
    db
}

type Legacy = BTreeMap<i64, (Option<String>, Option<String>)>;

/// Every chapter's legacy (content, images as text), read before the migration.
fn legacy_rows(db: &TestDb) -> Legacy {
    db.client()
        .query(
            "SELECT id, content, images::text FROM chapters ORDER BY id",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// JSON values as PostgreSQL's jsonb stores them (key order, number spelling), in one
/// round trip.
fn as_jsonb(db: &TestDb, values: &[String]) -> Vec<Value> {
    db.client()
        .query(
            "SELECT j::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS u (j, n) ORDER BY n",
            &[&values],
        )
        .unwrap()
        .into_iter()
        .map(|row| serde_json::from_str(row.get(0)).unwrap())
        .collect()
}

type Sections = BTreeMap<(i64, i32), (String, Option<Value>)>;

/// After stage 5: every section as (chapter, position) -> (content, image object rebuilt
/// from memoir_images), and every chapter's cover.
fn migrated(db: &TestDb) -> (Sections, BTreeMap<i64, Option<Value>>) {
    let mut client = db.client();
    let sections = client
        .query(
            "SELECT s.chapter_id, s.position, s.content, \
             (SELECT jsonb_build_object('url', m.url, 'caption', m.caption) || m.meta \
              FROM memoir_images m WHERE m.id = s.image_id)::text \
             FROM chapter_sections s",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|row| {
            let image: Option<String> = row.get(3);
            (
                (row.get(0), row.get(1)),
                (row.get(2), image.map(|t| serde_json::from_str(&t).unwrap())),
            )
        })
        .collect();
    let covers = client
        .query("SELECT id, cover_image::text FROM chapters", &[])
        .unwrap()
        .into_iter()
        .map(|row| {
            let cover: Option<String> = row.get(1);
            (row.get(0), cover.map(|t| serde_json::from_str(&t).unwrap()))
        })
        .collect();
    (sections, covers)
}

/// Checks every chapter not in `quarantined` against the pure rules, through jsonb.
fn assert_matches_pure_split(db: &TestDb, legacy: &Legacy, quarantined: &[i64]) {
    let mut expected: Sections = BTreeMap::new();
    let mut expected_covers = BTreeMap::new();
    let mut pending: Vec<((i64, Option<i32>), String)> = Vec::new();
    for (id, (content, images)) in legacy {
        if quarantined.contains(id) {
            expected_covers.insert(*id, None);
            continue;
        }
        let split = planrun_memoir::split_chapter(content.as_deref(), images.as_deref())
            .unwrap_or_else(|e| panic!("chapter {id} is valid: {e}"));
        for section in split.sections {
            if let Some(image) = &section.image {
                pending.push(((*id, Some(section.position)), image.to_string()));
            }
            expected.insert((*id, section.position), (section.content, None));
        }
        expected_covers.insert(*id, None);
        if let Some(cover) = split.cover_image {
            pending.push(((*id, None), cover.to_string()));
        }
    }
    let texts: Vec<String> = pending.iter().map(|(_, t)| t.clone()).collect();
    let values = as_jsonb(db, &texts);
    for ((id, position), value) in pending.iter().map(|(key, _)| *key).zip(values) {
        match position {
            Some(position) => expected.get_mut(&(id, position)).unwrap().1 = Some(value),
            None => {
                expected_covers.insert(id, Some(value));
            }
        }
    }

    let (actual, covers) = migrated(db);
    assert_eq!(actual.len(), expected.len(), "number of sections");
    for (key, want) in &expected {
        let mut got = actual
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("section {key:?} missing"));
        // memoir_images reads a missing caption back as null.
        if let (Some(Value::Object(got_image)), Some(Value::Object(want_image))) =
            (&mut got.1, &want.1)
        {
            if !want_image.contains_key("caption") {
                got_image.remove("caption");
            }
        }
        assert!(&got == want, "section {key:?} differs");
    }
    assert!(covers == expected_covers, "covers differ");
}

fn insert(db: &TestDb, id: i64, content: Option<&str>, images: Option<&str>) {
    insert_chapter(&mut db.client(), 1, id, content, images)
        .unwrap_or_else(|e| panic!("insert chapter {id}: {e}"));
}

fn insert_valid_rows(db: &TestDb) -> Vec<i64> {
    valid_hostile_rows()
        .iter()
        .zip(HOSTILE_IDS..)
        .map(|(row, id)| {
            insert(db, id, row.content.as_deref(), row.images.as_deref());
            id
        })
        .collect()
}

fn valid_rows_migrate_exactly(images: ImagesType) {
    let db = legacy_db(images);
    let ids = insert_valid_rows(&db);
    let legacy = legacy_rows(&db);
    for (row, id) in valid_hostile_rows().iter().zip(&ids) {
        let split = planrun_memoir::split_chapter(legacy[id].0.as_deref(), legacy[id].1.as_deref());
        assert!(split.is_ok(), "{}: {split:?}", row.label);
    }
    let (output, report) = apply(&repo_root(), "plans/memoir.toml", &db);
    assert_eq!(assert_success(&output, &report), 0);
    assert_matches_pure_split(&db, &legacy, &[]);
}

#[test]
fn valid_hostile_rows_migrate_exactly_with_a_jsonb_images_column() {
    valid_rows_migrate_exactly(ImagesType::Jsonb);
}

#[test]
fn valid_hostile_rows_migrate_exactly_with_a_json_images_column() {
    valid_rows_migrate_exactly(ImagesType::Json);
}

#[test]
fn valid_hostile_rows_migrate_exactly_with_a_text_images_column() {
    valid_rows_migrate_exactly(ImagesType::Text);
}

#[test]
fn each_invalid_hostile_row_fails_the_stage_naming_the_chapter_and_json_path() {
    let db = legacy_db(ImagesType::Text);
    insert_valid_rows(&db);
    for (row, id) in invalid_hostile_rows().iter().zip(HOSTILE_IDS + 100..) {
        assert!(row.types.contains(&ImagesType::Text));
        insert(&db, id, row.content.as_deref(), Some(&row.images));
        let (output, report) = apply(&repo_root(), "plans/memoir.toml", &db);
        assert_eq!(
            output.status.code(),
            Some(exit_codes::STEP_FAILED),
            "{}: {}",
            row.label,
            describe(&output)
        );
        let split = &report["stages"][1];
        assert_eq!(split["id"], "split_chapters");
        let message = split["error"]["message"].as_str().unwrap();
        let want = format!("invalid row in chapters (id {id}): {}: ", row.path);
        assert!(
            message.starts_with(&want) && message.contains(row.reason),
            "{}: {message}",
            row.label
        );
        assert!(message.len() < 300, "a short message: {message}");
        eprintln!("{}: exit 13: {message}", row.label);
        db.execute(&format!("DELETE FROM chapters WHERE id = {id}"));
    }
    // With the bad rows gone, the same database migrates.
    let (output, report) = apply(&repo_root(), "plans/memoir.toml", &db);
    assert_success(&output, &report);
}

#[test]
fn json_and_jsonb_columns_refuse_what_postgresql_cannot_parse() {
    for images in [ImagesType::Jsonb, ImagesType::Json] {
        let db = TestDb::new();
        create_legacy_schema(&mut db.client(), images).unwrap();
        for row in invalid_hostile_rows() {
            let result = insert_chapter(&mut db.client(), 1, 1, None, Some(&row.images));
            assert_eq!(
                result.is_ok(),
                row.types.contains(&images),
                "{images} {}: {result:?}",
                row.label
            );
            if let Err(e) = result {
                let e = e
                    .as_db_error()
                    .expect("a server error")
                    .message()
                    .to_owned();
                assert!(
                    e.contains("stack depth limit exceeded")
                        || e.contains("invalid input syntax for type json")
                        || e.contains("unsupported Unicode escape sequence")
                        || e.contains("Unicode low surrogate")
                        || e.contains("value overflows numeric format"),
                    "{images} {}: {e}",
                    row.label
                );
            }
            db.execute("DELETE FROM chapters");
        }
    }
}

fn quarantine_mode(images: ImagesType) {
    let db = legacy_db(images);
    insert_valid_rows(&db);
    let rows: Vec<(Invalid, i64)> = invalid_hostile_rows()
        .into_iter()
        .filter(|row| row.types.contains(&images))
        .zip(HOSTILE_IDS + 100..)
        .collect();
    for (row, id) in &rows {
        insert(&db, *id, row.content.as_deref(), Some(&row.images));
    }
    let legacy = legacy_rows(&db);
    let plan = memoir_plan_with(r#"on_invalid = "quarantine""#);
    let (output, report) = apply(plan.path(), "memoir.toml", &db);
    assert_eq!(
        assert_success(&output, &report),
        rows.len() as u64,
        "{}",
        describe(&output)
    );

    let mut client = db.client();
    for (row, id) in &rows {
        let q = client
            .query_one(
                "SELECT content, images, images_type, path, reason FROM planrun.memoir_quarantine WHERE chapter_id = $1",
                &[id],
            )
            .unwrap_or_else(|e| panic!("{}: quarantined: {e}", row.label));
        let (content, images_text) = &legacy[id];
        assert_eq!(&q.get::<_, Option<String>>(0), content, "{}", row.label);
        assert_eq!(&q.get::<_, Option<String>>(1), images_text, "{}", row.label);
        if images != ImagesType::Jsonb {
            assert_eq!(q.get::<_, Option<&str>>(1), Some(row.images.as_str()));
        }
        assert_eq!(q.get::<_, &str>(2), images.sql());
        assert_eq!(q.get::<_, &str>(3), row.path, "{}", row.label);
        let reason: &str = q.get(4);
        assert!(reason.contains(row.reason), "{}: {reason}", row.label);
    }
    let ids: Vec<i64> = rows.iter().map(|(_, id)| *id).collect();
    assert_matches_pure_split(&db, &legacy, &ids);
}

#[test]
fn quarantine_keeps_invalid_hostile_rows_verbatim_with_a_text_images_column() {
    quarantine_mode(ImagesType::Text);
}

#[test]
fn quarantine_keeps_invalid_hostile_rows_verbatim_with_a_json_images_column() {
    quarantine_mode(ImagesType::Json);
}

#[test]
fn quarantine_keeps_invalid_hostile_rows_verbatim_with_a_jsonb_images_column() {
    quarantine_mode(ImagesType::Jsonb);
}

/// About 5 MB of content: ~50,000 paragraphs of mixed scripts, emoji, combining marks,
/// U+2028, NBSP/U+3000 blank lines and all three line endings.
fn five_megabyte_content() -> String {
    const TARGET: usize = 5 * 1024 * 1024;
    let mut content = String::with_capacity(TARGET + 256);
    let mut n = 0u64;
    while content.len() < TARGET {
        let ending = ["\n", "\r\n", "\r"][(n % 3) as usize];
        content.push_str(&format!(
            "\u{3000}\u{3000}第{n}段 👨\u{200d}👩\u{200d}👧 e\u{301} שלום{ending}續行\u{2028}مرحبا {n}{ending}\u{a0}\u{3000}{ending}"
        ));
        n += 1;
    }
    content
}

/// 10,000 image elements: strings, anchored objects (some out of range), captions,
/// extras with odd keys.
fn ten_thousand_images() -> String {
    let elements: Vec<Value> = (0..10_000u64)
        .map(|i| match i % 4 {
            0 => Value::String(format!("img/{i}.jpg")),
            1 => serde_json::json!({"url": format!("img/{i}.jpg"), "paragraph": (i * 7) % 600}),
            2 => serde_json::json!({"url": format!("img/{i}.jpg"), "caption": format!("说明 {i} 🏳️‍🌈"), "w": i, "ключ": [i, {"x": null}]}),
            _ => serde_json::json!({"url": format!("img/{i}.jpg"), "caption": null, "paragraph": 1_000_000 + i}),
        })
        .collect();
    Value::Array(elements).to_string()
}

/// Runs the binary and polls its peak resident set (`VmHWM`) until it exits; returns
/// the output and the peak in KiB.
fn run_measuring_peak_rss(cwd: &Path, args: &[&str]) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = planrun_command(PLANRUN, cwd, args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "planrun still runs"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: std::fs::read(dir.path().join("stdout")).unwrap(),
        stderr: std::fs::read(dir.path().join("stderr")).unwrap(),
    };
    (output, peak_kib)
}

#[test]
fn a_five_megabyte_chapter_and_ten_thousand_images_stay_in_bounded_memory() {
    const BOUND_KIB: u64 = 200 * 1024;
    let db = legacy_db(ImagesType::Jsonb);

    // Baseline: the normal chapters alone, applied and rolled back; no application
    // runs, so the dry run may hold its locks to the end.
    let mut args = apply_args("plans/memoir.toml", &db);
    args.push("--dry-run");
    args.push("--hold-locks");
    let (output, baseline_kib) = run_measuring_peak_rss(&repo_root(), &args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let content = five_megabyte_content();
    let big_images = r#"["cover.jpg", {"url": "end.jpg", "paragraph": 49999}, {"url": "far.jpg", "paragraph": 99999999999999999999999}]"#;
    insert(&db, HOSTILE_IDS, Some(&content), Some(big_images));
    let many = ten_thousand_images();
    let paragraphs: String = (0..600)
        .map(|i| format!("段落 {i} \u{202b}rtl\u{202c}\r\n\u{3000}\r\n"))
        .collect();
    insert(&db, HOSTILE_IDS + 1, Some(&paragraphs), Some(&many));
    let legacy = legacy_rows(&db);
    let (output, peak_kib) =
        run_measuring_peak_rss(&repo_root(), &apply_args("plans/memoir.toml", &db));
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}): {}", describe(&output)));
    assert_success(&output, &report);
    eprintln!(
        "peak RSS of planrun apply: {} KiB with a {} byte chapter and a {} image chapter \
         ({} KiB for the {NORMAL_CHAPTERS} normal chapters alone)",
        peak_kib,
        content.len(),
        10_000,
        baseline_kib
    );
    assert!(peak_kib > 0, "VmHWM was read");
    assert!(
        peak_kib < BOUND_KIB,
        "peak RSS {peak_kib} KiB exceeds {BOUND_KIB} KiB"
    );

    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM chapter_sections WHERE chapter_id = {}",
            HOSTILE_IDS + 1
        )),
        "10000"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM memoir_images WHERE chapter_id = {}",
            HOSTILE_IDS + 1
        )),
        "10001"
    );
    assert_matches_pure_split(&db, &legacy, &[]);
}
