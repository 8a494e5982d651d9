//! A SQL file as statements, split by PostgreSQL's parser: a `;` inside a string, an
//! `E'...\'...'` literal, a dollar quote with any tag, a `BEGIN ATOMIC ... END` body or
//! a `CREATE RULE ... DO (...; ...)` ends no statement, because the parser knows them.

use crate::classify::StatementKind;
use crate::cursor::parse_error;
use crate::error::{line_column, SqlError};

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// From the statement's first token to its end, without the `;`, exactly as in the
    /// file.
    pub text: &'a str,
    /// Byte offset of `text` in the file.
    pub offset: usize,
    pub kind: StatementKind,
}

impl Statement<'_> {
    /// The 1-based line of the file where the statement starts.
    pub fn line(&self, file: &str) -> usize {
        line_column(file, self.offset).0
    }
}

/// Splits and classifies `text`; the error says where the parser stopped and why, and
/// recognises psql's client-side commands, which only psql can run.
pub fn parse_script(text: &str) -> Result<Vec<Statement<'_>>, SqlError> {
    let parsed = match pg_query::parse(text, 0) {
        Ok(parsed) => parsed,
        Err(_) => return Err(diagnose(text)),
    };
    let mut statements = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let start = raw.stmt_location.max(0) as usize;
        let end = match raw.stmt_len {
            0 => text.len(),
            len => start + len as usize,
        };
        let Some(slice) = text.get(start..end) else {
            continue;
        };
        let skipped = leading_blank_len(slice);
        if skipped == slice.len() {
            continue;
        }
        let kind = raw
            .stmt
            .as_ref()
            .and_then(|node| node.node.as_ref())
            .map_or(StatementKind::Other, StatementKind::of);
        statements.push(Statement {
            text: slice[skipped..].trim_end(),
            offset: start + skipped,
            kind,
        });
    }
    Ok(statements)
}

/// Why `text` does not parse, at its place in the file.
fn diagnose(text: &str) -> SqlError {
    let Some((message, offset)) = parse_error(text) else {
        let at = text.find('\0').unwrap_or(0);
        return SqlError::at(text, at, "the file holds a NUL byte, which SQL cannot");
    };
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    let line = &text[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let code = line.trim_start();
    if code.starts_with('\\') {
        let command: String = code.chars().take_while(|c| !c.is_whitespace()).collect();
        let at = line_start + (line.len() - code.len());
        return SqlError::at(
            text,
            at,
            format!("`{command}` is a psql meta-command; planrun sends SQL to the server, not psql commands"),
        )
        .help("write it as SQL, or do it in its own stage or a transform (`\\i`: list the file as another step)");
    }
    if let Some(variable) = psql_variable(&text[offset..]) {
        return SqlError::at(
            text,
            offset,
            format!("`{variable}` is a psql variable that is not set"),
        )
        .help("set it in the plan's [plan.variables], with `--set NAME=VALUE`, or with `\\set` in the file");
    }
    if let Some(copy) = copy_before(text, line_start) {
        return SqlError::at(
            text,
            copy,
            "COPY ... FROM STDIN with its rows inline is run by psql, which sends the rows after the statement; planrun does not",
        )
        .help("load the rows with INSERT ... VALUES, COPY from a file the server can read, or a transform");
    }
    SqlError::at(text, offset, message)
}

/// `:name`, `:'name'` or `:"name"` at the start of `rest`.
fn psql_variable(rest: &str) -> Option<String> {
    let after = rest.strip_prefix(':')?;
    let name: String = after
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '\'' | '"'))
        .collect();
    (!name.is_empty()).then(|| format!(":{name}"))
}

/// The offset of a `COPY ... FROM STDIN` that is the last statement before `end`, when
/// everything before `end` parses.
fn copy_before(text: &str, end: usize) -> Option<usize> {
    let before = &text[..end];
    let statements = parse_script(before).ok()?;
    let last = statements.last()?;
    matches!(last.kind, StatementKind::CopyStdio { from_stdin: true }).then_some(last.offset)
}

/// How many bytes of white space and comments start `text`.
fn leading_blank_len(text: &str) -> usize {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if let Some(comment) = trimmed.strip_prefix("--") {
            rest = comment.find('\n').map_or("", |at| &comment[at..]);
        } else if trimmed.starts_with("/*") {
            rest = match block_comment_end(trimmed.as_bytes()) {
                Some(end) => &trimmed[end..],
                None => return text.len() - trimmed.len(),
            };
        } else {
            return text.len() - trimmed.len();
        }
    }
}

/// The end of the (nestable) block comment that starts `bytes`; `None` when it is
/// not closed.
pub(crate) fn block_comment_end(bytes: &[u8]) -> Option<usize> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}
