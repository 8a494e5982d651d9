//! Hiding passwords in text that may quote a connection string: messages, errors,
//! the ledger's record of the target.

/// Replaces the password in a URL (`postgres://user:secret@host`) or key=value string
/// (`password=secret`, `password = 'a b'`) with `***`. Text without a password is
/// returned unchanged.
///
/// The credentials of a URL run to its first `@`, as the `postgres` crate (and libpq)
/// read them, so a password holding an unencoded `/`, `?`, `#` or space is still
/// hidden; and on to the last `@` before the host ends, so one holding an `@` is too. When unsure (an `@` later on the same line after a URL without user), this
/// hides too much rather than too little.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_at) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_at + 3);
        out.push_str(head);
        // The credentials end at the first `@` on this line, unless another URL
        // starts first.
        let line_end = tail.find(['\n', '\r']).unwrap_or(tail.len());
        let next_url = tail[..line_end].find("://").unwrap_or(line_end);
        let credentials_end = tail[..next_url]
            .find('@')
            .map(|at| last_at_of_host(tail, at));
        match credentials_end {
            Some(at) if tail[..at].contains(':') => {
                let colon = tail[..at].find(':').expect("checked above");
                out.push_str(&tail[..colon]);
                out.push_str(":***");
                rest = &tail[at..];
            }
            Some(at) => {
                out.push_str(&tail[..at]);
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    redact_key_value(&out)
}

/// Hides the value of every `password` key: keys are compared percent-decoded and
/// without regard to case (`pass%77ord`, `PASSWORD`), so no spelling a URI or a
/// mistyped string may use shows its value; hiding a little more than libpq would
/// read as a password is the safe side.
fn redact_key_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(equals) = rest.find('=') {
        let key_text = rest[..equals].trim_end();
        let key_start = key_text
            .rfind(|c: char| c.is_whitespace() || c == '&' || c == '?')
            .map_or(0, |index| index + 1);
        let in_query = key_text[..key_start].ends_with(['&', '?']);
        let key = &key_text[key_start..];
        let key = crate::url::decode(key, "key").unwrap_or_else(|_| key.to_owned());
        let (head, tail) = rest.split_at(equals + 1);
        out.push_str(head);
        if !key.eq_ignore_ascii_case("password") {
            rest = tail;
            continue;
        }
        let value = tail.trim_start();
        out.push_str(&tail[..tail.len() - value.len()]);
        out.push_str("***");
        rest = &value[value_end(value, in_query)..];
        if !value.starts_with('\'') {
            rest = &rest[fragments_end(rest, in_query)..];
        }
    }
    out.push_str(rest);
    out
}

/// Where the words after an unquoted password value end that may still be part of
/// it: a password with an unescaped space (`password=correct horse`) or an unencoded
/// `&` in a URI (`?password=a&b`) leaves words that are no `keyword=...` setting of
/// libpq's; they are hidden too, up to the next setting.
fn fragments_end(rest: &str, in_query: bool) -> usize {
    let mut end = 0;
    loop {
        let after = &rest[end..];
        let word_start = if in_query {
            usize::from(after.starts_with('&'))
        } else {
            after
                .find(|c: char| !crate::key_value::is_libpq_space(c))
                .unwrap_or(0)
        };
        if word_start == 0 {
            return end;
        }
        let word = &after[word_start..];
        let word = &word[..word
            .find(|c: char| crate::key_value::is_libpq_space(c) || (in_query && c == '&'))
            .unwrap_or(word.len())];
        let key = word.split('=').next().unwrap_or(word);
        let key = crate::url::decode(key, "key").unwrap_or_else(|_| key.to_owned());
        let a_setting = word.contains('=')
            && (crate::keywords::keyword(&key).is_some()
                || key == "ssl"
                || key == "requiressl"
                || key.eq_ignore_ascii_case("password"));
        if word.is_empty() || a_setting {
            return end;
        }
        end += word_start + word.len();
    }
}

/// Where a password value starts at `value` ends.
fn value_end(value: &str, in_query: bool) -> usize {
    let Some(quoted) = value.strip_prefix('\'') else {
        return unquoted_end(value, in_query);
    };
    // A quoted value, with backslash escapes as libpq reads them.
    let mut chars = quoted.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' => return index + 2,
            _ => {}
        }
    }
    value.len()
}

