//! A deterministic generator of synthetic legacy memoir data, for tests and benchmarks.
//!
//! Every chapter is drawn from its own ChaCha8 stream (the seed's key, stream = chapter
//! index), so a chapter depends only on the seed and its index: the data set can be
//! generated streaming, in any order, or in parallel, and a failing chapter can be
//! regenerated alone with [`chapter`]. Output is stable for a given seed and version of
//! this crate and its locked `rand` dependencies.
//!
//! The data mixes what real legacy rows hold: Chinese and English prose, U+3000
//! indentation, `\n`, `\r\n` and lone `\r` line endings (sometimes mixed in one chapter),
//! whitespace-only lines of spaces, tabs, U+3000 and NBSP, NULL, empty and
//! whitespace-only content; images that are SQL NULL, JSON `null`, `[]`, strings, objects
//! with string or null captions, extra keys (nested objects, arrays, integers above
//! `i64::MAX`, decimals), anchors in range, out of range, colliding, and more images than
//! paragraphs; JSON written compactly, in `jsonb`'s spacing, pretty-printed, or with
//! PHP-style `\uXXXX` and `\/` escapes. Every generated row is valid: invalid values come
//! only from [`invalid_images_cases`].

use std::borrow::Cow;
use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One row of the legacy `memoirs` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMemoir {
    /// 1-based, dense.
    pub id: i64,
    pub title: String,
}

/// One row of the legacy `chapters` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyChapter {
    /// 1-based, dense, in generation order.
    pub id: i64,
    pub memoir_id: i64,
    /// 1-based within the memoir, as legacy applications tend to number chapters.
    pub position: i32,
    pub title: String,
    /// `None` is SQL NULL.
    pub content: Option<String>,
    /// JSON text, or `None` for SQL NULL.
    pub images: Option<String>,
}

// Chapters per memoir, repeated in this cycle so that a chapter's memoir and position are
// computed from its index alone, whatever the seed.
const MEMOIR_SIZES: [u64; 8] = [12, 30, 5, 24, 18, 1, 40, 10];
const CYCLE_CHAPTERS: u64 = {
    let mut sum = 0;
    let mut i = 0;
    while i < MEMOIR_SIZES.len() {
        sum += MEMOIR_SIZES[i];
        i += 1;
    }
    sum
};
const CYCLE_MEMOIRS: u64 = MEMOIR_SIZES.len() as u64;
// Memoir titles draw from streams disjoint from every chapter's.
const MEMOIR_STREAM: u64 = 1 << 63;

/// The streaming iterator returned by [`generate`].
#[derive(Debug, Clone)]
pub struct LegacyChapters {
    key: [u8; 32],
    next: u64,
    end: u64,
}

/// The chapters of a data set of `chapters` chapters, generated one at a time.
pub fn generate(seed: u64, chapters: usize) -> LegacyChapters {
    LegacyChapters {
        key: key(seed),
        next: 0,
        end: chapters as u64,
    }
}

/// The chapter at 0-based `index` of any data set generated from `seed` (its id is
/// `index + 1`).
pub fn chapter(seed: u64, index: u64) -> LegacyChapter {
    chapter_at(&key(seed), index)
}

impl Iterator for LegacyChapters {
    type Item = LegacyChapter;

    fn next(&mut self) -> Option<LegacyChapter> {
        if self.next >= self.end {
            return None;
        }
        let chapter = chapter_at(&self.key, self.next);
        self.next += 1;
        Some(chapter)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }

    fn nth(&mut self, n: usize) -> Option<LegacyChapter> {
        self.next = self.next.saturating_add(n as u64).min(self.end);
        self.next()
    }
}

impl ExactSizeIterator for LegacyChapters {}
impl std::iter::FusedIterator for LegacyChapters {}

/// How many memoirs the first `chapters` chapters belong to (memoir ids are 1 to this).
pub fn memoir_count(chapters: usize) -> usize {
    match (chapters as u64).checked_sub(1) {
        None => 0,
        Some(last) => usize::try_from(memoir_slot(last).0 + 1).unwrap_or(usize::MAX),
    }
}

