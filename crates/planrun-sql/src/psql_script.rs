//! psql's client side, done before a file reaches PostgreSQL's parser: variables
//! (`\set`, `\unset`, `:NAME`, `:'NAME'`, `:"NAME"`, `:{?NAME}`) substituted with
//! psql's quoting rules, and the rows of `COPY ... FROM stdin` taken out of the text to
//! be sent the way psql sends them. Every other meta-command is refused with its line
//! and what it does.
//!
//! The text is read the way psql's lexer reads it: nothing inside a string, a quoted
//! identifier, a dollar quote or a comment is touched, `::` is a cast, and a variable
//! that is not set stays as written (as in psql; the server then says what it makes of
//! it). The expanded text keeps every line where it was (a meta-command's line and a
//! COPY's rows become empty lines), so a statement's line is its line in the file.

use std::collections::BTreeMap;

use crate::classify::StatementKind;
use crate::error::{line_column, SqlError};
use crate::meta_command::{meta_command_refusal, parse_set_arguments};
use crate::script::Statement;

/// A file with psql's client side done: SQL for the server, and the rows of each
/// `COPY ... FROM stdin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsqlScript {
    /// The file with variables substituted and meta-commands and COPY rows removed,
    /// line for line.
    pub sql: String,
    copies: Vec<CopyRows>,
}

/// The rows psql would send after one `COPY ... FROM stdin`, as in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRows {
    /// Every line up to the `\.` line (or the end of the file), each with its newline.
    pub data: String,
    /// The 1-based line of the file where the rows start.
    pub first_line: usize,
    /// Offset in [`PsqlScript::sql`] of the `;` that ends the COPY statement.
    semicolon: usize,
}

impl PsqlScript {
    /// The rows that follow `statement` (one of `parse_script(&self.sql)`), when it is a
    /// `COPY ... FROM stdin`.
    pub fn copy_rows(&self, statement: &Statement<'_>) -> Option<&CopyRows> {
        if statement.kind != (StatementKind::CopyStdio { from_stdin: true }) {
            return None;
        }
        let end = statement.offset + statement.text.len();
        self.copies
            .iter()
            .find(|copy| copy.semicolon >= end && self.sql[end..copy.semicolon].trim().is_empty())
    }
}

/// Does psql's client side of `text` with `variables` set (as `psql -v` would).
pub fn expand_psql(
    text: &str,
    variables: &BTreeMap<String, String>,
) -> Result<PsqlScript, SqlError> {
    let mut expander = Expander {
        text,
        bytes: text.as_bytes(),
        at: 0,
        out: String::with_capacity(text.len()),
        variables: variables.clone(),
        statement_start: 0,
        depth: 0,
        copies: Vec::new(),
    };
    expander.run()?;
    Ok(PsqlScript {
        sql: expander.out,
        copies: expander.copies,
    })
}

struct Expander<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
    out: String,
    variables: BTreeMap<String, String>,
    /// Where the statement being read starts in `out`.
    statement_start: usize,
    /// Parenthesis depth: a `;` inside parentheses ends no statement (`CREATE RULE`).
    depth: usize,
    copies: Vec<CopyRows>,
}

