//! A checksum of what a SQL text says rather than how it is laid out: SHA-256 over its
//! tokens as PostgreSQL's scanner reads them, comments and white space left out. An
//! edit to comments or indentation is then no change; any other edit is.

use pg_query::protobuf::Token;
use sha2::{Digest, Sha256};

use crate::error::SqlError;

/// `tokens:<hex>`, or the scanner's complaint (an unterminated string, say).
pub fn token_checksum(text: &str) -> Result<String, SqlError> {
    let tokens = pg_query::scan_tokens(text)
        .map_err(|error| SqlError::at(text, 0, format!("cannot read the SQL's tokens: {error}")))?;
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