/// The streaming iterator returned by [`memoirs`].
#[derive(Debug, Clone)]
pub struct LegacyMemoirs {
    key: [u8; 32],
    next: u64,
    end: u64,
}

/// The memoirs that the data set of `chapters` chapters generated from `seed` refers to.
pub fn memoirs(seed: u64, chapters: usize) -> LegacyMemoirs {
    LegacyMemoirs {
        key: key(seed),
        next: 0,
        end: memoir_count(chapters) as u64,
    }
}

impl Iterator for LegacyMemoirs {
    type Item = LegacyMemoir;

    fn next(&mut self) -> Option<LegacyMemoir> {
        if self.next >= self.end {
            return None;
        }
        let mut rng = stream(&self.key, MEMOIR_STREAM | self.next);
        let title = memoir_title(&mut rng);
        self.next += 1;
        Some(LegacyMemoir {
            id: self.next as i64,
            title,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for LegacyMemoirs {}
impl std::iter::FusedIterator for LegacyMemoirs {}

/// One legacy images value per way of being invalid, with the path the error must name.
/// The JSON is the text as a `json` or `text` column would hold it (some of these, such
/// as `\u0000`, a lone surrogate or `1e200000`, a `jsonb` column cannot hold at all).
pub fn invalid_images_cases() -> Vec<(&'static str, &'static str)> {
    vec![
        ("", "images"),
        ("   ", "images"),
        ("[", "images"),
        ("[\"a.jpg\",]", "images"),
        ("[] []", "images"),
        ("{\"url\": \"a.jpg\"}", "images"),
        ("\"a.jpg\"", "images"),
        ("\"[\\\"a.jpg\\\"]\"", "images"),
        ("42", "images"),
        ("true", "images"),
        ("[\"\\ud800\"]", "images[0]"),
        ("[42]", "images[0]"),
        ("[null]", "images[0]"),
        ("[true]", "images[0]"),
        ("[[\"a.jpg\"]]", "images[0]"),
        ("[\"\"]", "images[0]"),
        ("[\"a.jpg\", {\"url\": \"b.jpg\"}, 7]", "images[2]"),
        ("[\"a\\u0000.jpg\"]", "images[0]"),
        ("[{}]", "images[0].url"),
        ("[{\"caption\": \"no url\"}]", "images[0].url"),
        ("[{\"url\": null}]", "images[0].url"),
        ("[{\"url\": 5}]", "images[0].url"),
        ("[{\"url\": \"\"}]", "images[0].url"),
        ("[{\"url\": [\"a.jpg\"]}]", "images[0].url"),
        ("[{\"url\": {\"href\": \"a.jpg\"}}]", "images[0].url"),
        ("[{\"url\": \"a\\u0000.jpg\"}]", "images[0].url"),
        (
            "[{\"url\": \"a.jpg\", \"caption\": 5}]",
            "images[0].caption",
        ),
        (
            "[{\"url\": \"a.jpg\", \"caption\": false}]",
            "images[0].caption",
        ),
        (
            "[{\"url\": \"a.jpg\", \"caption\": [\"x\"]}]",
            "images[0].caption",
        ),
        (
            "[{\"url\": \"a.jpg\", \"caption\": {\"zh\": \"x\"}}]",
            "images[0].caption",
        ),
        (
            "[{\"url\": \"a.jpg\", \"caption\": \"x\\u0000\"}]",
            "images[0].caption",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": -1}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": 1.0}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": 1e2}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": 1E2}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": 0.5}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": -0.0}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": \"1\"}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": null}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": true}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": [0]}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"paragraph\": {\"n\": 0}}]",
            "images[0].paragraph",
        ),
        (
            "[{\"url\": \"a.jpg\", \"exif\": {\"model\": \"x\\u0000\"}}]",
            "images[0].exif.model",
        ),
        (
            "[{\"url\": \"a.jpg\", \"tags\": [\"ok\", \"\\u0000\"]}]",
            "images[0].tags[1]",
        ),
        (
            "[{\"url\": \"a.jpg\", \"k\\u0000\": 1}]",
            "images[0][\"k\\u0000\"]",
        ),
        (
            "[{\"url\": \"a.jpg\", \"caption\": \"\\ud800\"}]",
            "images[0].caption",
        ),
        ("[{\"url\": \"a.jpg\", \"x\": 1e200000}]", "images[0].x"),
        (
            "[\"a.jpg\", {\"url\": \"b.jpg\", \"meta\": {\"sizes\": [1, 1e-16384]}}]",
            "images[1].meta.sizes[1]",
        ),
    ]
}

