//! The database as planrun reaches it: connections (libpq settings, TLS, poolers), trusted SQL, the plan lock, interrupts, the blocker watch, backups, the PostgreSQL client tools and private directories.

pub(crate) mod backup;
pub(crate) mod connect;
pub(crate) mod driver;
pub mod interrupt;
pub mod lock;
pub(crate) mod pg_tools;
pub(crate) mod pooling;
pub(crate) mod private_dir;
pub(crate) mod tls;
pub(crate) mod trusted_sql;
pub(crate) mod watch;
