//! Table locks: the mode a stage needs on each table it reads to transform, and the
//! schedule on which the engine retries taking them when the application holds a
//! conflicting lock. Both are plain data here, so `planrun check` can show them
//! offline; the engine takes the locks.

use std::time::Duration;

pub use planrun_sql::LockMode;
use schemars::JsonSchema;
use serde::Serialize;

use crate::model::Span;

/// A lock on one table that a stage needs from its start to its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TableLock {
    /// As written: `chapters` or `public.chapters`; the server resolves it.
    pub table: String,
    pub mode: LockMode,
    /// Who asked for it: `stage` or the transform's name.
    pub declared_by: String,
    #[serde(skip)]
    pub span: Option<Span>,
}

impl TableLock {
    pub fn new(table: &str, mode: LockMode, declared_by: &str) -> TableLock {
        TableLock {
            table: table.to_owned(),
            mode,
            declared_by: declared_by.to_owned(),
            span: None,
        }
    }
}

/// Merges declarations naming the same table (spelled the same way) into one lock of
/// the combined mode, keeping the order of first mention.
pub fn merge_locks(locks: impl IntoIterator<Item = TableLock>) -> Vec<TableLock> {
    let mut merged: Vec<TableLock> = Vec::new();
    for lock in locks {
        match merged.iter_mut().find(|held| held.table == lock.table) {
            Some(held) => {
                held.mode = held.mode.combine(lock.mode);
                if !held
                    .declared_by
                    .split(", ")
                    .any(|by| by == lock.declared_by)
                {
                    held.declared_by = format!("{}, {}", held.declared_by, lock.declared_by);
                }
            }
            None => merged.push(lock),
        }
    }
    merged
}

/// How often to try for a lock that `lock_timeout` cut short, and how long to wait in
/// between: `delay`, doubling after every attempt, at most `max_delay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRetries {
    /// Attempts in all, the first included; 1 means no retry.
    pub attempts: u32,
    #[serde(serialize_with = "as_millis")]
    pub delay: Duration,
    #[serde(serialize_with = "as_millis")]
    pub max_delay: Duration,
}

impl Default for LockRetries {
    /// Five attempts, 1 s apart at first, then 2 s, 4 s, 8 s: about 15 s of waiting
    /// plus five `lock_timeout`s before a stage gives up.
    fn default() -> Self {
        LockRetries {
            attempts: 5,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl LockRetries {
    /// The pause after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.delay.saturating_mul(factor).min(self.max_delay)
    }
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_declarations_of_one_table_combine_to_a_mode_covering_both() {
        use LockMode::*;
        assert_eq!(RowExclusive.combine(Share), ShareRowExclusive);
        assert_eq!(Exclusive.combine(AccessShare), Exclusive);
        assert_eq!(AccessShare.combine(AccessShare), AccessShare);
        assert_eq!(Exclusive.combine(AccessExclusive), AccessExclusive);
        let merged = merge_locks([
            TableLock::new("chapters", RowExclusive, "stage"),
            TableLock::new("chapter_sections", Exclusive, "stage"),
            TableLock::new("chapters", Share, "memoir.split_chapters"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].mode, ShareRowExclusive);
        assert_eq!(merged[0].declared_by, "stage, memoir.split_chapters");
    }

    #[test]
    fn the_retry_delay_doubles_up_to_its_cap() {
        let retries = LockRetries {
            attempts: 6,
            delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
        };
        let delays: Vec<u128> = (1..=5)
            .map(|attempt| retries.delay_after(attempt).as_millis())
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
    }
}

/// `lock_budget = { strongest = "share row exclusive", blocks_reads = "1s",
/// blocks_writes = "10s" }` on the plan or a stage (the stage's replaces the plan's):
/// the strongest lock a stage may take on a table the application uses, and the
/// longest a lock that blocks its reads, or its writes, may be held. `planrun
/// rehearse` measures the stage on a copy and fails it when the estimate on the
/// target is over budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockBudget {
    pub strongest: Option<LockMode>,
    pub blocks_reads: Option<crate::PgDuration>,
    pub blocks_writes: Option<crate::PgDuration>,
}