impl Expander<'_> {
    fn run(&mut self) -> Result<(), SqlError> {
        while self.at < self.bytes.len() {
            let rest = &self.bytes[self.at..];
            match rest[0] {
                b'-' if rest.get(1) == Some(&b'-') => {
                    self.copy_through(line_end(self.bytes, self.at))
                }
                b'/' if rest.get(1) == Some(&b'*') => {
                    self.copy_through(block_comment_end(self.bytes, self.at))
                }
                b'\'' => self.copy_through(quoted_end(self.bytes, self.at, b'\'', false)),
                b'"' => self.copy_through(quoted_end(self.bytes, self.at, b'"', false)),
                b'$' => {
                    let end = dollar_quote_end(self.text, self.at).unwrap_or(self.at + 1);
                    self.copy_through(end);
                }
                b':' if rest.get(1) == Some(&b':') => self.copy_through(self.at + 2),
                b':' => self.variable(),
                b'\\' => self.meta_command()?,
                b'(' => {
                    self.depth += 1;
                    self.copy_through(self.at + 1);
                }
                b')' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.copy_through(self.at + 1);
                }
                b';' if self.depth == 0 => self.statement_end(),
                byte if is_identifier_start(byte) => self.identifier(),
                _ => {
                    let len = utf8_len(rest[0]);
                    self.copy_through(self.at + len);
                }
            }
        }
        Ok(())
    }

    fn copy_through(&mut self, end: usize) {
        let end = end.min(self.bytes.len());
        self.out.push_str(&self.text[self.at..end]);
        self.at = end;
    }

    /// A word; `E'...'` starts a string in which a backslash escapes the quote.
    fn identifier(&mut self) {
        let mut end = self.at + 1;
        while end < self.bytes.len() && is_identifier_char(self.bytes[end]) {
            end += 1;
        }
        let word = &self.bytes[self.at..end];
        if matches!(word, b"e" | b"E") && self.bytes.get(end) == Some(&b'\'') {
            self.copy_through(quoted_end(self.bytes, end, b'\'', true));
        } else {
            self.copy_through(end);
        }
    }

    /// `:NAME`, `:'NAME'`, `:"NAME"` or `:{?NAME}` replaced by what psql sends; a name
    /// that is not set stays as written.
    fn variable(&mut self) {
        match reference_at(self.text, self.at, &self.variables) {
            Some((value, end)) => {
                self.out.push_str(&value);
                self.at = end;
            }
            None => self.copy_through(self.at + 1),
        }
    }

    /// A backslash command: its line (or what is left of it) is read and done, or
    /// refused; `\set` and `\unset` are done.
    fn meta_command(&mut self) -> Result<(), SqlError> {
        let end = line_end(self.bytes, self.at);
        let line = &self.text[self.at..end];
        let name_len = line[1..]
            .find(|c: char| c.is_whitespace() || c == '\\')
            .map_or(line.len(), |len| len + 1);
        let name = &line[1..name_len];
        let arguments = &line[name_len..];
        match name {
            "set" => {
                let parsed =
                    parse_set_arguments(arguments, &|rest| reference_at(rest, 0, &self.variables))
                        .map_err(|why| self.refusal(why))?;
                if let Some((variable, value)) = parsed {
                    self.variables.insert(variable, value);
                }
            }
            "unset" => {
                for variable in arguments.split_whitespace() {
                    self.variables.remove(variable);
                }
            }
            _ => {
                let (message, help) = meta_command_refusal(name);
                return Err(self.refusal(message).help(help));
            }
        }
        self.at = end;
        Ok(())
    }

    fn refusal(&self, message: String) -> SqlError {
        SqlError::at(self.text, self.at, message)
    }

    /// A `;` outside parentheses; after a `COPY ... FROM stdin`, the lines that follow
    /// up to `\.` are its rows.
    fn statement_end(&mut self) {
        let statement = &self.out[self.statement_start..];
        let is_copy_in = starts_with_copy(statement) && copies_from_stdin(statement);
        let semicolon = self.out.len();
        self.copy_through(self.at + 1);
        if is_copy_in {
            self.copy_rows(semicolon);
        }
        self.statement_start = self.out.len();
    }

    /// psql reads the rows from the line after the statement's; the rest of the
    /// statement's line is SQL again, read after the rows.
    fn copy_rows(&mut self, semicolon: usize) {
        let len = self.bytes.len();
        let line_rest_end = line_end(self.bytes, self.at);
        // The rows' lines (and the `\.`) stay as empty lines, so that the statements
        // after them keep their line numbers; the rest of the COPY's line goes first.
        let mut kept = self.text[self.at..line_rest_end].to_owned();
        if line_rest_end < len {
            kept.push('\n');
        }
        let mut at = (line_rest_end + 1).min(len);
        let first_line = line_column(self.text, at).0;
        let mut data = String::new();
        while at < len {
            let end = line_end(self.bytes, at);
            let next = (end + 1).min(len);
            if end < len {
                kept.push('\n');
            }
            if self.text[at..end].trim_end_matches('\r') == "\\." {
                at = next;
                break;
            }
            data.push_str(&self.text[at..next]);
            at = next;
        }
        self.out.push_str(&kept);
        self.at = at;
        self.copies.push(CopyRows {
            data,
            first_line,
            semicolon,
        });
    }
}

