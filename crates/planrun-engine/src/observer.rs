//! What a run tells whoever watches it (the CLI's stage lines and progress bars, the
//! rehearsal's lock trace): the seam through which the engine reports while it works.

use planrun_plan::Stage;
use planrun_transform::{NoProgress, Progress};

use planrun_report::LockRetry;
use planrun_report::StageReport;

/// Hears about a run while it happens (the CLI prints stage lines and progress bars).
pub trait Observer {
    fn stage_started(&self, _stage: &Stage) {}
    fn stage_finished(&self, _report: &StageReport) {}
    /// A statement of a SQL step ran for `_elapsed` and succeeded; the next one has not
    /// started (the rehearsal's lock trace reads the locks it took).
    fn statement_finished(&self, _statement: &str, _elapsed: std::time::Duration) {}
    fn backup_taken(&self, _file: &std::path::Path) {}
    /// Something the user should know that does not stop the run.
    fn warning(&self, _text: &str) {}
    /// What the run is doing now, when it is not obvious (waiting, catching up).
    fn note(&self, _text: &str) {}
    /// A lock attempt of `stage` timed out; it is tried again after `retry.retry_in_ms`.
    fn lock_retry(&self, _stage: &str, _retry: &LockRetry) {}
    fn progress(&self) -> &dyn Progress {
        &NoProgress
    }
}

/// An observer that hears nothing.
pub struct Silent;
impl Observer for Silent {}
