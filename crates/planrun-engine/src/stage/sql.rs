//! SQL text helpers: where a statement starts, and PostgreSQL's error position as a
//! line and column. Splitting is PostgreSQL's own parser's (`planrun-sql`).

/// The 1-based line of `script` where the statement at byte `offset` starts: its first
/// character that is neither white space nor in a `--` comment.
pub(crate) fn statement_line(script: &str, offset: usize) -> usize {
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

/// 1-based line and column of PostgreSQL's error position (1-based, in characters)
/// within `text`, offset by `base_offset` bytes into the whole file.
pub(crate) fn position_to_line_column(
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
pub(crate) fn line_at(text: &str, line: usize) -> Option<String> {
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
        let starts: Vec<usize> = [0, 9, 38]
            .into_iter()
            .map(|offset| statement_line(script, offset))
            .collect();
        assert_eq!(starts, [1, 4, 4]);
    }

    #[test]
    fn error_positions_become_lines_and_columns() {
        let file = "SELECT 1;\nSELECT ünï, bogus FROM t;\n";
        let base = file.find("SELECT ü").unwrap();
        assert_eq!(position_to_line_column(file, base, 13), (2, 13));
        assert_eq!(position_to_line_column(file, 0, 18), (2, 8));
    }
}
