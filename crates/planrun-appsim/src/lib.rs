//! A live application for end-to-end tests: the old memoir application version, reading
//! and writing the legacy `chapters` table while `planrun apply` migrates it, and a check
//! that every write it saw commit is still in the database afterwards.
//!
//! The memoir spec's first rule for a running application is that no committed write is
//! lost. [`AppSimulator`] runs writer and reader threads, each on its own connection
//! named `app-writer-N` or `app-reader-N` (so blocker reports can name them), and
//! remembers the full legacy state every committed write left behind. [`AppLog`] then
//! compares that with the database in either shape: legacy columns still in place
//! (migration not applied, or rolled back), or split into `chapter_sections` by the
//! spec's rules (computed independently with [`planrun_memoir::split_chapter`]).
//!
//! Writers own disjoint sets of chapters (initially `id % writers == index`, plus the
//! chapters they insert), so a chapter's commit order is its writer's order, and the last
//! committed write of a chapter is its expected final state. Every write is a single
//! autocommit statement whose `RETURNING` clause reports the row as committed, so the
//! recorded state never depends on the writer's guess of the other column.
//!
//! A write is committed when its statement returns a result; a statement the server
//! rejected is a failed write (the application saw an error; nothing is lost). A write
//! whose connection broke before the result arrived is in doubt: the chapter may hold
//! either the state before or the state attempted, and both are accepted.
//!
//! [`SectionApp`] is the new version after stage 2: it replaces and removes sections'
//! images and reads `chapter_sections`, for stage 5.
//!
//! The simulator prepares no named statement (`query_typed`: one unnamed
//! Parse/Bind/Execute per statement), so it also runs through a transaction-mode
//! pooler such as PgBouncer before 1.21, which does not carry prepared statements
//! from one server connection to the next.

mod config;
mod excerpt;
mod expectation;
mod generated;
mod jsonb;
mod log;
mod lost_writes;
mod new_shape;
mod observed;
mod progress;
mod reader;
mod sections;
mod shape;
mod simulator;
mod thread_context;
mod writer;

pub use config::{AppConfig, WriteKind};
pub use expectation::LegacyState;
pub use log::AppLog;
pub use progress::Progress;
pub use sections::{SectionApp, SectionLog};
pub use simulator::AppSimulator;
