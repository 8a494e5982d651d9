//! Table locks: the mode a stage needs on each table it reads to transform, and the
//! schedule on which the engine retries taking them when the application holds a
//! conflicting lock. Both are plain data here, so `planrun check` can show them
//! offline; the engine takes the locks.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::model::Span;

/// PostgreSQL's table lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    /// The mode as `LOCK TABLE ... IN <mode> MODE` and the documentation spell it.
    pub fn sql(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Reads `"exclusive"`, `"access exclusive"`, `"ACCESS_EXCLUSIVE"`, `"AccessExclusiveLock"`
    /// (as `pg_locks` spells it), in any case.
    pub fn parse(text: &str) -> Option<LockMode> {
        let mut words = String::new();
        let mut after_lowercase = false;
        for c in text.trim().trim_end_matches("Lock").chars() {
            if c.is_uppercase() && after_lowercase {
                words.push(' ');
            }
            after_lowercase = c.is_lowercase();
            words.push(if c == '_' { ' ' } else { c });
        }
        let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
        LockMode::ALL
            .into_iter()
            .find(|mode| mode.sql().eq_ignore_ascii_case(&words))
    }

    /// The modes this one conflicts with, as a bit set over [`LockMode::ALL`]
    /// (PostgreSQL's "Conflicting Lock Modes" table).
    fn conflicts(self) -> u8 {
        use LockMode::*;
        let list: &[LockMode] = match self {
            AccessShare => &[AccessExclusive],
            RowShare => &[Exclusive, AccessExclusive],
            RowExclusive => &[Share, ShareRowExclusive, Exclusive, AccessExclusive],
            ShareUpdateExclusive => &[
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Share => &[
                RowExclusive,
                ShareUpdateExclusive,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            ShareRowExclusive => &[
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            Exclusive => &[
                RowShare,
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
            AccessExclusive => &LockMode::ALL,
        };
        list.iter().fold(0, |set, mode| set | 1 << *mode as u8)
    }

    /// Whether a session holding this mode makes `other` wait.
    pub fn conflicts_with(self, other: LockMode) -> bool {
        self.conflicts() & (1 << other as u8) != 0
    }

    /// Whether it stops plain `SELECT`s (which take ACCESS SHARE).
    pub fn blocks_reads(self) -> bool {
        self.conflicts_with(LockMode::AccessShare)
    }

    /// Whether it stops `INSERT`, `UPDATE` and `DELETE` (which take ROW EXCLUSIVE).
    pub fn blocks_writes(self) -> bool {
        self.conflicts_with(LockMode::RowExclusive)
    }

    /// The weakest mode that conflicts with everything either of the two does: what a
    /// stage must take when two declarations name the same table.
    pub fn combine(self, other: LockMode) -> LockMode {
        let needed = self.conflicts() | other.conflicts();
        LockMode::ALL
            .into_iter()
            .find(|mode| mode.conflicts() & needed == needed)
            .unwrap_or(LockMode::AccessExclusive)
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

/// A lock on one table that a stage needs from its start to its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    fn modes_read_as_written_in_plans_sql_and_pg_locks() {
        assert_eq!(LockMode::parse("exclusive"), Some(LockMode::Exclusive));
        assert_eq!(
            LockMode::parse("access exclusive"),
            Some(LockMode::AccessExclusive)
        );
        assert_eq!(
            LockMode::parse("SHARE_ROW_EXCLUSIVE"),
            Some(LockMode::ShareRowExclusive)
        );
        assert_eq!(
            LockMode::parse("RowExclusiveLock"),
            Some(LockMode::RowExclusive)
        );
        assert_eq!(LockMode::parse("exclusiv"), None);
    }

    #[test]
    fn the_conflict_table_is_postgresqls() {
        use LockMode::*;
        assert!(!Exclusive.blocks_reads());
        assert!(Exclusive.blocks_writes());
        assert!(AccessExclusive.blocks_reads());
        assert!(!ShareUpdateExclusive.blocks_writes());
        assert!(Share.blocks_writes());
        // The table is symmetric.
        for a in LockMode::ALL {
            for b in LockMode::ALL {
                assert_eq!(a.conflicts_with(b), b.conflicts_with(a), "{a} / {b}");
            }
        }
    }

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
