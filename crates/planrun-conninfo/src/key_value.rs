//! libpq's key=value connection strings: `host=db port=5432 password='a b'`.
//!
//! Spaces may surround `=`. A value is a run of non-space characters or a
//! single-quoted string; in both, a backslash takes the next character literally.
//! "Space" is what C's `isspace` says for one byte, as libpq reads it: ASCII white
//! space only, so a no-break space is part of a value.

use crate::{ConnInfoError, Settings};

/// Parses a key=value string into settings.
pub fn parse_key_value(text: &str) -> Result<Settings, ConnInfoError> {
    let mut settings = Settings::default();
    let mut after_password = false;
    for pair in pairs(text) {
        let Pair { key, value, .. } = pair.map_err(|error| unechoed(error, after_password))?;
        settings
            .set_given(key, value)
            .map_err(|error| unechoed(error, after_password))?;
        after_password = key == "password";
    }
    Ok(settings)
}

/// `error`, unless the word it quotes may be the rest of an unquoted password
/// (`password=correct horse battery`): psql echoes it, planrun does not.
pub(crate) fn unechoed(error: ConnInfoError, after_password: bool) -> ConnInfoError {
    if !after_password {
        return error;
    }
    ConnInfoError::Syntax(
        "the word after the password is no \"key=value\" setting; quote a password that holds spaces (password='...') or percent-encode it in a URI".into(),
    )
}

/// White space as libpq's `isspace` sees it, one byte at a time in a UTF-8 string.
pub(crate) fn is_libpq_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// One `key=value` of a string: the key and the value as libpq reads it.
pub(crate) struct Pair<'a> {
    pub key: &'a str,
    pub value: String,
}

/// The pairs of `text`, in order; the first malformed one ends the list with an error.
pub(crate) fn pairs(text: &str) -> impl Iterator<Item = Result<Pair<'_>, ConnInfoError>> {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        at = skip_spaces(text, at);
        if at >= text.len() {
            return None;
        }
        let pair = pair_at(text, at);
        match &pair {
            Ok((_, end)) => at = *end,
            Err(_) => failed = true,
        }
        Some(pair.map(|(pair, _)| pair))
    })
}

fn skip_spaces(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c: char| !is_libpq_space(c))
        .map_or(text.len(), |offset| from + offset)
}

/// The pair starting at byte `start` and the byte after it.
fn pair_at(text: &str, start: usize) -> Result<(Pair<'_>, usize), ConnInfoError> {
    let key_end = text[start..]
        .find(|c: char| c == '=' || is_libpq_space(c))
        .map_or(text.len(), |offset| start + offset);
    let key = &text[start..key_end];
    let equals = skip_spaces(text, key_end);
    if !text[equals..].starts_with('=') {
        return Err(ConnInfoError::Syntax(format!(
            "missing \"=\" after \"{key}\" in the connection string"
        )));
    }
    let value_start = skip_spaces(text, equals + 1);
    let quoted = text[value_start..].starts_with('\'');
    let mut value = String::new();
    let mut chars = text[value_start..].char_indices().skip(usize::from(quoted));
    let mut value_end = text.len();
    let mut closed = !quoted;
    while let Some((offset, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '\'' if quoted => {
                value_end = value_start + offset + 1;
                closed = true;
                break;
            }
            c if !quoted && is_libpq_space(c) => {
                value_end = value_start + offset;
                break;
            }
            c => value.push(c),
        }
    }
    if !closed {
        return Err(ConnInfoError::Syntax(format!(
            "unterminated quoted string in the value of \"{key}\""
        )));
    }
    let pair = Pair { key, value };
    Ok((pair, value_end))
}

/// `value` quoted for a key=value string, as libpq reads it back.
pub fn quote_value(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_libpq_reads_them() {
        let settings = parse_key_value(
            r"host = db  password=Tr0ub4dor\ horse\ battery user='o\'brien' dbname='a  b'",
        )
        .unwrap();
        assert_eq!(settings.get("host"), Some("db"));
        assert_eq!(settings.get("password"), Some("Tr0ub4dor horse battery"));
        assert_eq!(settings.get("user"), Some("o'brien"));
        assert_eq!(settings.get("dbname"), Some("a  b"));
    }

    #[test]
    fn malformed_strings_and_unknown_keywords_are_errors() {
        for text in ["host", "host=db password='open", "hots=db"] {
            assert!(parse_key_value(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_quoted_value_reads_back_unchanged() {
        let value = r"it's a \ test  ";
        let text = format!("password={}", quote_value(value));
        assert_eq!(parse_key_value(&text).unwrap().get("password"), Some(value));
    }

    /// Issue 26, item 8: libpq splits at ASCII white space only.
    #[test]
    fn a_no_break_space_is_part_of_a_value() {
        let settings = parse_key_value("host=db password=Tr0ub4dor\u{a0}horse").unwrap();
        assert_eq!(settings.get("password"), Some("Tr0ub4dor\u{a0}horse"));
        let settings = parse_key_value("host=db\u{b}dbname=x").unwrap();
        assert_eq!(
            settings.get("dbname"),
            Some("x"),
            "a vertical tab separates"
        );
    }

    /// Issue 26, item 9: a word left over from an unquoted password is not echoed.
    #[test]
    fn a_password_fragment_is_never_echoed() {
        for text in [
            "host=db password=correct horse battery",
            "host=db password=correct horse=battery",
        ] {
            let error = parse_key_value(text).unwrap_err().to_string();
            assert!(!error.contains("horse"), "{error}");
        }
        let error = parse_key_value("host=db hots=x").unwrap_err().to_string();
        assert!(
            error.contains("hots"),
            "other mistakes are still named: {error}"
        );
    }
}
