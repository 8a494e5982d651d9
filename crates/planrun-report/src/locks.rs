//! Locks in a report: the locks a stage held, the attempts that timed out and were
//! retried, the sessions that blocked planrun's, and who holds a plan's lock.

use std::fmt;

use serde::Serialize;

/// A lock the stage holds, for the report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HeldLock {
    /// As the server resolved it, e.g. `chapters` or `app."Orders"`.
    pub table: String,
    pub mode: String,
    /// `stage`, or the transforms that declared it.
    pub declared_by: String,
    /// How many attempts it took to get every declared lock.
    pub attempts: u32,
    /// From the first attempt until the locks were held.
    pub waited_ms: u64,
}

/// A lock attempt that failed and will be retried.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LockRetry {
    /// What waited: `locks` (the declared ones) or a step's name.
    pub waiting: String,
    /// The attempt that failed, 1-based, and how many there are in all.
    pub attempt: u32,
    pub attempts: u32,
    /// PostgreSQL's message: lock timeout or deadlock.
    pub reason: String,
    pub blocked_by: Vec<Blocker>,
    pub retry_in_ms: u64,
}

/// A session that blocked planrun's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub user: String,
    pub state: String,
    /// Since when its transaction is open (RFC 3339), `-` when none is.
    pub since: String,
    /// Its current or last statement, shortened.
    pub query: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application_name '{}', user {}, {}, transaction open since {}): {}",
            self.pid, self.application_name, self.user, self.state, self.since, self.query
        )
    }
}

/// Who holds a plan's lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub since: String,
    pub client: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by pid {}, application_name '{}', client {}, since {}",
            self.pid, self.application_name, self.client, self.since
        )
    }
}