/// The last `@` of the host part that starts at the `@` at byte `at`: with an
/// unencoded `@` in a password (`u:pw@Secret@db`), libpq reads `Secret@db` as the
/// host, which holds the rest of the password.
fn last_at_of_host(tail: &str, at: usize) -> usize {
    let host = &tail[at + 1..];
    let host_end = host
        .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
        .unwrap_or(host.len());
    host[..host_end].rfind('@').map_or(at, |last| at + 1 + last)
}

/// Replaces every occurrence of `secret` (as given and percent-decoded) in `text` with
/// `***`: the last line of defence for messages that echo the connection string.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|secret| !secret.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(secret, "***");
    let decoded = crate::url::decode(secret, "password").ok();
    if let Some(decoded) = decoded.filter(|decoded| !decoded.is_empty() && decoded != secret) {
        out = out.replace(&decoded, "***");
    }
    out
}

/// Where an unquoted value ends: at whitespace (or `&` in a URI query), where a
/// backslash takes the next character, space included, into the value, as libpq
/// reads `password=Tr0ub4dor\\ horse`.
fn unquoted_end(value: &str, in_query: bool) -> usize {
    let mut chars = value.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' if !in_query => {
                chars.next();
            }
            '&' if in_query => return index,
            c if crate::key_value::is_libpq_space(c) => return index,
            _ => {}
        }
    }
    value.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls_and_key_values() {
        assert_eq!(
            redact("postgresql://app:s3cr%40t@db:5432/prod?sslmode=require"),
            "postgresql://app:***@db:5432/prod?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/prod"), "postgres://app@db/prod");
        assert_eq!(
            redact("host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(redact("password='a b' x=1"), "password=*** x=1");
        assert_eq!(
            redact("error at postgres://u:pw@h/d and postgres://v:pw2@h/d"),
            "error at postgres://u:***@h/d and postgres://v:***@h/d"
        );
    }

    #[test]
    fn an_escaped_space_does_not_end_a_password() {
        assert_eq!(
            redact(r"host=db password=Tr0ub4dor\ horse\ battery user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact(r"password = 's3 cr\'et' user=app"),
            "password = *** user=app"
        );
    }

    #[test]
    fn passwords_with_url_delimiters_are_still_redacted() {
        for (url, shown) in [
            (
                "postgresql://app:pa/ss@db/prod",
                "postgresql://app:***@db/prod",
            ),
            (
                "postgresql://app:p?w#x@db/prod",
                "postgresql://app:***@db/prod",
            ),
            (
                "postgresql://app:my secret@db/prod",
                "postgresql://app:***@db/prod",
            ),
            ("postgres://app:a:b@db", "postgres://app:***@db"),
        ] {
            assert_eq!(redact(url), shown);
        }
        assert_eq!(
            redact("postgresql://db/prod?password=s3cret&sslmode=require"),
            "postgresql://db/prod?password=***&sslmode=require"
        );
        assert_eq!(
            redact("no_password=1 xpassword=2"),
            "no_password=1 xpassword=2"
        );
        assert_eq!(
            redact("postgresql://db/prod?pass%77ord=s3%2Fcret&PASSWORD=x&sslmode=require"),
            "postgresql://db/prod?pass%77ord=***&PASSWORD=***&sslmode=require"
        );
        assert_eq!(
            redact("host=db Password = 'a b' x=1"),
            "host=db Password = *** x=1"
        );
        assert_eq!(
            scrub("pw is s3%2Fcret or s3/cret", Some("s3%2Fcret")),
            "pw is *** or ***"
        );
    }

    /// Issue 26, item 9: psql echoes these fragments; planrun does not.
    #[test]
    fn malformed_strings_show_no_password_fragment() {
        assert_eq!(
            redact("postgresql://u:pw@Secret@db/prod"),
            "postgresql://u:***@db/prod"
        );
        assert_eq!(
            redact("host=db password=pa\u{a0}ss user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact("host=db password=correct horse battery user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact("postgresql://db/x?password=correct&horse=battery&sslmode=require"),
            "postgresql://db/x?password=***&sslmode=require"
        );
    }
}
