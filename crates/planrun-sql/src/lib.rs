//! SQL knowledge without a database: a SQL file split into statements by PostgreSQL's
//! own parser (libpg_query, through the `pg_query` crate), each statement classified
//! (transaction control, work that cannot run in a transaction block, psql client-side
//! features planrun does not run), and a checksum of the token stream that ignores
//! comments and white space.
//!
//! `planrun check` uses it offline, before anything connects; the engine uses the same
//! split to send statements one at a time. Statement text and offsets are exactly as in
//! the file.

mod classify;
mod cursor;
mod error;
mod script;
mod tokens;

pub use classify::StatementKind;
pub use error::{line_column, SqlError};
pub use script::{parse_script, Statement};
pub use tokens::{string_literals, token_checksum};
