//! Live output while a plan runs: a line per stage on stderr and, on a terminal, a
//! progress bar (rows, rate, ETA) for long transforms. Nothing of it with
//! `--format json` or when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use planrun_engine::{LockRetry, Observer, StageReport};
use planrun_plan::Stage;
use planrun_transform::Progress;

pub struct Live {
    enabled: bool,
    bars: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Live {
    /// Live output on stderr when `enabled` (text format); bars only on a terminal.
    pub fn new(enabled: bool) -> Live {
        Live {
            enabled,
            bars: enabled && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

impl Live {
    /// Runs `print` with the progress bar, if any, out of the way.
    fn suspend(&self, print: impl FnOnce()) {
        match self.bar.lock().ok().as_ref().and_then(|bar| bar.as_ref()) {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Observer for Live {
    fn stage_started(&self, stage: &Stage) {
        if self.enabled {
            match &stage.title {
                Some(title) if *title != stage.id => say_err!("-> {} ({title})", stage.id),
                _ => say_err!("-> {}", stage.id),
            }
        }
    }

    fn stage_finished(&self, report: &StageReport) {
        if self.enabled {
            say_err!("   {}: {}", report.id, report.status.label());
        }
    }

    fn lock_retry(&self, stage: &str, retry: &LockRetry) {
        if self.enabled {
            self.suspend(|| say_err!("   {stage}: {}", crate::report::lock_retry_line(retry)));
        }
    }

    fn backup_taken(&self, file: &std::path::Path) {
        if self.enabled {
            say_err!("   backup written to {}", file.display());
        }
    }

    fn note(&self, text: &str) {
        if self.enabled {
            self.suspend(|| say_err!("   {text}"));
        }
    }

    fn warning(&self, text: &str) {
        // Always shown, even with --format json: it is about the ledger.
        self.suspend(|| say_err!("   warning: {text}"));
    }

    fn progress(&self) -> &dyn Progress {
        self
    }
}

impl Progress for Live {
    fn start(&self, total: Option<u64>) {
        if !self.bars {
            return;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "   {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, done: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(done);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}
