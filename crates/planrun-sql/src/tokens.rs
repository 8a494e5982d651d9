//! A checksum of what a SQL text says rather than how it is laid out: SHA-256 over its
//! tokens as PostgreSQL's scanner reads them, comments and white space left out. An
//! edit to comments or indentation is then no change; any other edit is.

use pg_query::protobuf::Token;
use sha2::{Digest, Sha256};

use crate::error::SqlError;

/// `tokens:<hex>`, or the scanner's complaint (an unterminated string, say).
pub fn token_checksum(text: &str) -> Result<String, SqlError> {
    // `scan`, not `scan_tokens`: the latter reads a null pointer for a text with no
    // token (an empty file) in pg_query 18.1.
    let tokens = pg_query::scan(text)
        .map_err(|error| SqlError::at(text, 0, format!("cannot read the SQL's tokens: {error}")))?
        .tokens;
    let mut hasher = Sha256::new();
    for token in tokens {
        if matches!(token.token(), Token::SqlComment | Token::CComment) {
            continue;
        }
        let (start, end) = (token.start.max(0) as usize, token.end.max(0) as usize);
        if let Some(piece) = text.get(start..end) {
            hasher.update(piece.as_bytes());
            hasher.update([0u8]);
        }
    }
    Ok(format!("tokens:{}", hex::encode(hasher.finalize())))
}

/// The values of the plain string constants (`'...'`) in `text`, in order; empty when
/// it does not scan.
pub fn string_literals(text: &str) -> Vec<String> {
    let Ok(tokens) = pg_query::scan(text).map(|scanned| scanned.tokens) else {
        return Vec::new();
    };
    tokens
        .iter()
        .filter(|token| token.token() == Token::Sconst)
        .filter_map(|token| text.get(token.start.max(0) as usize..token.end.max(0) as usize))
        .filter_map(|literal| literal.strip_prefix('\'')?.strip_suffix('\''))
        .map(|inner| inner.replace("''", "'"))
        .collect()
}
