//! Rule 1 of the memoir spec: how a legacy `chapters.content` value becomes paragraphs.
//!
//! Newlines are normalised first (`\r\n`, then any lone `\r`, become `\n`). Only `\n`
//! separates lines afterwards: other Unicode line separators (U+0085, U+2028, U+2029,
//! vertical tab, form feed) are ordinary characters inside a line, though being
//! whitespace they still make a line blank when nothing else is on it. A paragraph is a
//! maximal run of non-blank lines, kept byte for byte, so the U+3000 indentation of
//! Chinese text and any trailing spaces survive.

use std::borrow::Cow;

/// Turns `\r\n`, then every remaining lone `\r`, into `\n`.
///
/// Borrows when there is no `\r`, which is the common case, so the splitter copies
/// nothing it does not have to.
pub fn normalize_newlines(s: &str) -> Cow<'_, str> {
    if !s.contains('\r') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('\r') {
        out.push_str(&rest[..at]);
        out.push('\n');
        rest = &rest[at + 1..];
        // A single pass is equivalent to the spec's two passes: a `\r` followed by `\n`
        // is one line break, any other `\r` is one line break on its own.
        if let Some(after) = rest.strip_prefix('\n') {
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Whether a line counts as blank: every character is Unicode White_Space. The empty
/// line is blank.
pub fn is_blank(line: &str) -> bool {
    line.chars().all(char::is_whitespace)
}

/// The paragraphs of `content` (SQL NULL is the empty string), in order.
///
/// Each paragraph borrows from `content` when it contained no `\r`; otherwise it is an
/// owned copy of the normalised text.
pub fn paragraphs(content: Option<&str>) -> Vec<Cow<'_, str>> {
    let Some(content) = content else {
        return Vec::new();
    };
    match normalize_newlines(content) {
        Cow::Borrowed(text) => ParagraphSlices::new(text).map(Cow::Borrowed).collect(),
        Cow::Owned(text) => ParagraphSlices::new(&text)
            .map(|p| Cow::Owned(p.to_owned()))
            .collect(),
    }
}

/// The paragraphs of `content` joined with `\n\n`: what the spec's content check compares
/// with the chapter's non-empty section contents joined the same way.
pub fn joined_paragraphs(content: Option<&str>) -> String {
    paragraphs(content).join("\n\n")
}

/// Iterator over the paragraphs of text whose newlines are already normalised.
///
/// A paragraph's text is its lines joined with `\n`, which in normalised text is exactly
/// the slice from the start of its first line to the end of its last, so no copy is made.
/// A `\r` left in the text is treated as an ordinary (whitespace) character.
#[derive(Debug, Clone)]
pub struct ParagraphSlices<'a> {
    text: &'a str,
    // Byte offset where the next unread line starts; `text.len() + 1` once the last
    // line (possibly the empty line after a final `\n`) has been read.
    next_line: usize,
}

impl<'a> ParagraphSlices<'a> {
    /// Paragraphs of `normalized`, which should have been through [`normalize_newlines`].
    pub fn new(normalized: &'a str) -> Self {
        ParagraphSlices {
            text: normalized,
            next_line: 0,
        }
    }
}

impl<'a> Iterator for ParagraphSlices<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let mut span: Option<(usize, usize)> = None;
        while let Some(rest) = self.text.get(self.next_line..) {
            let start = self.next_line;
            let len = rest.find('\n').unwrap_or(rest.len());
            self.next_line = start + len + 1;
            if is_blank(&rest[..len]) {
                if span.is_some() {
                    break;
                }
            } else {
                let first = span.map_or(start, |(first, _)| first);
                span = Some((first, start + len));
            }
        }
        span.map(|(start, end)| &self.text[start..end])
    }
}

impl std::iter::FusedIterator for ParagraphSlices<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_borrows_when_there_is_no_carriage_return() {
        assert!(matches!(normalize_newlines("a\nb"), Cow::Borrowed("a\nb")));
    }

    #[test]
    fn normalize_handles_crlf_lone_cr_and_runs_of_them() {
        assert_eq!(
            normalize_newlines("a\r\nb\rc\r\r\nd\n\re\r"),
            "a\nb\nc\n\nd\n\ne\n"
        );
    }

    #[test]
    fn slices_cover_edge_positions() {
        let all = |s| ParagraphSlices::new(s).collect::<Vec<_>>();
        assert!(all("").is_empty());
        assert!(all("\n\n \n").is_empty());
        assert_eq!(all("a"), ["a"]);
        assert_eq!(all("a\n"), ["a"]);
        assert_eq!(all("\na\n\n\nb\nc\n\n"), ["a", "b\nc"]);
        assert_eq!(all(" a \n\tb\t"), [" a \n\tb\t"]);
    }

    #[test]
    fn slices_iterator_is_fused() {
        let mut it = ParagraphSlices::new("a");
        assert_eq!(it.next(), Some("a"));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn paragraphs_borrow_without_cr_and_own_with_cr() {
        let borrowed = paragraphs(Some("a\n\nb"));
        assert!(borrowed.iter().all(|p| matches!(p, Cow::Borrowed(_))));
        let owned = paragraphs(Some("a\r\n\r\nb"));
        assert_eq!(owned, ["a", "b"]);
    }

    #[test]
    fn joined_paragraphs_uses_a_blank_line() {
        assert_eq!(joined_paragraphs(Some("a\n \n\n b\r\nc")), "a\n\n b\nc");
        assert_eq!(joined_paragraphs(None), "");
    }
}