/// Legacy images values that look suspicious but are valid, for end-to-end tests: integer
/// anchors beyond `u64::MAX`, `-0`, numbers that only survive with exact decimal text or
/// sit at the edge of what `numeric` can store, escapes, keys that are not identifiers,
/// an object whose `url` is not its first key.
pub fn tricky_valid_images_cases() -> Vec<&'static str> {
    vec![
        "null",
        "[]",
        " [ ] ",
        "[{\"url\": \"a.jpg\", \"paragraph\": 18446744073709551616}]",
        "[{\"url\": \"a.jpg\", \"paragraph\": 1000000000000000000000000000000000000000000000000000}]",
        "[{\"url\": \"a.jpg\", \"paragraph\": -0}]",
        "[{\"url\": \"a.jpg\", \"paragraph\": 0}, {\"url\": \"b.jpg\", \"paragraph\": 0}]",
        "[{\"url\": \"a.jpg\", \"caption\": null, \"id\": 12345678901234567890, \"scale\": 1.10}]",
        "[{\"url\": \"a.jpg\", \"big\": 1e400, \"tiny\": -2.5E-400}]",
        "[{\"url\": \"a.jpg\", \"most\": 9.9e131071, \"finest\": -1.5e-16382, \"zero\": 0e999999, \"shifted\": 0.0001e131075}]",
        "[{\"caption\": \"url last\", \"paragraph\": 1, \"url\": \"\\u8001\\u7167\\u7247.jpg\"}]",
        "[\"https:\\/\\/example.com\\/a.jpg\", {\"url\": \" \", \"拍摄地点\": \"上海\", \"\": 0}]",
    ]
}

fn key(seed: u64) -> [u8; 32] {
    ChaCha8Rng::seed_from_u64(seed).get_seed()
}

fn stream(key: &[u8; 32], stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_stream(stream);
    rng
}

/// The 0-based memoir index and 1-based position of the chapter at `index`.
fn memoir_slot(index: u64) -> (u64, u64) {
    let cycle = index / CYCLE_CHAPTERS;
    let mut offset = index % CYCLE_CHAPTERS;
    let mut memoir = cycle * CYCLE_MEMOIRS;
    for size in MEMOIR_SIZES {
        if offset < size {
            break;
        }
        offset -= size;
        memoir += 1;
    }
    (memoir, offset + 1)
}

