//! SQL knowledge without a database: a SQL file split into statements by PostgreSQL's
//! own parser (libpg_query, through the `pg_query` crate), each statement classified
//! (transaction control, work that cannot run in a transaction block, psql client-side
//! features planrun does not run), and a checksum of the token stream that ignores
//! comments and white space.
//!
//! It also knows, statement by statement, which relations a migration locks and in
//! which mode, what it rewrites or scans, and which lock-impact rules it breaks
//! ([`analyze_script`], [`Rule`]; `docs/lock-analysis.md`), and which relations a
//! query reads and a script changes ([`relations_read`], [`relations_changed`]), for
//! `planrun verify`.
//!
//! psql's client side comes first ([`expand_psql`]): variables substituted with
//! psql's quoting, the rows of `COPY ... FROM stdin` set apart, `\set` and `\unset`
//! done and every other meta-command refused.
//!
//! `planrun check` uses it offline, before anything connects; the engine uses the same
//! split to send statements one at a time. Statement text and offsets are exactly as in
//! the file.

mod after_commit;
mod alter_table;
mod analysis_context;
mod classify;
mod column_types;
mod cursor;
mod do_block;
mod error;
mod identifier;
mod lock_analysis;
#[cfg(test)]
mod lock_analysis_tests;
mod lock_mode;
mod meta_command;
mod psql_script;
mod relations;
mod rule;
mod script;
mod table_definition;
mod tokens;

pub use after_commit::{unseen_after_commit, UnseenStatement};
pub use analysis_context::{relation_key, AnalysisContext};
pub use lock_analysis::{analyze_script, AnalyzedStatement, LockImpact, RelationLock};
pub use lock_mode::LockMode;
pub use relations::{relations_changed, relations_read, Change, QueryReads, RelationChange};
pub use rule::{Finding, Rule};

pub use classify::StatementKind;
pub use error::{line_column, SqlError};
pub use identifier::quote_identifier;
pub use psql_script::{expand_psql, CopyRows, PsqlScript};
pub use script::{parse_script, Statement};
pub use tokens::{string_literals, token_checksum};
