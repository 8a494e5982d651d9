//! SQL text helpers: splitting a script into statements (each is sent on its own, so
//! that an error names its statement, and outside a transaction each commits) and
//! turning PostgreSQL's error position into a line and column.

/// The 1-based line of `script` where the statement at byte `offset` starts: its first
/// character that is neither white space nor in a `--` comment.
pub fn statement_line(script: &str, offset: usize) -> usize {
    let mut line = script[..offset].matches('\n').count() + 1;
    for text in script[offset..].split_inclusive('\n') {
        let code = text.trim_start();
        if !code.is_empty() && !code.starts_with("--") {
            break;
        }
        line += 1;
    }
    line
}

/// Statements of `script` with their byte offsets, split on `;` outside quotes,
/// dollar quotes and comments. Empty statements are dropped.
pub fn split_statements(script: &str) -> Vec<(usize, &str)> {
    let bytes = script.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < bytes.len() && depth > 0 {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 1;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            b'$' => {
                if let Some(tag_len) = dollar_tag(&bytes[i..]) {
                    let tag = &script[i..i + tag_len];
                    match script[i + tag_len..].find(tag) {
                        Some(end) => i += tag_len + end + tag_len,
                        None => i = bytes.len(),
                    }
                    continue;
                }
            }
            b';' => {
                push_statement(&mut statements, script, start, i);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_statement(&mut statements, script, start, bytes.len());
    statements
}

fn push_statement<'a>(
    statements: &mut Vec<(usize, &'a str)>,
    script: &'a str,
    start: usize,
    end: usize,
) {
    let text = &script[start..end.min(script.len())];
    let trimmed_start = text.len() - text.trim_start().len();
    let body = text.trim();
    let meaningful = body
        .lines()
        .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"));
    if meaningful {
        statements.push((start + trimmed_start, body));
    }
}

/// The length of a `$tag$` opening at the start of `bytes`, if it is one.
fn dollar_tag(bytes: &[u8]) -> Option<usize> {
    let mut end = 1;
    while end < bytes.len() {
        match bytes[end] {
            b'$' => return Some(end + 1),
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                if end == 1 && c.is_ascii_digit() {
                    return None;
                }
                end += 1;
            }
            _ => return None,
        }
    }
    None
}

/// 1-based line and column of PostgreSQL's error position (1-based, in characters)
/// within `text`, offset by `base_offset` bytes into the whole file.
pub fn position_to_line_column(
    file_text: &str,
    base_offset: usize,
    position: u32,
) -> (usize, usize) {
    let statement = &file_text[base_offset.min(file_text.len())..];
    let byte_in_statement = statement
        .char_indices()
        .nth((position as usize).saturating_sub(1))
        .map_or(statement.len(), |(at, _)| at);
    let offset = base_offset + byte_in_statement;
    let before = &file_text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The line of `text` holding byte `offset`, trimmed, for error messages.
pub fn line_at(text: &str, line: usize) -> Option<String> {
    text.lines()
        .nth(line.saturating_sub(1))
        .map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_starts_on_its_first_line_of_code() {
        let script = "SELECT 1;\n\n-- the load\n  INSERT INTO t VALUES (1);  SELECT 2;\n";
        let starts: Vec<usize> = split_statements(script)
            .into_iter()
            .map(|(offset, _)| statement_line(script, offset))
            .collect();
        assert_eq!(starts, [1, 4, 4]);
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_comments_and_dollar_quotes() {
        let script = "CREATE TABLE a (x text DEFAULT ';');\n-- comment; here\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n/* a; b */ SELECT 'it''s;';\n";
        let statements: Vec<&str> = split_statements(script)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(statements.len(), 3, "{statements:#?}");
        assert!(statements[1].starts_with("-- comment; here\nCREATE FUNCTION"));
        assert!(statements[1].ends_with("$body$ LANGUAGE sql"));
        assert!(statements[2].ends_with("SELECT 'it''s;'"));
    }

    #[test]
    fn error_positions_become_lines_and_columns() {
        let file = "SELECT 1;\nSELECT ünï, bogus FROM t;\n";
        let base = file.find("SELECT ü").unwrap();
        assert_eq!(position_to_line_column(file, base, 13), (2, 13));
        assert_eq!(position_to_line_column(file, 0, 18), (2, 8));
    }
}
