//! Short excerpts of long values for the lost-write report: a line per chapter must stay
//! readable when content runs to thousands of characters.

use serde_json::Value;

/// How many characters of a value a report line shows.
const EXCERPT_CHARS: usize = 60;

pub(crate) fn excerpt_text(text: Option<&str>) -> String {
    excerpt_from(text, 0)
}

/// `text` shown from character `start` on, at most [`EXCERPT_CHARS`] of it.
fn excerpt_from(text: Option<&str>, start: usize) -> String {
    let Some(text) = text else {
        return "NULL".to_owned();
    };
    let total = text.chars().count();
    if total <= EXCERPT_CHARS {
        return format!("{text:?}");
    }
    let start = start.min(total.saturating_sub(EXCERPT_CHARS));
    let shown: String = text.chars().skip(start).take(EXCERPT_CHARS).collect();
    let before = if start > 0 { "..." } else { "" };
    let after = if start + EXCERPT_CHARS < total {
        "..."
    } else {
        ""
    };
    format!("{before}{shown:?}{after} ({total} chars)")
}

/// "expected ..., found ...", both shown from a little before the first character in
/// which they differ.
pub(crate) fn text_difference(want: Option<&str>, got: Option<&str>) -> String {
    let common = match (want, got) {
        (Some(want), Some(got)) => want
            .chars()
            .zip(got.chars())
            .take_while(|(a, b)| a == b)
            .count(),
        _ => 0,
    };
    let start = common.saturating_sub(EXCERPT_CHARS / 3);
    format!(
        "expected {}, found {}",
        excerpt_from(want, start),
        excerpt_from(got, start)
    )
}

pub(crate) fn excerpt_json(value: Option<&Value>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some(value) => {
            let text = value.to_string();
            if text.chars().count() <= EXCERPT_CHARS {
                text
            } else {
                let head: String = text.chars().take(EXCERPT_CHARS).collect();
                format!("{head}... ({} chars)", text.chars().count())
            }
        }
    }
}
