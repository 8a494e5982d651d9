//! The values the old application version writes: chapter content and images JSON in
//! every form the legacy data takes, random but each one distinct, so that a lost or
//! misplaced write cannot pass for another.

use std::fmt::Write as _;

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Chapter content as the legacy application wrote it: a few paragraphs separated by
/// blank (sometimes whitespace-only) lines, English or U+3000-indented Chinese,
/// `\n` or `\r\n`, now and then NULL or empty. Values of distinct `(writer, serial)`
/// pairs are distinct.
pub(crate) fn content(rng: &mut ChaCha8Rng, writer: usize, serial: u64) -> Option<String> {
    match rng.random_range(0..20) {
        0 => return None,
        1 => return Some(String::new()),
        _ => {}
    }
    let newline = if rng.random_ratio(1, 4) { "\r\n" } else { "\n" };
    let chinese = rng.random_ratio(1, 3);
    let mut text = String::new();
    for paragraph in 0..rng.random_range(1..=5) {
        if paragraph > 0 {
            text.push_str(newline);
            if rng.random_ratio(1, 5) {
                text.push_str(" \u{3000}\t");
            }
            text.push_str(newline);
        }
        let lines = if rng.random_ratio(1, 4) { 2 } else { 1 };
        for line in 0..lines {
            if line > 0 {
                text.push_str(newline);
            }
            if chinese {
                text.push_str("\u{3000}\u{3000}");
                text.push_str(CHINESE.choose(rng).expect("sentences"));
            } else {
                text.push_str(ENGLISH.choose(rng).expect("sentences"));
            }
        }
        let _ = write!(text, " [w{writer}#{serial}.{paragraph}]");
    }
    Some(text)
}

/// A valid legacy images value as JSON text: NULL, `null`, `[]`, or one to four
/// strings and objects (caption string, null or absent; an anchor, in range or
/// not; sometimes an extra key). Arrays of distinct `(writer, serial)` pairs are
/// distinct.
pub(crate) fn images(rng: &mut ChaCha8Rng, writer: usize, serial: u64) -> Option<String> {
    match rng.random_range(0..20) {
        0 | 1 => return None,
        2 => return Some("null".to_owned()),
        3 | 4 => return Some("[]".to_owned()),
        _ => {}
    }
    let elements = (0..rng.random_range(1..=4))
        .map(|i| {
            let url = format!("https://img.example/w{writer}/{serial}-{i}.jpg");
            if rng.random_ratio(1, 3) {
                return Value::String(url);
            }
            let mut object = Map::new();
            object.insert("url".into(), Value::String(url));
            match rng.random_range(0..3) {
                0 => {}
                1 => {
                    object.insert("caption".into(), Value::Null);
                }
                _ => {
                    object.insert("caption".into(), json!(format!("图 {i}: a caption")));
                }
            }
            if rng.random_ratio(1, 2) {
                object.insert("paragraph".into(), json!(rng.random_range(0..6)));
            }
            if rng.random_ratio(1, 4) {
                object.insert("width".into(), json!(rng.random_range(100..2000)));
            }
            Value::Object(object)
        })
        .collect();
    Some(Value::Array(elements).to_string())
}

const ENGLISH: [&str; 4] = [
    "We walked to the harbour before dawn.",
    "My grandmother kept every letter in a tin box.",
    "The winter of that year was the coldest anyone remembered.",
    "He never spoke about the war, not once.",
];

const CHINESE: [&str; 4] = [
    "那年冬天，我们搬到了海边的小镇。",
    "祖母把每一封信都收在铁盒里。",
    "天还没亮，我们就出发去港口。",
    "他从来不提起那段往事。",
];
