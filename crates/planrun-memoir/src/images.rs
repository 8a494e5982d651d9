//! Rule 2 of the memoir spec: parsing and validating a legacy `chapters.images` value.
//!
//! The value arrives as text whatever the column's type (`jsonb`, `json`, or `text`
//! holding JSON), so databases that drifted from the documented schema are read the same
//! way. serde_json is built with `arbitrary_precision` so that every number keeps the
//! exact digits it was written with: an image's extra keys go back into `jsonb` with the
//! same values (no `1.10` turning into `1.1`, no big id losing digits, no `1e400` failing
//! to parse; only an exponent's spelling is normalised, `1E2` to `1e+2`), and a
//! `paragraph` anchor is judged on its literal, where `1.0` and `1e2` are not integers and
//! an integer of any size is.
//!
//! A `json` or `text` column can hold what `jsonb` cannot store: U+0000 in a string, a
//! number beyond `numeric`'s range (see `numeric_range.rs`), a lone UTF-16
//! surrogate escape. Each is rejected here with its path, so such a row fails (or is
//! quarantined) as an invalid row instead of failing the COPY into `jsonb` without saying
//! which chapter or where.

use serde_json::{Map, Number, Value};

use crate::numeric_range::fits_numeric;

/// One valid element of a legacy images array, in object form.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The element as a JSON object, keys in the order they were written; a string
    /// element `"s"` becomes `{"url": "s"}`.
    pub object: Map<String, Value>,
    /// The `paragraph` anchor, if any. A literal above `u64::MAX` is saturated to
    /// `u64::MAX`: no chapter can have that many paragraphs, so it is out of range
    /// either way and placement treats both alike.
    pub paragraph: Option<u64>,
}

impl Image {
    /// The image object as a JSON value, ready to be stored in a `jsonb` column.
    pub fn into_value(self) -> Value {
        Value::Object(self.object)
    }

    /// The image's `url`, which validation guarantees is a non-empty string.
    pub fn url(&self) -> &str {
        self.object.get("url").and_then(Value::as_str).unwrap_or("")
    }
}

/// Why a legacy images value is invalid, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InvalidImages {
    /// Where the problem is: `images` for the whole value, `images[3]` for an element,
    /// `images[3].url` (or `images[3]["odd key"]`) for a key inside an element.
    pub path: String,
    /// What is wrong, as a short lowercase phrase.
    pub reason: String,
}

impl InvalidImages {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidImages {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a legacy images value: SQL NULL (`None`), JSON `null` and `[]` give no images;
/// anything else must be an array of valid elements.
///
/// Besides the spec's shape rules, anything in an element that PostgreSQL's `jsonb`
/// cannot store is rejected at its path: a string or object key containing U+0000, a
/// number outside `numeric`'s range, a lone surrogate escape. Only a `json` or `text`
/// column can hold such a row; it would otherwise fail later, on insert, without saying
/// where.
pub fn parse_images(raw: Option<&str>) -> Result<Vec<Image>, InvalidImages> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let value: Value = serde_json::from_str(raw).map_err(|e| parse_error(raw, &e))?;
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(elements) => elements
            .into_iter()
            .enumerate()
            .map(|(index, element)| parse_element(index, element))
            .collect(),
        other => Err(InvalidImages::new(
            "images",
            format!("expected an array or null, found {}", excerpt(&other)),
        )),
    }
}

/// How deep arrays and objects may nest: serde_json refuses the 128th level (its
/// recursion limit, which keeps a hostile value from overflowing the stack), while
/// PostgreSQL's own parser accepts thousands of levels, so a `jsonb` column can hold a
/// value this migration cannot read.
const MAX_DEPTH: usize = 127;

/// The error for a value serde_json could not parse. Two of its refusals concern JSON
/// that PostgreSQL's `json` type accepts, so they are not reported as "not valid JSON"
/// but at the element or member holding them, as every other rule names its place:
/// nesting beyond [`MAX_DEPTH`] and a lone surrogate escape (which `jsonb` refuses too).
fn parse_error(raw: &str, error: &serde_json::Error) -> InvalidImages {
    let message = error.to_string();
    let refused_valid_json = message.starts_with("recursion limit exceeded")
        || message.starts_with("lone leading surrogate in hex escape")
        || message.starts_with("unexpected end of hex escape");
    if refused_valid_json {
        if let Some((path, refusal)) = first_refusal(raw) {
            let reason = match refusal {
                Refusal::TooDeep => format!(
                    "arrays and objects nested more than {MAX_DEPTH} deep, which this migration cannot parse"
                ),
                Refusal::LoneSurrogate {
                    unit,
                    in_key: false,
                } => format!("a lone surrogate \\u{unit:04x} cannot be stored in jsonb"),
                Refusal::LoneSurrogate { unit, in_key: true } => format!(
                    "a key holds a lone surrogate \\u{unit:04x}, which cannot be stored in jsonb"
                ),
            };
            return InvalidImages::new(path, reason);
        }
    }
    InvalidImages::new("images", format!("not valid JSON: {message}"))
}

