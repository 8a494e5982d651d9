//! Live output while a plan runs: a line per stage on stderr and, on a terminal, a
//! progress bar (rows, rate, ETA) for long transforms, then a spinner naming the
//! phase once the rows are done ("rebuilding keys and indexes", "running 12 checks",
//! "committing"), so that a bar at 100% never looks stuck. Nothing of it with
//! `--format json` or when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};
use planrun_engine::{LockRetry, Observer, StageReport};
use planrun_plan::Stage;
use planrun_transform::Progress;

use crate::output::{count, rate};

pub(crate) struct Live {
    enabled: bool,
    bars: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Live {
    /// Live output on stderr when `enabled` (text format); bars only on a terminal.
    pub(crate) fn new(enabled: bool) -> Live {
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

    /// Shows `bar` in place of the one shown, if any.
    fn show(&self, bar: ProgressBar) {
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn clear(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// Rows done and to do, and the rate, as counts are printed everywhere: `12,345`.
fn rows_style(total: Option<u64>) -> ProgressStyle {
    let template = match total {
        Some(_) => "   {bar:30} {done}/{total} rows  {rate}  {left}",
        None => "   {spinner} {done} rows  {rate}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "done",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&count(state.pos()));
            },
        )
        .with_key(
            "total",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&state.len().map(count).unwrap_or_default());
            },
        )
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{} rows/s", rate(state.per_sec()));
            },
        )
        // No estimate before the first rows are done: not "ETA 0s".
        .with_key(
            "left",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                if state.pos() > 0 && state.per_sec() > 0.0 {
                    let _ = write!(w, "ETA {}", HumanDuration(state.eta()));
                }
            },
        )
}

/// A phase of the stage that has no rows to count.
fn phase_style() -> ProgressStyle {
    ProgressStyle::with_template("   {spinner} {msg}  {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
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
        self.clear();
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
        self.clear();
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
        bar.set_style(rows_style(total));
        self.show(bar);
    }

    fn advance(&self, done: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(done);
            }
        }
    }

    fn phase(&self, what: &str) {
        if !self.bars {
            return;
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(phase_style());
        spinner.set_message(what.to_owned());
        self.show(spinner);
    }

    fn finish(&self) {
        self.clear();
    }
}