fn chapter_at(key: &[u8; 32], index: u64) -> LegacyChapter {
    let mut rng = stream(key, index);
    let (memoir, position) = memoir_slot(index);
    let language = Language::draw(&mut rng);
    let title = chapter_title(&mut rng, language, position);
    let (content, paragraph_count) = content(&mut rng, language);
    let images = images(&mut rng, index + 1, memoir + 1, paragraph_count);
    LegacyChapter {
        id: (index + 1) as i64,
        memoir_id: (memoir + 1) as i64,
        position: i32::try_from(position).unwrap_or(i32::MAX),
        title,
        content,
        images,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Chinese,
    English,
    Mixed,
}

impl Language {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        match rng.random_range(0..100) {
            0..50 => Language::Chinese,
            50..90 => Language::English,
            _ => Language::Mixed,
        }
    }

    fn sentence_is_chinese(self, rng: &mut ChaCha8Rng) -> bool {
        match self {
            Language::Chinese => true,
            Language::English => false,
            Language::Mixed => rng.random_bool(0.5),
        }
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn memoir_title(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.5) {
        format!("{}的{}", pick(rng, ZH_NAMES), pick(rng, ZH_MEMOIR_WORDS))
    } else {
        format!("{} of {}", pick(rng, EN_MEMOIR_WORDS), pick(rng, PLACES_EN))
    }
}

fn chapter_title(rng: &mut ChaCha8Rng, language: Language, position: u64) -> String {
    if language.sentence_is_chinese(rng) {
        format!("第{position}章\u{3000}{}", pick(rng, ZH_TITLES))
    } else {
        format!("Chapter {position}: {}", pick(rng, EN_TITLES))
    }
}

/// The content value and how many paragraphs it has under rule 1.
fn content(rng: &mut ChaCha8Rng, language: Language) -> (Option<String>, usize) {
    match rng.random_range(0..1000) {
        0..20 => (None, 0),
        20..40 => (Some(String::new()), 0),
        40..60 => (Some(whitespace_only(rng)), 0),
        _ => {
            let (text, count) = prose(rng, language);
            (Some(text), count)
        }
    }
}

const BLANK_LINES: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\u{3000}",
    "\u{3000}\u{3000}",
    "\u{a0}",
    " \t\u{a0} ",
    "\u{3000} \t",
];

fn whitespace_only(rng: &mut ChaCha8Rng) -> String {
    const PIECES: &[&str] = &[" ", "\t", "\u{3000}", "\u{a0}", "\n", "\r\n", "\r", "  "];
    let pieces = rng.random_range(1..=6);
    (0..pieces).map(|_| pick(rng, PIECES)).collect()
}

#[derive(Debug, Clone, Copy)]
enum LineEnding {
    Lf,
    CrLf,
    Cr,
    Mixed,
}

impl LineEnding {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        match rng.random_range(0..100) {
            0..78 => LineEnding::Lf,
            78..92 => LineEnding::CrLf,
            92..97 => LineEnding::Cr,
            _ => LineEnding::Mixed,
        }
    }

    fn push(self, rng: &mut ChaCha8Rng, out: &mut String) {
        out.push_str(match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
            LineEnding::Cr => "\r",
            // A `\n` right after a lone `\r` would merge with it into one line break.
            LineEnding::Mixed if out.ends_with('\r') => pick(rng, &["\r\n", "\r"]),
            LineEnding::Mixed => pick(rng, &["\n", "\r\n", "\r"]),
        });
    }
}

fn paragraph_count(rng: &mut ChaCha8Rng) -> usize {
    match rng.random_range(0..100) {
        0..10 => 1,
        10..25 => 2,
        25..45 => 3,
        45..65 => 4,
        65..80 => 5,
        80..95 => rng.random_range(6..=10),
        _ => rng.random_range(11..=30),
    }
}

fn prose(rng: &mut ChaCha8Rng, language: Language) -> (String, usize) {
    let ending = LineEnding::draw(rng);
    let count = paragraph_count(rng);
    let mut out = String::with_capacity(count * 256);
    if rng.random_ratio(1, 20) {
        blank_lines(rng, ending, &mut out);
    }
    for index in 0..count {
        if index > 0 {
            ending.push(rng, &mut out);
            blank_lines(rng, ending, &mut out);
        }
        paragraph(rng, language, ending, &mut out);
    }
    match rng.random_range(0..100) {
        0..45 => {}
        45..95 => ending.push(rng, &mut out),
        _ => {
            ending.push(rng, &mut out);
            blank_lines(rng, ending, &mut out);
        }
    }
    (out, count)
}

