//! Where PostgreSQL's parser stopped. The `pg_query` crate reports a parse error's
//! message only; libpg_query also knows the cursor position, so this asks it through
//! the same C library the crate links (declarations copied from its `pg_query.h`).

use std::ffi::{c_char, c_int, CStr, CString};

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// The parser's message and the byte offset it points at, for text that does not
/// parse; `None` when it parses (or holds a NUL byte, which the parser cannot read).
pub(crate) fn parse_error(text: &str) -> Option<(String, usize)> {
    let input = CString::new(text).ok()?;
    // SAFETY: `input` is a valid NUL-terminated string that outlives the call; the
    // result is read before it is freed, and freed exactly once.
    unsafe {
        let result = pg_query_parse(input.as_ptr());
        let found = if result.error.is_null() {
            None
        } else {
            let error = &*result.error;
            let message = CStr::from_ptr(error.message).to_string_lossy().into_owned();
            Some((message, error.cursorpos))
        };
        pg_query_free_parse_result(result);
        let (message, cursor) = found?;
        Some((message, char_to_byte(text, cursor)))
    }
}

/// PostgreSQL's cursor position is 1-based and counts characters; 0 means unknown.
fn char_to_byte(text: &str, cursor: c_int) -> usize {
    let index = (cursor.max(1) - 1) as usize;
    text.char_indices()
        .nth(index)
        .map_or(text.len(), |(byte, _)| byte)
}
