//! PostgreSQL's table lock modes and their conflict table: what a statement takes,
//! what a stage declares, and what each blocks.

use std::fmt;

use serde::Serialize;

/// PostgreSQL's table lock modes, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
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
}
