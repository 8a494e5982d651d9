//! What a table lock blocks of the application, from its mode as planrun or
//! `pg_locks` names it (`ACCESS EXCLUSIVE`, `AccessExclusiveLock`): the three colours
//! of the timeline.

/// What a lock held stops the application from doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocks {
    /// ACCESS EXCLUSIVE: every read and write of the table waits.
    ReadsAndWrites,
    /// SHARE, SHARE ROW EXCLUSIVE, EXCLUSIVE: writes wait, reads go on.
    Writes,
    /// The weaker modes: the application's reads and writes go on.
    Nothing,
}

impl Blocks {
    pub(crate) fn of_mode(mode: &str) -> Blocks {
        let name: String = mode
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .collect::<String>()
            .to_ascii_lowercase();
        let name = name.strip_suffix("lock").unwrap_or(&name);
        match name {
            "accessexclusive" => Blocks::ReadsAndWrites,
            "exclusive" | "sharerowexclusive" | "share" => Blocks::Writes,
            _ => Blocks::Nothing,
        }
    }

    /// The CSS class, colour and legend words of what it blocks.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Blocks::ReadsAndWrites => "blocks-all",
            Blocks::Writes => "blocks-writes",
            Blocks::Nothing => "blocks-none",
        }
    }

    pub(crate) fn colour(self) -> &'static str {
        match self {
            Blocks::ReadsAndWrites => "#d62728",
            Blocks::Writes => "#ff9f1c",
            Blocks::Nothing => "#2ca02c",
        }
    }

    pub(crate) fn words(self) -> &'static str {
        match self {
            Blocks::ReadsAndWrites => "blocks reads and writes",
            Blocks::Writes => "blocks writes",
            Blocks::Nothing => "blocks neither",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_a_mode_block_the_same() {
        assert_eq!(Blocks::of_mode("ACCESS EXCLUSIVE"), Blocks::ReadsAndWrites);
        assert_eq!(
            Blocks::of_mode("AccessExclusiveLock"),
            Blocks::ReadsAndWrites
        );
        assert_eq!(Blocks::of_mode("ExclusiveLock"), Blocks::Writes);
        assert_eq!(Blocks::of_mode("SHARE"), Blocks::Writes);
        assert_eq!(Blocks::of_mode("ShareUpdateExclusiveLock"), Blocks::Nothing);
        assert_eq!(Blocks::of_mode("ROW EXCLUSIVE"), Blocks::Nothing);
        assert_eq!(Blocks::of_mode("not sampled"), Blocks::Nothing);
    }
}
