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

use serde_json::{Map, Number, Value};

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
/// Besides the spec's shape rules, a string anywhere in an element (or an object key)
/// containing U+0000 is rejected: PostgreSQL's `jsonb` and `text` cannot store it, so
/// such a row (possible only in a `json` or `text` column) would otherwise fail later, on
/// insert, without saying where.
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

/// The error for a value serde_json could not parse. Nesting beyond [`MAX_DEPTH`] is
/// valid JSON, so it is not reported as "not valid JSON" but as too deep, at the element
/// or member holding the nesting (`images[0].exif`), as every other rule names its place.
fn parse_error(raw: &str, error: &serde_json::Error) -> InvalidImages {
    if error.to_string().starts_with("recursion limit exceeded") {
        if let Some(path) = too_deep_path(raw) {
            return InvalidImages::new(
                path,
                format!(
                    "arrays and objects nested more than {MAX_DEPTH} deep, which this migration cannot parse"
                ),
            );
        }
    }
    InvalidImages::new("images", format!("not valid JSON: {error}"))
}

/// Where `raw` first nests arrays and objects more than [`MAX_DEPTH`] deep: the path to
/// at most the element and its member (`images[0].exif`, `images[0][0]`), or `None` when
/// it never does. A linear scan with a stack bounded by [`MAX_DEPTH`]; it assumes the
/// JSON is well formed up to that point, which is where serde_json stopped.
fn too_deep_path(raw: &str) -> Option<String> {
    enum Frame {
        Array(usize),
        Object {
            key: Option<String>,
            awaiting_key: bool,
        },
    }
    let bytes = raw.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
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
                    let mut path = "images".to_owned();
                    for frame in stack.iter().take(2) {
                        match frame {
                            Frame::Array(index) => path.push_str(&format!("[{index}]")),
                            Frame::Object { key: Some(key), .. } => path = member_path(&path, key),
                            Frame::Object { key: None, .. } => break,
                        }
                    }
                    return Some(path);
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
        reject_nul_within(&key_path, value)?;
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

// serde_json's recursion limit (128) bounds the depth of this walk.
fn reject_nul_within(path: &str, value: &Value) -> Result<(), InvalidImages> {
    match value {
        Value::String(s) => reject_nul(path, s),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| reject_nul_within(&format!("{path}[{i}]"), item)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            let key_path = member_path(path, key);
            reject_nul(&key_path, key)?;
            reject_nul_within(&key_path, item)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
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
    const LIMIT: usize = 40;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
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
