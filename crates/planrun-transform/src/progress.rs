//! Progress reporting from a running transform to whoever displays it (a progress
//! bar on a terminal, nothing otherwise).

/// Receives a transform's progress; implementations must be cheap to call per batch.
pub trait Progress {
    /// The work ahead, when known (e.g. the number of rows to read).
    fn start(&self, total: Option<u64>);
    /// `done` more units are finished.
    fn advance(&self, done: u64);
    /// What the work is doing now that is not counted in rows, in a few words
    /// ("rebuilding keys and indexes", "running 12 checks", "committing"): once the
    /// rows are done, so that a display at 100% can say what it is waiting for. The
    /// phase lasts until the next phase or [`Progress::finish`].
    fn phase(&self, _what: &str) {}
    fn finish(&self);
}

/// Discards progress: for tests, JSON output and non-terminals.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: Option<u64>) {}
    fn advance(&self, _done: u64) {}
    fn finish(&self) {}
}
