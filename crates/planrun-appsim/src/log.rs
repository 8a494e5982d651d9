//! What the simulated application did ([`AppLog`]): counts per kind of write, reads,
//! waits, first errors, and the state each chapter's last committed write left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::expectation::{Expectation, Fate};
use crate::reader::ReaderLog;
use crate::writer::WriterLog;
use crate::{LegacyState, WriteKind};

/// What the simulated application did, and what it expects the database to hold.
#[derive(Debug, Clone, PartialEq)]
pub struct AppLog {
    /// Committed writes by kind (every kind present).
    pub committed: BTreeMap<WriteKind, u64>,
    /// Writes the server rejected, by kind (every kind present): the application saw an
    /// error, nothing committed.
    pub failed: BTreeMap<WriteKind, u64>,
    /// Of the committed writes, those made in the new shape (`chapter_sections`), by
    /// an application that follows the shape ([`AppConfig::follow_shape`](crate::AppConfig)).
    pub committed_in_new_shape: u64,
    /// Writes whose connection broke before their result arrived: they may or may not
    /// have committed.
    pub in_doubt: u64,
    /// Updates and deletes that found no row (the chapter was gone): no change.
    pub without_effect: u64,
    /// Reads that returned a result.
    pub reads: u64,
    /// Reads that returned an error.
    pub failed_reads: u64,
    /// The longest time from sending a read to its result.
    pub longest_read_wait: Duration,
    /// The longest time from sending a write to its result, committed or not.
    pub longest_write_wait: Duration,
    /// The first few errors any thread saw, prefixed with the thread's name.
    pub first_errors: Vec<String>,
    /// What each chapter a committed write touched may hold now, for
    /// [`lost_writes`](AppLog::lost_writes).
    pub(crate) chapters: BTreeMap<i64, Expectation>,
}

impl Default for AppLog {
    fn default() -> Self {
        let zero = || WriteKind::ALL.into_iter().map(|kind| (kind, 0)).collect();
        AppLog {
            committed: zero(),
            failed: zero(),
            committed_in_new_shape: 0,
            in_doubt: 0,
            without_effect: 0,
            reads: 0,
            failed_reads: 0,
            longest_read_wait: Duration::ZERO,
            longest_write_wait: Duration::ZERO,
            first_errors: Vec::new(),
            chapters: BTreeMap::new(),
        }
    }
}

impl AppLog {
    /// Committed writes of every kind together.
    pub fn committed_total(&self) -> u64 {
        self.committed.values().sum()
    }

    /// Failed writes of every kind together (not counting those in doubt).
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// For every chapter a committed write in the legacy shape touched last, the state
    /// it left: `None` when that write deleted it.
    pub fn expected_chapters(&self) -> BTreeMap<i64, Option<LegacyState>> {
        self.chapters
            .iter()
            .filter_map(|(id, expectation)| match expectation.committed.as_ref()? {
                Fate::Sections(_) => None,
                fate => Some((*id, fate.as_present().cloned())),
            })
            .collect()
    }

    /// Every chapter a write of this application committed to, or may have.
    pub fn written_chapters(&self) -> BTreeSet<i64> {
        self.chapters.keys().copied().collect()
    }

    /// This log, then `later`'s, as one application's: a chapter's expected state is
    /// what the last of them to write it left. For an application restarted between
    /// two steps, so that each step can be checked with the writers stopped.
    pub fn followed_by(mut self, later: AppLog) -> AppLog {
        let chapters = std::mem::take(&mut self.chapters);
        let mut merged = AppLog::default();
        merged.absorb(self);
        merged.absorb(later.clone());
        merged.chapters = chapters;
        merged.chapters.extend(later.chapters);
        merged
    }

    /// One line: writes committed and failed per kind, reads, longest waits in ms.
    pub fn summary(&self) -> String {
        let per_kind = |counts: &BTreeMap<WriteKind, u64>| {
            counts
                .iter()
                .map(|(kind, count)| format!("{} {count}", kind.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "writes committed: {} ({} in the new shape); failed: {}; in doubt {}, \
             without effect {}; reads {} ({} failed); longest read wait {} ms, \
             longest write wait {} ms",
            per_kind(&self.committed),
            self.committed_in_new_shape,
            per_kind(&self.failed),
            self.in_doubt,
            self.without_effect,
            self.reads,
            self.failed_reads,
            self.longest_read_wait.as_millis(),
            self.longest_write_wait.as_millis(),
        )
    }

    pub(crate) fn absorb_writer(&mut self, writer: WriterLog) {
        for (kind, count) in writer.committed {
            *self.committed.entry(kind).or_default() += count;
        }
        for (kind, count) in writer.failed {
            *self.failed.entry(kind).or_default() += count;
        }
        self.committed_in_new_shape += writer.committed_in_new_shape;
        self.in_doubt += writer.in_doubt;
        self.without_effect += writer.without_effect;
        self.longest_write_wait = self.longest_write_wait.max(writer.longest_wait);
        self.first_errors.extend(writer.first_errors);
        self.chapters.extend(writer.chapters);
    }

    pub(crate) fn absorb_reader(&mut self, reader: ReaderLog) {
        self.reads += reader.reads;
        self.failed_reads += reader.failed;
        self.longest_read_wait = self.longest_read_wait.max(reader.longest_wait);
        self.first_errors.extend(reader.first_errors);
    }

    fn absorb(&mut self, other: AppLog) {
        for (kind, count) in other.committed {
            *self.committed.entry(kind).or_default() += count;
        }
        for (kind, count) in other.failed {
            *self.failed.entry(kind).or_default() += count;
        }
        self.committed_in_new_shape += other.committed_in_new_shape;
        self.in_doubt += other.in_doubt;
        self.without_effect += other.without_effect;
        self.reads += other.reads;
        self.failed_reads += other.failed_reads;
        self.longest_read_wait = self.longest_read_wait.max(other.longest_read_wait);
        self.longest_write_wait = self.longest_write_wait.max(other.longest_write_wait);
        self.first_errors.extend(other.first_errors);
    }
}