/// Valid JSON that serde_json refuses.
enum Refusal {
    /// Arrays and objects nested more than [`MAX_DEPTH`] deep.
    TooDeep,
    /// A `\uXXXX` escape of a UTF-16 surrogate without its other half, in a string value
    /// or in an object key.
    LoneSurrogate { unit: u16, in_key: bool },
}

/// An array or object `first_refusal` is inside.
enum Frame {
    Array(usize),
    Object {
        key: Option<String>,
        awaiting_key: bool,
    },
}

/// The first place in `raw` serde_json refuses although the JSON is valid, with its path:
/// for nesting too deep, the path to at most the element and its member
/// (`images[0].exif`, `images[0][0]`); for a lone surrogate, the full path to the string
/// (`images[0].meta.title`), or to the object whose key holds it. A linear scan with a
/// stack bounded by [`MAX_DEPTH`]; it assumes the JSON is well formed up to that point,
/// which is where serde_json stopped.
fn first_refusal(raw: &str) -> Option<(String, Refusal)> {
    let bytes = raw.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                let in_key = matches!(
                    stack.last(),
                    Some(Frame::Object {
                        awaiting_key: true,
                        ..
                    })
                );
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] != b'\\' {
                        i += 1;
                        continue;
                    }
                    match (hex_escape(bytes, i), hex_escape(bytes, i + 6)) {
                        (Some(0xD800..=0xDBFF), Some(0xDC00..=0xDFFF)) => i += 12,
                        (Some(unit @ 0xD800..=0xDFFF), _) => {
                            let holder = if in_key {
                                &stack[..stack.len() - 1]
                            } else {
                                &stack[..]
                            };
                            return Some((
                                frames_path(holder),
                                Refusal::LoneSurrogate { unit, in_key },
                            ));
                        }
                        (Some(_), _) => i += 6,
                        (None, _) => i += 2,
                    }
                }
                if let Some(Frame::Object { key, awaiting_key }) = stack.last_mut() {
                    if *awaiting_key {
                        let quoted = raw.get(start..=i).unwrap_or("");
                        *key = Some(
                            serde_json::from_str(quoted).unwrap_or_else(|_| quoted.to_owned()),
                        );
                        *awaiting_key = false;
                    }
                }
            }
            open @ (b'[' | b'{') => {
                if stack.len() == MAX_DEPTH {
                    return Some((frames_path(&stack[..2]), Refusal::TooDeep));
                }
                stack.push(if open == b'[' {
                    Frame::Array(0)
                } else {
                    Frame::Object {
                        key: None,
                        awaiting_key: true,
                    }
                });
            }
            b']' | b'}' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(index)) => *index += 1,
                Some(Frame::Object { awaiting_key, .. }) => *awaiting_key = true,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    None
}

/// The path to the value the innermost of `frames` is at.
fn frames_path(frames: &[Frame]) -> String {
    let mut path = "images".to_owned();
    for frame in frames {
        match frame {
            Frame::Array(index) => path.push_str(&format!("[{index}]")),
            Frame::Object { key: Some(key), .. } => path = member_path(&path, key),
            Frame::Object { key: None, .. } => break,
        }
    }
    path
}

/// The UTF-16 code unit of the `\uXXXX` escape at `at` in `bytes`, if one is there.
fn hex_escape(bytes: &[u8], at: usize) -> Option<u16> {
    let escape = bytes.get(at..at + 6)?;
    let hex = escape.strip_prefix(b"\\u")?;
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn parse_element(index: usize, element: Value) -> Result<Image, InvalidImages> {
    let path = format!("images[{index}]");
    let object = match element {
        Value::String(url) if !url.is_empty() => {
            reject_nul(&path, &url)?;
            let mut object = Map::new();
            object.insert("url".to_owned(), Value::String(url));
            return Ok(Image {
                object,
                paragraph: None,
            });
        }
        Value::Object(object) => object,
        other => {
            return Err(InvalidImages::new(
                path,
                format!(
                    "expected a non-empty string or an object, found {}",
                    excerpt(&other)
                ),
            ))
        }
    };

    match object.get("url") {
        Some(Value::String(url)) if !url.is_empty() => {}
        Some(other) => {
            return Err(InvalidImages::new(
                format!("{path}.url"),
                format!("expected a non-empty string, found {}", excerpt(other)),
            ))
        }
        None => return Err(InvalidImages::new(format!("{path}.url"), "missing")),
    }
    match object.get("caption") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(other) => {
            return Err(InvalidImages::new(
                format!("{path}.caption"),
                format!("expected a string or null, found {}", excerpt(other)),
            ))
        }
    }
    let paragraph = match object.get("paragraph") {
        None => None,
        Some(value) => Some(anchor(value).ok_or_else(|| {
            InvalidImages::new(
                format!("{path}.paragraph"),
                format!("expected a non-negative integer, found {}", excerpt(value)),
            )
        })?),
    };
    for (key, value) in &object {
        let key_path = member_path(&path, key);
        reject_nul(&key_path, key)?;
        reject_unstorable(&key_path, value)?;
    }
    Ok(Image { object, paragraph })
}