/// One or more blank lines, each followed by a line ending.
fn blank_lines(rng: &mut ChaCha8Rng, ending: LineEnding, out: &mut String) {
    let lines = if rng.random_ratio(1, 10) {
        rng.random_range(2..=3)
    } else {
        1
    };
    for _ in 0..lines {
        if rng.random_ratio(1, 4) {
            out.push_str(pick(rng, BLANK_LINES));
        }
        ending.push(rng, out);
    }
}

fn paragraph(rng: &mut ChaCha8Rng, language: Language, ending: LineEnding, out: &mut String) {
    let lines = match rng.random_range(0..100) {
        0..75 => 1,
        75..95 => 2,
        _ => 3,
    };
    for line in 0..lines {
        if line > 0 {
            ending.push(rng, out);
        }
        let chinese = language.sentence_is_chinese(rng);
        if chinese && line == 0 && rng.random_ratio(17, 20) {
            out.push_str("\u{3000}\u{3000}");
        } else if !chinese && rng.random_ratio(1, 12) {
            out.push_str(pick(rng, &["    ", "\t", " "]));
        }
        let sentences = rng.random_range(1..=3);
        for sentence in 0..sentences {
            if language.sentence_is_chinese(rng) {
                out.push_str(pick(rng, ZH_SENTENCES));
            } else {
                if sentence > 0 {
                    out.push(' ');
                }
                out.push_str(pick(rng, EN_SENTENCES));
            }
        }
        if rng.random_ratio(1, 20) {
            out.push_str(pick(rng, &[" ", "  ", "\t", "\u{3000}", "\u{a0}"]));
        }
    }
}

/// How a JSON value is laid out as text.
#[derive(Debug, Clone, Copy)]
struct JsonStyle {
    layout: Layout,
    // PHP's json_encode default: non-ASCII as `\uXXXX`, `/` as `\/`.
    php_escapes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Compact,
    // PostgreSQL's jsonb output: `, ` between items and `: ` after keys.
    Jsonb,
    Pretty,
}

/// A JSON value to be written; numbers and literals are kept as their text.
enum Json {
    Literal(Cow<'static, str>),
    Str(Cow<'static, str>),
    Array(Vec<Json>),
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    fn write(&self, style: JsonStyle, depth: usize, out: &mut String) {
        match self {
            Json::Literal(text) => out.push_str(text),
            Json::Str(text) => write_json_string(text, style.php_escapes, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    separate(style.layout, i, depth + 1, out);
                    item.write(style, depth + 1, out);
                }
                close(style.layout, items.is_empty(), depth, out);
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    separate(style.layout, i, depth + 1, out);
                    write_json_string(key, style.php_escapes, out);
                    out.push_str(if style.layout == Layout::Compact {
                        ":"
                    } else {
                        ": "
                    });
                    value.write(style, depth + 1, out);
                }
                close(style.layout, members.is_empty(), depth, out);
                out.push('}');
            }
        }
    }
}

fn separate(layout: Layout, index: usize, depth: usize, out: &mut String) {
    match layout {
        Layout::Compact if index > 0 => out.push(','),
        Layout::Jsonb if index > 0 => out.push_str(", "),
        Layout::Compact | Layout::Jsonb => {}
        Layout::Pretty => {
            if index > 0 {
                out.push(',');
            }
            out.push('\n');
            indent(depth, out);
        }
    }
}

