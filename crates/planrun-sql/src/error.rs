//! A SQL file that cannot be run: where (byte offset, line, column) and why.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub message: String,
    /// Byte offset into the text.
    pub offset: usize,
    /// 1-based line and column (in characters) of `offset`.
    pub line: usize,
    pub column: usize,
    /// What to do about it, when known.
    pub help: Option<String>,
}

impl SqlError {
    pub(crate) fn at(text: &str, offset: usize, message: impl Into<String>) -> SqlError {
        let (line, column) = line_column(text, offset);
        SqlError {
            message: message.into(),
            offset,
            line,
            column,
            help: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> SqlError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}

/// The 1-based line and column (counted in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