/// The anchor a `paragraph` value denotes, if it is a non-negative integer literal.
///
/// `-0` is accepted as 0: it is an integer literal whose value is not negative, and
/// PostgreSQL's `jsonb` already stores it as `0`, so a `json` or `text` column holding it
/// is treated the same as a `jsonb` one.
pub fn anchor(value: &Value) -> Option<u64> {
    let Value::Number(number) = value else {
        return None;
    };
    integer_literal(number)
}

fn integer_literal(number: &Number) -> Option<u64> {
    let text = number.as_str();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if negative {
        return digits.bytes().all(|b| b == b'0').then_some(0);
    }
    // The digits are valid, so parsing can only fail by overflow.
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

fn reject_nul(path: &str, text: &str) -> Result<(), InvalidImages> {
    if text.contains('\0') {
        return Err(InvalidImages::new(
            path,
            "contains U+0000, which PostgreSQL cannot store",
        ));
    }
    Ok(())
}

fn reject_out_of_range(path: &str, number: &Number) -> Result<(), InvalidImages> {
    if fits_numeric(number.as_str()) {
        return Ok(());
    }
    Err(InvalidImages::new(
        path,
        format!(
            "number {} is outside the range PostgreSQL's numeric can store \
             (at most 131072 digits before the decimal point and 16383 after)",
            excerpt_text(number.as_str())
        ),
    ))
}

/// Rejects what `jsonb` cannot store anywhere in `value`: U+0000 in a string or key, a
/// number outside `numeric`'s range.
// serde_json's recursion limit (128) bounds the depth of this walk.
fn reject_unstorable(path: &str, value: &Value) -> Result<(), InvalidImages> {
    match value {
        Value::String(s) => reject_nul(path, s),
        Value::Number(number) => reject_out_of_range(path, number),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| reject_unstorable(&format!("{path}[{i}]"), item)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            let key_path = member_path(path, key);
            reject_nul(&key_path, key)?;
            reject_unstorable(&key_path, item)
        }),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// `base.key` when `key` reads as an identifier, else `base["key"]` with JSON escaping,
/// so a path is unambiguous whatever the key holds.
pub(crate) fn member_path(base: &str, key: &str) -> String {
    let mut chars = key.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        format!("{base}.{key}")
    } else {
        format!("{base}[{}]", Value::String(key.to_owned()))
    }
}

/// A value's JSON text for an error message, cut short so a huge value cannot flood it.
pub(crate) fn excerpt(value: &Value) -> String {
    excerpt_text(&value.to_string())
}

