//! The counts the threads keep up to date while they run ([`Progress`]), shared behind a
//! lock and a condition variable so that a test can wait for them without sleeping.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

use crate::WriteKind;

/// Counts so far, for waiting until the application has done enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Committed writes by kind (every kind present).
    pub committed: BTreeMap<WriteKind, u64>,
    /// Of the committed writes, those made in the new shape.
    pub committed_in_new_shape: u64,
    /// Writes the server rejected or that are in doubt.
    pub failed: u64,
    /// Reads that returned a result.
    pub reads: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            committed: WriteKind::ALL.into_iter().map(|kind| (kind, 0)).collect(),
            committed_in_new_shape: 0,
            failed: 0,
            reads: 0,
        }
    }
}

impl Progress {
    /// Committed writes of every kind together.
    pub fn committed_total(&self) -> u64 {
        self.committed.values().sum()
    }

    /// The fewest committed writes of any one kind.
    pub fn committed_least(&self) -> u64 {
        self.committed.values().copied().min().unwrap_or(0)
    }
}

/// [`Progress`] as the threads share it: `changed` wakes whoever waits on `counts`.
#[derive(Default)]
pub(crate) struct SharedProgress {
    pub(crate) counts: Mutex<Progress>,
    pub(crate) changed: Condvar,
}

impl SharedProgress {
    pub(crate) fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.counts.lock().expect("progress lock"));
        self.changed.notify_all();
    }
}
