//! The synthetic legacy data generator: deterministic, valid, and varied enough to cover
//! every shape the spec's rules distinguish.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use planrun_memoir::generate::{
    chapter, generate, invalid_images_cases, memoir_count, memoirs, LegacyChapter,
};
use planrun_memoir::{image_row, paragraphs, parse_images, split_chapter};
use serde_json::Value;

const SEED: u64 = 20_240_601;

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let a: Vec<LegacyChapter> = generate(SEED, 300).collect();
    let b: Vec<LegacyChapter> = generate(SEED, 300).collect();
    let c: Vec<LegacyChapter> = generate(SEED + 1, 300).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let titles = |seed| memoirs(seed, 300).map(|m| m.title).collect::<Vec<_>>();
    assert_eq!(titles(SEED), titles(SEED));
}

#[test]
fn a_chapter_depends_only_on_seed_and_index() {
    let all: Vec<LegacyChapter> = generate(SEED, 200).collect();
    assert_eq!(chapter(SEED, 137), all[137]);
    assert_eq!(generate(SEED, 200).nth(150).as_ref(), Some(&all[150]));
    let prefix: Vec<LegacyChapter> = generate(SEED, 50).collect();
    assert_eq!(prefix[..], all[..50]);
}

#[test]
fn ids_memoirs_and_positions_are_consistent() {
    for n in [0, 1, 12, 13, 139, 140, 141, 1_000] {
        let chapters: Vec<LegacyChapter> = generate(SEED, n).collect();
        assert_eq!(chapters.len(), n);
        assert_eq!(generate(SEED, n).len(), n);
        let ids: Vec<i64> = chapters.iter().map(|c| c.id).collect();
        assert_eq!(ids, (1..=n as i64).collect::<Vec<_>>());
        let memoir_ids: Vec<i64> = memoirs(SEED, n).map(|m| m.id).collect();
        assert_eq!(memoir_ids, (1..=memoir_count(n) as i64).collect::<Vec<_>>());
        let referenced: BTreeSet<i64> = chapters.iter().map(|c| c.memoir_id).collect();
        assert_eq!(referenced.into_iter().collect::<Vec<_>>(), memoir_ids);

        let mut last: HashMap<i64, i32> = HashMap::new();
        for c in &chapters {
            let expected = last.get(&c.memoir_id).map_or(1, |p| p + 1);
            assert_eq!(c.position, expected, "chapter {}", c.id);
            last.insert(c.memoir_id, c.position);
            assert!(!c.title.is_empty());
        }
    }
}

#[test]
fn every_generated_row_is_valid_and_every_image_makes_a_row() {
    for c in generate(SEED, 3_000) {
        let split = split_chapter(c.content.as_deref(), c.images.as_deref())
            .unwrap_or_else(|e| panic!("chapter {} invalid: {e}\n{:?}", c.id, c.images));
        let images = split
            .cover_image
            .iter()
            .chain(split.sections.iter().filter_map(|s| s.image.as_ref()));
        for image in images {
            image_row(image).unwrap_or_else(|e| panic!("chapter {}: {e}", c.id));
        }
    }
}

#[test]
fn content_sizes_are_realistic() {
    let n = 2_000;
    let bytes: usize = generate(SEED, n)
        .map(|c| c.content.map_or(0, |s| s.len()))
        .sum();
    let average = bytes / n;
    assert!(
        (400..=1_500).contains(&average),
        "average content {average} bytes"
    );
}

