//! The observer the apply on the copy runs under: it passes every event on to the
//! caller's, drives the lock trace, and reads the copy's server log for the lock waits
//! of each stage.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use planrun_plan::Stage;
use planrun_transform::Progress;

use crate::db::connect::Target;
use crate::error::EngineError;
use crate::observer::Observer;
use crate::rehearse::lock_trace::{LockTrace, StageTrace};
use planrun_report::StageReport;

/// The server log line PostgreSQL writes (with `log_lock_waits = on`) when a session
/// has waited `deadlock_timeout` for a lock.
const LOCK_WAIT_MARK: &str = "still waiting for";

/// Lock-wait lines kept per stage in the report, so it names what waited on what.
const LOCK_WAIT_SAMPLES: usize = 5;

/// What the copy's server logged as lock waits during one stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockWaits {
    pub(crate) count: u64,
    pub(crate) samples: Vec<String>,
}

/// Per stage, what the watch saw while the plan ran on the copy.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub(crate) waits: BTreeMap<String, LockWaits>,
    pub(crate) traces: BTreeMap<String, StageTrace>,
}

#[derive(Default)]
struct WatchState {
    /// Log length when the running stage started.
    offset: Option<u64>,
    waits: BTreeMap<String, LockWaits>,
}

/// Passes everything on to the caller's observer, and reads the copy's server log
/// between each stage's start and finish.
pub(crate) struct LockWaitWatch<'o> {
    inner: &'o dyn Observer,
    log: PathBuf,
    state: Mutex<WatchState>,
    trace: LockTrace,
}

impl<'o> LockWaitWatch<'o> {
    /// Watches the copy whose server writes `log`, tracing its locks as `admin` (the
    /// copy's superuser, so it sees every session's statements), for `inner`.
    pub(crate) fn start(
        inner: &'o dyn Observer,
        log: &Path,
        admin: &Target,
    ) -> Result<LockWaitWatch<'o>, EngineError> {
        Ok(LockWaitWatch {
            inner,
            log: log.to_path_buf(),
            state: Mutex::new(WatchState::default()),
            trace: LockTrace::start(admin)?,
        })
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Lock-wait lines written to the log since `offset`.
    fn waits_since(&self, offset: u64) -> LockWaits {
        let mut text = String::new();
        let read = std::fs::File::open(&self.log).and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            text = String::from_utf8_lossy(&bytes).into_owned();
            Ok(())
        });
        let mut waits = LockWaits::default();
        if read.is_err() {
            return waits;
        }
        for line in text.lines().filter(|line| line.contains(LOCK_WAIT_MARK)) {
            waits.count += 1;
            if waits.samples.len() < LOCK_WAIT_SAMPLES {
                waits.samples.push(line.trim().to_owned());
            }
        }
        waits
    }

    /// Stops the trace; the lock waits the log showed, and the locks the trace saw,
    /// per stage.
    pub(crate) fn finish(self) -> Observed {
        let waits = self
            .state
            .into_inner()
            .map(|state| state.waits)
            .unwrap_or_default();
        Observed {
            waits,
            traces: self.trace.finish(),
        }
    }
}

impl Observer for LockWaitWatch<'_> {
    fn stage_started(&self, stage: &Stage) {
        self.trace.stage_started(&stage.id);
        let offset = self.log_len();
        if let Ok(mut state) = self.state.lock() {
            state.offset = Some(offset);
        }
        self.inner.stage_started(stage);
    }

    fn statement_finished(&self, statement: &str, elapsed: Duration) {
        self.trace.statement_finished(statement, elapsed);
        self.inner.statement_finished(statement, elapsed);
    }

    fn stage_finished(&self, report: &StageReport) {
        self.trace.stage_finished(&report.id);
        let offset = self
            .state
            .lock()
            .ok()
            .and_then(|mut state| state.offset.take());
        if let Some(offset) = offset {
            let waits = self.waits_since(offset);
            if let Ok(mut state) = self.state.lock() {
                state.waits.insert(report.id.clone(), waits);
            }
        }
        self.inner.stage_finished(report);
    }

    fn backup_taken(&self, file: &Path) {
        self.inner.backup_taken(file);
    }

    fn progress(&self) -> &dyn Progress {
        self.inner.progress()
    }
}