/// `text` cut short after 40 characters.
fn excerpt_text(text: &str) -> String {
    const LIMIT: usize = 40;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_path_quotes_keys_that_are_not_identifiers() {
        assert_eq!(member_path("images[0]", "url"), "images[0].url");
        assert_eq!(member_path("images[0]", "_k9"), "images[0]._k9");
        assert_eq!(member_path("images[0]", "9k"), r#"images[0]["9k"]"#);
        assert_eq!(member_path("images[0]", ""), r#"images[0][""]"#);
        assert_eq!(member_path("images[0]", "a\"b"), r#"images[0]["a\"b"]"#);
        assert_eq!(member_path("images[0]", "说明"), r#"images[0]["说明"]"#);
    }

    #[test]
    fn excerpt_cuts_long_values_on_a_char_boundary() {
        let long = Value::String("图".repeat(100));
        let text = excerpt(&long);
        assert!(text.ends_with("..."));
        assert_eq!(text.chars().count(), 43);
        assert_eq!(excerpt(&Value::Null), "null");
    }

    #[test]
    fn nesting_beyond_the_parser_limit_names_the_element_and_member() {
        let nested = |depth: usize| format!("{}0{}", "[".repeat(depth), "]".repeat(depth));
        // The root array and the image object are two levels; `x` may add 125 more.
        let images = |depth: usize| {
            format!(
                r#"["a", {{"url": "b", "odd key": 1, "x": {}}}]"#,
                nested(depth)
            )
        };
        assert!(parse_images(Some(&images(MAX_DEPTH - 2))).is_ok());
        let e = parse_images(Some(&images(MAX_DEPTH - 1))).unwrap_err();
        assert_eq!(e.path, "images[1].x");
        assert!(e.reason.contains("nested more than 127 deep"), "{e}");

        let e = parse_images(Some(&nested(10_000))).unwrap_err();
        assert_eq!(e.path, "images[0][0]");
        let e = parse_images(Some(&format!(r#"{{"k\"\\": [{}]}}"#, nested(200)))).unwrap_err();
        assert_eq!(e.path, r#"images["k\"\\"][0]"#);
        // Invalid JSON that is also deep is still reported as not valid JSON when it
        // breaks before the limit.
        let e = parse_images(Some(&format!("[1 2 {}", nested(200)))).unwrap_err();
        assert_eq!(e.path, "images");
        assert!(e.reason.starts_with("not valid JSON"), "{e}");
    }

    #[test]
    fn numbers_jsonb_cannot_store_are_named_by_path() {
        let e = parse_images(Some(r#"[{"url": "a", "x": 1e200000}]"#)).unwrap_err();
        assert_eq!(e.path, "images[0].x");
        assert_eq!(
            e.reason,
            "number 1e+200000 is outside the range PostgreSQL's numeric can store \
             (at most 131072 digits before the decimal point and 16383 after)"
        );
        let e = parse_images(Some(
            r#"["a", {"url": "b", "meta": {"sizes": [1, 1e-20000]}}]"#,
        ))
        .unwrap_err();
        assert_eq!(e.path, "images[1].meta.sizes[1]");
        assert!(e.reason.starts_with("number 1e-20000 is outside"), "{e}");

        let huge = format!("1{}", "0".repeat(131_072));
        let e =
            parse_images(Some(&format!(r#"[{{"url": "a", "paragraph": {huge}}}]"#))).unwrap_err();
        assert_eq!(e.path, "images[0].paragraph");
        assert!(
            e.reason.starts_with(&format!("number {}...", &huge[..40])),
            "{e}"
        );
        assert!(e.reason.len() < 200, "{e}");
    }

    #[test]
    fn numbers_at_the_edge_of_the_range_are_kept_as_written() {
        let images = parse_images(Some(
            r#"[{"url": "a", "x": 1e131071, "y": -1.5e-16382, "z": 0e999999, "w": 0.0001e131075}]"#,
        ))
        .expect("every number fits numeric");
        assert_eq!(
            images[0].clone().into_value().to_string(),
            r#"{"url":"a","x":1e+131071,"y":-1.5e-16382,"z":0e+999999,"w":0.0001e+131075}"#
        );
    }

    #[test]
    fn a_lone_surrogate_is_named_by_the_path_of_its_string() {
        let cases = [
            (
                r#"[{"url": "a", "caption": "\ud800"}]"#,
                "images[0].caption",
            ),
            (r#"[{"url": "\ud800x"}]"#, "images[0].url"),
            (r#"["ok", "x\udc00y"]"#, "images[1]"),
            (r#"["\\ud800", "\ud800"]"#, "images[1]"),
            (
                r#"[{"url": "a", "meta": {"t": ["\ud83d\ude00", "\ud800\u0041"]}}]"#,
                "images[0].meta.t[1]",
            ),
            (
                r#"[{"url": "a", "\ud83d\ude00": {"\udbff\ud800": 1}}]"#,
                r#"images[0]["😀"]"#,
            ),
            (r#""\ud800""#, "images"),
        ];
        for (raw, path) in cases {
            let e = parse_images(Some(raw)).unwrap_err();
            assert_eq!(e.path, path, "{raw}: {e}");
        }
        let reason = |raw: &str| parse_images(Some(raw)).unwrap_err().reason;
        assert_eq!(
            reason(r#"[{"url": "a", "caption": "\uD800"}]"#),
            r"a lone surrogate \ud800 cannot be stored in jsonb"
        );
        assert_eq!(
            reason(r#"[{"url": "a", "k\udc00": 1}]"#),
            r"a key holds a lone surrogate \udc00, which cannot be stored in jsonb"
        );
        assert!(parse_images(Some(r#"["\ud83d\ude00", "\\ud800"]"#)).is_ok());
    }

    #[test]
    fn integer_literal_reads_the_text_as_written() {
        let number = |s: &str| -> Number { serde_json::from_str(s).expect("a number") };
        assert_eq!(integer_literal(&number("0")), Some(0));
        assert_eq!(integer_literal(&number("-0")), Some(0));
        assert_eq!(
            integer_literal(&number("18446744073709551615")),
            Some(u64::MAX)
        );
        assert_eq!(
            integer_literal(&number("18446744073709551616")),
            Some(u64::MAX)
        );
        assert_eq!(integer_literal(&number("-1")), None);
        assert_eq!(integer_literal(&number("1.0")), None);
        assert_eq!(integer_literal(&number("1e2")), None);
        assert_eq!(integer_literal(&number("-0.0")), None);
    }
}
