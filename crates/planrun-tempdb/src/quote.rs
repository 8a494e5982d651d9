//! Quoting for the four languages we emit text in: URLs, SQL identifiers,
//! `postgresql.conf` values and POSIX shell words.

use std::fmt::Write as _;

/// Percent-encode everything but RFC 3986 unreserved characters, which is safe in both
/// the userinfo and the path of a URL.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A double-quoted SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted `postgresql.conf` string.
pub(crate) fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A single-quoted shell word.
pub(crate) fn shell(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_url_parts() {
        assert_eq!(percent_encode("plain-db_1.x~"), "plain-db_1.x~");
        assert_eq!(percent_encode("p@ss:w/rd é"), "p%40ss%3Aw%2Frd%20%C3%A9");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(ident("app"), "\"app\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn quotes_conf_values() {
        assert_eq!(conf_value("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn quotes_shell_words() {
        assert_eq!(shell("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