fn close(layout: Layout, empty: bool, depth: usize, out: &mut String) {
    if layout == Layout::Pretty && !empty {
        out.push('\n');
        indent(depth, out);
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_json_string(text: &str, php_escapes: bool, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '/' if php_escapes => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (php_escapes && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn images(
    rng: &mut ChaCha8Rng,
    chapter_id: u64,
    memoir_id: u64,
    paragraphs: usize,
) -> Option<String> {
    match rng.random_range(0..1000) {
        0..100 => return None,
        100..130 => return Some("null".to_owned()),
        130..175 => return Some("[]".to_owned()),
        175..180 => return Some(" [ ]\n".to_owned()),
        _ => {}
    }
    let count = match rng.random_range(0..100) {
        0..30 => 1,
        30..55 => 2,
        55..70 => 3,
        70..90 => rng.random_range(4..=6),
        _ => rng.random_range(7..=15),
    };
    let mut anchors: Vec<u64> = Vec::new();
    let elements = (0..count)
        .map(|k| image_element(rng, chapter_id, memoir_id, k, paragraphs, &mut anchors))
        .collect();
    let style = JsonStyle {
        layout: match rng.random_range(0..100) {
            0..45 => Layout::Compact,
            45..90 => Layout::Jsonb,
            _ => Layout::Pretty,
        },
        php_escapes: rng.random_ratio(1, 10),
    };
    let mut out = String::with_capacity(count * 96);
    Json::Array(elements).write(style, 0, &mut out);
    Some(out)
}

fn image_element(
    rng: &mut ChaCha8Rng,
    chapter_id: u64,
    memoir_id: u64,
    k: usize,
    paragraphs: usize,
    anchors: &mut Vec<u64>,
) -> Json {
    let url = Json::Str(Cow::Owned(image_url(rng, chapter_id, memoir_id, k)));
    if rng.random_ratio(1, 4) {
        return url;
    }
    let mut members = vec![("url", url)];
    match rng.random_range(0..100) {
        0..50 => members.push(("caption", Json::Str(Cow::Borrowed(pick(rng, CAPTIONS))))),
        50..65 => members.push(("caption", Json::Literal(Cow::Borrowed("null")))),
        _ => {}
    }
    if rng.random_ratio(11, 20) {
        members.push(("paragraph", anchor(rng, paragraphs, anchors)));
    }
    if rng.random_ratio(7, 20) {
        let extras = rng.random_range(1..=3);
        let start = rng.random_range(0..EXTRA_KEYS);
        // A step coprime with EXTRA_KEYS visits distinct keys.
        for j in 0..extras {
            let which = (start + 3 * j) % EXTRA_KEYS;
            members.push(extra(rng, which));
        }
    }
    if rng.random_ratio(1, 5) {
        members.rotate_left(1);
    }
    Json::Object(members)
}

fn anchor(rng: &mut ChaCha8Rng, paragraphs: usize, anchors: &mut Vec<u64>) -> Json {
    let paragraphs = paragraphs as u64;
    let roll = rng.random_range(0..100);
    let value = if roll < 65 && paragraphs > 0 {
        rng.random_range(0..paragraphs)
    } else if roll < 85 && !anchors.is_empty() {
        pick(rng, anchors)
    } else if rng.random_ratio(1, 10) {
        let huge = pick(
            rng,
            &["18446744073709551616", "123456789012345678901234567890"],
        );
        return Json::Literal(Cow::Borrowed(huge));
    } else {
        paragraphs + rng.random_range(0..5)
    };
    anchors.push(value);
    Json::Literal(Cow::Owned(value.to_string()))
}

fn image_url(rng: &mut ChaCha8Rng, chapter_id: u64, memoir_id: u64, k: usize) -> String {
    match rng.random_range(0..100) {
        0..45 => format!("https://img.example.com/memoirs/{memoir_id}/{chapter_id}/{k}.jpg"),
        45..65 => format!("photos/{chapter_id}_{k}.png"),
        65..80 => format!(
            "/uploads/{}/老照片_{chapter_id}_{k}.jpg",
            rng.random_range(2005..=2019)
        ),
        80..90 => format!(
            "https://cdn.example.org/old scans/{chapter_id}-{k}.jpeg?size=large&note=\"orig\""
        ),
        _ => format!("img\\{chapter_id}\\{k}"),
    }
}

const EXTRA_KEYS: usize = 11;

fn extra(rng: &mut ChaCha8Rng, which: usize) -> (&'static str, Json) {
    let number = |n: i64| Json::Literal(Cow::Owned(n.to_string()));
    let literal = |s: &'static str| Json::Literal(Cow::Borrowed(s));
    let text = |s: &'static str| Json::Str(Cow::Borrowed(s));
    match which {
        0 => ("width", number(rng.random_range(320..=4000))),
        1 => ("height", number(rng.random_range(240..=3000))),
        2 => (
            "taken_at",
            Json::Str(Cow::Owned(format!(
                "{}-{:02}-{:02}",
                rng.random_range(1935..=2010),
                rng.random_range(1..=12),
                rng.random_range(1..=28)
            ))),
        ),
        3 => (
            "exif",
            Json::Object(vec![
                ("camera", text(pick(rng, CAMERAS))),
                ("iso", literal(pick(rng, &["100", "200", "400"]))),
                (
                    "gps",
                    Json::Object(vec![
                        ("lat", literal("31.2304")),
                        ("lng", literal("121.4737")),
                    ]),
                ),
            ]),
        ),
        4 => (
            "tags",
            Json::Array(vec![text(pick(rng, TAGS)), text(pick(rng, TAGS))]),
        ),
        5 => ("rotation", literal(pick(rng, &["-90", "0", "90", "180"]))),
        6 => (
            "scale",
            literal(pick(rng, &["1.5", "0.75", "1.10", "2.50e-1"])),
        ),
        7 => ("primary", literal(pick(rng, &["true", "false"]))),
        8 => (
            "source",
            literal(pick(rng, &["null", "\"scan\"", "[]", "{}"])),
        ),
        9 => (
            "id",
            Json::Literal(Cow::Owned(
                rng.random_range(9_223_372_036_854_775_808..=u64::MAX)
                    .to_string(),
            )),
        ),
        _ => ("拍摄地点", text(pick(rng, PLACES_ZH))),
    }
}

const ZH_NAMES: &[&str] = &[
    "王秀英",
    "李建国",
    "张桂兰",
    "刘志强",
    "陈淑芬",
    "杨德明",
    "赵玉珍",
    "周国华",
];
const ZH_MEMOIR_WORDS: &[&str] = &["回忆录", "往事", "一生", "岁月", "家书", "旧事"];
const EN_MEMOIR_WORDS: &[&str] = &[
    "Memories", "Letters", "Summers", "A Life", "Years", "Stories",
];
const PLACES_EN: &[&str] = &[
    "Shanghai",
    "Harbin",
    "Chengdu",
    "the Coast",
    "Guangzhou",
    "Home",
];
const PLACES_ZH: &[&str] = &["上海", "哈尔滨", "成都", "广州", "苏州河边", "老家"];
const ZH_TITLES: &[&str] = &[
    "童年",
    "离家",
    "求学",
    "下乡",
    "回城",
    "成家",
    "工厂岁月",
    "改革开放",
    "退休以后",
    "写给孙辈",
];
const EN_TITLES: &[&str] = &[
    "Childhood",
    "Leaving Home",
    "School Days",
    "The Countryside",
    "Coming Back",
    "A Family",
    "Factory Years",
    "New Times",
    "After Retirement",
    "To My Grandchildren",
];
const ZH_SENTENCES: &[&str] = &[
    "那年冬天特别冷，院子里的水缸都冻裂了。",
    "父亲每天天不亮就出门，直到深夜才回来。",
    "我们一家五口挤在一间十几平方米的小屋里。",
    "母亲总是把最好的留给我们，自己却舍不得吃。",
    "学校离家有十里路，我每天走着去上学。",
    "那是我第一次坐火车，心里既紧张又兴奋。",
    "村口的老槐树下，常常聚着一群说书的老人。",
    "后来我才明白，那些年他们吃了多少苦。",
    "厂里的机器声日夜不停，我们三班倒地干活。",
    "一九七七年恢复高考，我终于等到了机会。",
    "信写了又改，改了又写，最后还是没有寄出去。",
    "照片已经发黄，可那天的阳光我还记得清清楚楚。",
    "外婆坐在门槛上纳鞋底，嘴里哼着听不懂的小调。",
    "我们搬了三次家，每一次都丢下一些舍不得的东西。",
    "孩子们长大了，一个个离开了这座小城。",
    "如今回想起来，那段日子虽苦，却也有许多欢乐。",
    "街坊邻居谁家有事，大家都会过来搭把手。",
    "他说“别怕”，然后转身走进了雨里。",
    "春节前，母亲总要蒸上满满两笼屉的馒头。",
    "退休以后，我开始学着用电脑写下这些往事。",
];
const EN_SENTENCES: &[&str] = &[
    "That winter was the coldest anyone in the village could remember.",
    "My father left before dawn every day and came home long after dark.",
    "Five of us shared a single room above the bakery on Nanjing Road.",
    "Mother always saved the best portion for us and went without.",
    "The school was ten miles away, and I walked there every morning.",
    "It was the first time I had been on a train, and I could not sleep.",
    "Under the old locust tree, the storytellers gathered every evening.",
    "Only much later did I understand what those years had cost them.",
    "The machines in the factory never stopped; we worked in three shifts.",
    "When the exams came back in 1977, I finally had my chance.",
    "I rewrote the letter a dozen times and in the end never sent it.",
    "The photograph has faded, but I remember the light of that afternoon.",
    "Grandmother sat on the doorstep, mending shoes and humming old songs.",
    "We moved house three times, and each time something dear was left behind.",
    "The children grew up and, one by one, left our small town.",
    "Looking back, those days were hard, but they held a great deal of joy.",
    "When a neighbour was in trouble, the whole lane turned out to help.",
    "He said \"don't be afraid\" and walked out into the rain.",
    "Before New Year, Mother steamed two full baskets of buns.",
    "After I retired, I learned to type so that I could write all this down.",
];
const CAPTIONS: &[&str] = &[
    "全家福，摄于一九六三年",
    "父亲在厂门口",
    "我和妹妹在外滩",
    "毕业照（后排左三是我）",
    "The house on Maple Street",
    "Mum and Dad, 1972",
    "Graduation day",
    "Our first television set 📺",
    "\"The\" photo, as Grandpa called it",
    "Back: C:\\scans\\box 3",
    "Two lines:\nthe second one",
    "\u{3000}缩进的说明",
    "",
    "Tab\tseparated",
];
const CAMERAS: &[&str] = &["Seagull 4A", "Canon AE-1", "Nikon FM2", "海鸥DF-1"];
const TAGS: &[&str] = &["family", "school", "上海", "老照片", "1960s", "wedding"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paragraphs::paragraphs;

    #[test]
    fn generated_paragraph_count_is_what_rule_1_finds() {
        let key = key(7);
        for index in 0..2_000 {
            let mut rng = stream(&key, index);
            let language = Language::draw(&mut rng);
            let (content, count) = content(&mut rng, language);
            assert_eq!(paragraphs(content.as_deref()).len(), count, "{content:?}");
        }
    }

    #[test]
    fn memoir_slots_follow_the_size_cycle() {
        assert_eq!(memoir_slot(0), (0, 1));
        assert_eq!(memoir_slot(11), (0, 12));
        assert_eq!(memoir_slot(12), (1, 1));
        assert_eq!(memoir_slot(CYCLE_CHAPTERS - 1), (CYCLE_MEMOIRS - 1, 10));
        assert_eq!(memoir_slot(CYCLE_CHAPTERS), (CYCLE_MEMOIRS, 1));
        assert_eq!(memoir_count(0), 0);
        assert_eq!(memoir_count(12), 1);
        assert_eq!(memoir_count(13), 2);
        assert_eq!(
            memoir_count(CYCLE_CHAPTERS as usize),
            CYCLE_MEMOIRS as usize
        );
    }

    #[test]
    fn php_escapes_encode_non_ascii_as_utf16_units() {
        let mut out = String::new();
        write_json_string("a/老📺\u{1}\"", true, &mut out);
        assert_eq!(out, r#""a\/\u8001\ud83d\udcfa\u0001\"""#);
        let decoded: String = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(decoded, "a/老📺\u{1}\"");
    }
}