/// Every shape the spec distinguishes, recognised from the data itself.
fn shapes(c: &LegacyChapter) -> Vec<&'static str> {
    let mut found = Vec::new();
    let mut add = |yes: bool, shape| {
        if yes {
            found.push(shape);
        }
    };
    let content = c.content.as_deref();
    let text = content.unwrap_or("");
    let paragraph_count = paragraphs(content).len();
    add(content.is_none(), "content NULL");
    add(content == Some(""), "content empty");
    add(
        !text.is_empty() && text.chars().all(char::is_whitespace),
        "content whitespace-only",
    );
    add(
        text.chars()
            .any(|ch| ('\u{4e00}'..='\u{9fff}').contains(&ch)),
        "Chinese text",
    );
    add(text.contains("the "), "English text");
    add(text.contains("\u{3000}\u{3000}"), "U+3000 indentation");
    add(text.contains("\r\n"), "CRLF");
    add(text.replace("\r\n", "").contains('\r'), "lone CR");
    let lines: Vec<&str> = text.split(['\n', '\r']).collect();
    let blank = |ch: char| {
        lines
            .iter()
            .any(|l| !l.is_empty() && l.chars().all(char::is_whitespace) && l.contains(ch))
    };
    add(blank(' '), "blank line with spaces");
    add(blank('\t'), "blank line with a tab");
    add(blank('\u{3000}'), "blank line with U+3000");
    add(blank('\u{a0}'), "blank line with NBSP");
    add(paragraph_count >= 6, "many paragraphs");

    let raw = c.images.as_deref();
    add(raw.is_none(), "images NULL");
    add(raw == Some("null"), "images JSON null");
    add(
        raw.is_some_and(|r| r.trim() == "[]" || r.trim() == "[ ]"),
        "images []",
    );
    add(
        raw.is_some_and(|r| r.contains("\\u") || r.contains("\\/")),
        "escaped JSON",
    );
    add(
        raw.is_some_and(|r| r.contains("\n  ")),
        "pretty-printed JSON",
    );
    let Some(Value::Array(elements)) = raw.and_then(|r| serde_json::from_str::<Value>(r).ok())
    else {
        return found;
    };
    let images = parse_images(raw).unwrap_or_default();
    add(elements.iter().any(Value::is_string), "string element");
    add(elements.iter().any(Value::is_object), "object element");
    let has =
        |key: &str, test: fn(&Value) -> bool| elements.iter().any(|e| e.get(key).is_some_and(test));
    add(has("caption", Value::is_string), "caption string");
    add(has("caption", Value::is_null), "caption null");
    add(has("exif", Value::is_object), "extra nested object");
    add(has("tags", Value::is_array), "extra array");
    add(has("width", Value::is_number), "extra number");
    add(
        has("id", |v| v.as_i64().is_none() && v.as_u64().is_some()),
        "extra integer above i64",
    );
    add(
        elements.iter().any(|e| {
            e.as_object()
                .is_some_and(|o| o.keys().next().map(String::as_str) != Some("url"))
        }),
        "url not the first key",
    );
    let anchors: Vec<u64> = images.iter().filter_map(|i| i.paragraph).collect();
    add(
        anchors.iter().any(|&k| (k as usize) < paragraph_count),
        "anchor in range",
    );
    add(
        anchors.iter().any(|&k| k >= paragraph_count as u64),
        "anchor out of range",
    );
    add(anchors.contains(&u64::MAX), "anchor above u64");
    let distinct: BTreeSet<u64> = anchors.iter().copied().collect();
    add(distinct.len() < anchors.len(), "colliding anchors");
    add(
        elements.len() > paragraph_count && paragraph_count > 0,
        "more images than paragraphs",
    );
    add(elements.len() > 6, "many images");
    found
}

#[test]
fn two_thousand_chapters_cover_every_shape() {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for c in generate(SEED, 2_000) {
        seen.extend(shapes(&c));
    }
    let all = [
        "content NULL",
        "content empty",
        "content whitespace-only",
        "Chinese text",
        "English text",
        "U+3000 indentation",
        "CRLF",
        "lone CR",
        "blank line with spaces",
        "blank line with a tab",
        "blank line with U+3000",
        "blank line with NBSP",
        "many paragraphs",
        "images NULL",
        "images JSON null",
        "images []",
        "escaped JSON",
        "pretty-printed JSON",
        "string element",
        "object element",
        "caption string",
        "caption null",
        "extra nested object",
        "extra array",
        "extra number",
        "extra integer above i64",
        "url not the first key",
        "anchor in range",
        "anchor out of range",
        "anchor above u64",
        "colliding anchors",
        "more images than paragraphs",
        "many images",
    ];
    let missing: Vec<&str> = all.iter().copied().filter(|s| !seen.contains(s)).collect();
    assert!(missing.is_empty(), "shapes never generated: {missing:?}");
}

#[test]
fn invalid_cases_are_all_rejected_and_have_distinct_inputs() {
    let cases = invalid_images_cases();
    let inputs: BTreeSet<&str> = cases.iter().map(|(json, _)| *json).collect();
    assert_eq!(inputs.len(), cases.len());
    for (json, path) in cases {
        let e = parse_images(Some(json)).map(|_| ()).expect_err(json);
        assert_eq!(e.path, path, "{json}");
    }
}

/// Run with `cargo test --release -p planrun-memoir --test generator -- --ignored --nocapture`.
#[test]
#[ignore = "throughput measurement, meaningful only in release mode"]
fn throughput_of_one_million_chapters() {
    let start = Instant::now();
    let mut bytes = 0usize;
    for c in generate(SEED, 1_000_000) {
        bytes += c.content.map_or(0, |s| s.len()) + c.images.map_or(0, |s| s.len());
    }
    let generated = start.elapsed();
    let start = Instant::now();
    let mut sections = 0usize;
    for c in generate(SEED, 1_000_000) {
        let split = split_chapter(c.content.as_deref(), c.images.as_deref());
        sections += split.map_or(0, |s| s.sections.len());
    }
    let total = start.elapsed();
    println!(
        "generated 1,000,000 chapters ({} MB) in {generated:?}; generated and split them ({sections} sections) in {total:?}",
        bytes / 1_000_000
    );
}