/// The value of the variable reference at `at` in `text` and where the reference ends,
/// or `None` when there is none there or its variable is not set.
pub(crate) fn reference_at(
    text: &str,
    at: usize,
    variables: &BTreeMap<String, String>,
) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let after = at + 1;
    let name_end = |from: usize| {
        let mut end = from;
        while end < bytes.len() && is_variable_char(bytes[end]) {
            end += 1;
        }
        end
    };
    match bytes.get(after)? {
        quote @ (b'\'' | b'"') => {
            let end = name_end(after + 1);
            if end == after + 1 || bytes.get(end) != Some(quote) {
                return None;
            }
            let value = variables.get(&text[after + 1..end])?;
            let quoted = if *quote == b'\'' {
                quote_literal(value)
            } else {
                format!("\"{}\"", value.replace('"', "\"\""))
            };
            Some((quoted, end + 1))
        }
        b'{' if bytes.get(after + 1) == Some(&b'?') => {
            let end = name_end(after + 2);
            if end == after + 2 || bytes.get(end) != Some(&b'}') {
                return None;
            }
            let set = variables.contains_key(&text[after + 2..end]);
            Some((if set { "TRUE" } else { "FALSE" }.to_owned(), end + 1))
        }
        byte if is_variable_char(*byte) => {
            let end = name_end(after);
            Some((variables.get(&text[after..end])?.clone(), end))
        }
        _ => None,
    }
}

/// `PQescapeLiteral`: quotes doubled, and with a backslash in the value, backslashes
/// doubled in an `E'...'` string preceded by a space.
fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!(" E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Whether the statement's first word, past comments and white space, is COPY.
fn starts_with_copy(statement: &str) -> bool {
    let mut rest = statement.trim_start();
    loop {
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment
                .find('\n')
                .map_or("", |at| &comment[at..])
                .trim_start();
        } else if rest.starts_with("/*") {
            let end = block_comment_end(rest.as_bytes(), 0);
            rest = rest[end.min(rest.len())..].trim_start();
        } else {
            break;
        }
    }
    rest.get(..4)
        .is_some_and(|word| word.eq_ignore_ascii_case("copy"))
        && !rest[4..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

fn copies_from_stdin(statement: &str) -> bool {
    let Ok(parsed) = pg_query::parse(statement, 0) else {
        return false;
    };
    let Some(node) = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|raw| raw.stmt.as_ref())
        .and_then(|node| node.node.as_ref())
    else {
        return false;
    };
    StatementKind::of(node) == (StatementKind::CopyStdio { from_stdin: true })
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |at| from + at)
}

/// The end of the (nestable) block comment starting at `from`, or the end of the text.
fn block_comment_end(bytes: &[u8], from: usize) -> usize {
    crate::script::block_comment_end(&bytes[from..]).map_or(bytes.len(), |end| from + end)
}

/// The end of the string or quoted identifier opening at `from`; a doubled quote stays
/// inside, and in an `E'...'` string so does a backslash-escaped character.
fn quoted_end(bytes: &[u8], from: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = from + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash_escapes => i += 2,
            byte if byte == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of the dollar-quoted string opening at `from` (`$$` or `$tag$`), or `None`
/// when no dollar quote opens there (a parameter such as `$1`).
fn dollar_quote_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut end = from + 1;
    if end < bytes.len() && !bytes[end].is_ascii_digit() {
        while end < bytes.len() && is_identifier_char(bytes[end]) && bytes[end] != b'$' {
            end += 1;
        }
    }
    if bytes.get(end) != Some(&b'$') {
        return None;
    }
    let tag = &text[from..=end];
    let body = end + 1;
    Some(
        text[body..]
            .find(tag)
            .map_or(text.len(), |at| body + at + tag.len()),
    )
}

fn is_identifier_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

fn is_identifier_char(byte: u8) -> bool {
    is_identifier_start(byte) || byte.is_ascii_digit() || byte == b'$'
}

fn is_variable_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}
