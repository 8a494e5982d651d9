//! libpq's connection settings, decided once: a URI or key=value string, then the
//! `PG*` environment, then libpq's defaults, then the password file, each with libpq's
//! meaning. planrun connects with the result and hands exactly the same settings to
//! `pg_dump`. No database code: everything here is testable offline.
//!
//! Also [`redact`]: hiding passwords in any text that may quote a connection string;
//! and [`display_target`]: a socket target shown as psql shows it.

mod display;
mod endpoint;
mod environment;
mod error;
mod from_file;
mod key_value;
mod keywords;
mod passfile;
mod redact;
mod resolve;
mod settings;
mod url;

pub use display::display_target;
pub use endpoint::Endpoint;
pub use environment::{Environment, FixedEnvironment, ProcessEnvironment};
pub use error::ConnInfoError;
pub use from_file::resolve_from_file;
pub use key_value::{parse_key_value, quote_value};
pub use keywords::{keyword, Keyword, Support, KEYWORDS};
pub use redact::{redact, scrub};
pub use resolve::{resolve, Resolved, DEFAULT_PORT, DEFAULT_SOCKET_DIR};
pub use settings::{Origin, Settings};
pub use url::{is_uri, parse_uri};

/// Parses a URI or key=value connection string (no environment, no defaults).
pub fn parse(text: &str) -> Result<Settings, ConnInfoError> {
    if is_uri(text) {
        parse_uri(text)
    } else {
        parse_key_value(text)
    }
}
