//! Human rendering of run and status reports: a table per run, then the checks and
//! failures that matter, then what committed and the next command. `--format json`
//! prints the same models with serde instead.

use std::fmt::Write as _;

use planrun_engine::{
    CheckResult, CheckStatus, LockRetry, RunReport, SqlDiff, StageReport, StageStatus, StatusReport,
};

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_owned()
        }
    }
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn bad(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

fn status_text(style: Style, status: StageStatus) -> String {
    let label = status.label();
    match status {
        StageStatus::Applied | StageStatus::Verified | StageStatus::WouldRun => style.good(label),
        StageStatus::Failed | StageStatus::Blocked | StageStatus::Drifted => style.bad(label),
        StageStatus::NotRun
        | StageStatus::NotSelected
        | StageStatus::Waiting
        | StageStatus::Superseded => style.dim(label),
        _ => label.to_owned(),
    }
}

/// The width of a column holding `cells` under `header`, in characters.
fn width<'a>(cells: impl Iterator<Item = &'a str>, header: &str) -> usize {
    cells
        .map(|cell| cell.chars().count())
        .chain([header.len()])
        .max()
        .unwrap_or(0)
}

fn pad(text: &str, visible: usize, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(visible)))
}

fn check_line(style: Style, kind: &str, check: &CheckResult) -> String {
    let mark = match check.status {
        CheckStatus::Passed => style.good("ok  "),
        CheckStatus::Failed => style.bad("FAIL"),
        CheckStatus::EvaluatedAfter => {
            return style.dim(&format!(
                "      --   {kind} {}: evaluated after {}",
                check.name,
                check.evaluated_after.join(", ")
            ));
        }
        CheckStatus::Superseded => {
            let by: Vec<String> = check
                .superseded_by
                .iter()
                .map(|by| format!("{} (which changed {})", by.stage, by.relations.join(", ")))
                .collect();
            return style.dim(&format!(
                "      --   {kind} {}: superseded by {}",
                check.name,
                by.join("; ")
            ));
        }
    };
    let mut line = format!(
        "      {mark} {kind} {}: expected {}, got {}",
        check.name, check.expected, check.actual
    );
    if let Some(problem) = &check.problem {
        let _ = write!(line, " ({problem})");
    }
    if let Some(message) = &check.message {
        let _ = write!(line, "\n           {message}");
    }
    line
}

fn duration(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// The whole report as text.
pub fn render_run(report: &RunReport, style: Style) -> String {
    let mut out = String::new();
    let mut title = format!(
        "planrun {} {} -> {}",
        report.command, report.plan, report.target
    );
    if report.dry_run {
        title.push_str(" (dry run: everything rolled back)");
    }
    if let Some(run) = report.run_id {
        let _ = write!(title, " [run {run}]");
    }
    let _ = writeln!(out, "{}", style.bold(&title));
    if let Some(file) = &report.backup_file {
        let _ = writeln!(out, "backup: {file}");
    }
    out.push('\n');
    let id_width = width(report.stages.iter().map(|s| s.id.as_str()), "stage");
    let status_width = width(report.stages.iter().map(|s| s.status.label()), "status");
    let _ = writeln!(
        out,
        "  #  {}  {}  {:>9}  {:>9}  notes",
        pad("stage", 5, id_width),
        pad("status", 6, status_width),
        "time",
        "rows"
    );
    for (position, stage) in report.stages.iter().enumerate() {
        let mut notes = Vec::new();
        // A stage left out for being optional says so in its note already.
        let says_optional = stage
            .note
            .as_deref()
            .is_some_and(|note| note.starts_with("optional"));
        if stage.optional && !says_optional {
            notes.push("optional".to_owned());
        }
        if !stage.transaction {
            notes.push("ran outside a transaction".to_owned());
        }
        if stage.rows_quarantined > 0 {
            notes.push(format!("{} quarantined", stage.rows_quarantined));
        }
        if let Some(note) = &stage.note {
            notes.push(note.clone());
        }
        let ran = matches!(
            stage.status,
            StageStatus::Applied | StageStatus::Failed | StageStatus::Skipped
        );
        let _ = writeln!(
            out,
            "{:>3}  {}  {}  {:>9}  {:>9}  {}",
            position + 1,
            pad(&stage.id, stage.id.len(), id_width),
            pad(
                &status_text(style, stage.status),
                stage.status.label().len(),
                status_width
            ),
            if ran {
                duration(stage.duration_ms)
            } else {
                String::new()
            },
            if ran {
                stage.rows_affected.to_string()
            } else {
                String::new()
            },
            notes.join("; ")
        );
        render_details(
            &mut out,
            stage,
            style,
            report.command == "apply" || report.command == "verify",
        );
    }
    out.push('\n');
    for line in &report.history {
        let _ = writeln!(out, "{} {line}", style.bad("history:"));
    }
    for line in &report.summary {
        let _ = writeln!(out, "{line}");
    }
    if !report.lock_impact.is_empty() {
        out.push('\n');
        out.push_str(&crate::lock_report::render_lock_weight(&report.lock_impact));
    }
    if let Some(estimate) = &report.lock_budget {
        out.push('\n');
        out.push_str(&crate::lock_report::render_budget_estimate(estimate));
    }
    out
}

fn render_details(out: &mut String, stage: &StageReport, style: Style, show_passing: bool) {
    let interesting = matches!(
        stage.status,
        StageStatus::Failed
            | StageStatus::Blocked
            | StageStatus::Drifted
            | StageStatus::DriftAccepted
    );
    for check in &stage.preconditions {
        if check.failed() || interesting || !show_passing {
            let _ = writeln!(out, "{}", check_line(style, "precondition", check));
        }
    }
    if show_passing || interesting {
        for check in &stage.verifications {
            let _ = writeln!(out, "{}", check_line(style, "verify", check));
        }
    }
    for (name, value) in &stage.computed {
        let _ = writeln!(out, "      {name} = {}", value.as_deref().unwrap_or("null"));
    }
    if !stage.locks.is_empty() {
        let locks: Vec<String> = stage
            .locks
            .iter()
            .map(|lock| format!("{} {}", lock.mode, lock.table))
            .collect();
        let attempts = stage.locks[0].attempts;
        let mut line = format!("      locks: {}", locks.join(", "));
        if attempts > 1 {
            let _ = write!(
                line,
                " (after {attempts} attempts, {})",
                duration(stage.locks[0].waited_ms)
            );
        }
        let _ = writeln!(out, "{}", style.dim(&line));
    }
    for retry in &stage.lock_retries {
        let _ = writeln!(out, "      {}", lock_retry_line(retry));
    }
    for line in &stage.drift {
        let _ = writeln!(out, "      {} {line}", style.bad("drift"));
    }
    for diff in &stage.drift_diff {
        render_sql_diff(out, diff, style);
    }
    for step in &stage.steps {
        if step.rows_read.is_some() || !step.notes.is_empty() {
            let mut line = format!(
                "      step {}: {} rows written",
                step.name, step.rows_affected
            );
            if let Some(read) = step.rows_read {
                let _ = write!(line, ", {read} read");
            }
            if let Some(quarantined) = step.rows_quarantined.filter(|q| *q > 0) {
                let _ = write!(line, ", {quarantined} quarantined");
            }
            for note in &step.notes {
                let _ = write!(line, "; {note}");
            }
            let _ = writeln!(out, "{}", style.dim(&line));
        }
    }
    if let Some(error) = &stage.error {
        let mut place = String::new();
        if let Some(step) = &error.step {
            let _ = write!(place, "step {step}");
        }
        if let Some(file) = &error.file {
            let _ = write!(place, " in {file}");
        }
        if let (Some(line), Some(column)) = (error.line, error.column) {
            let _ = write!(place, " at line {line}, column {column}");
        }
        let code = error
            .sqlstate
            .as_deref()
            .map(|c| format!(" [SQLSTATE {c}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "      {} {}{code}: {}",
            style.bad("error"),
            place.trim(),
            error.message
        );
        if let Some(statement) = &error.statement {
            let _ = writeln!(out, "        at: {statement}");
        }
        if let Some(detail) = &error.detail {
            let _ = writeln!(out, "        detail: {detail}");
        }
        if let Some(hint) = &error.hint {
            let _ = writeln!(out, "        hint: {hint}");
        }
    }
}

/// One failed lock attempt: what waited, why, who held the lock, when it tries again.
pub fn lock_retry_line(retry: &LockRetry) -> String {
    let mut line = format!(
        "lock attempt {}/{} for {} failed: {}",
        retry.attempt, retry.attempts, retry.waiting, retry.reason
    );
    if !retry.blocked_by.is_empty() {
        let blockers: Vec<String> = retry.blocked_by.iter().map(ToString::to_string).collect();
        let _ = write!(line, "; blocked by {}", blockers.join("; "));
    }
    let _ = write!(line, "; retrying in {}", duration(retry.retry_in_ms));
    line
}

fn render_sql_diff(out: &mut String, diff: &SqlDiff, style: Style) {
    let _ = writeln!(
        out,
        "      {} {} (- as applied, + in the plan now)",
        style.bad("diff"),
        diff.entry
    );
    for line in &diff.lines {
        let painted = match line.chars().next() {
            Some('-') => style.bad(line),
            Some('+') => style.good(line),
            Some('@') => style.dim(line),
            _ => line.clone(),
        };
        let _ = writeln!(out, "        {painted}");
    }
    if diff.more_lines > 0 {
        let _ = writeln!(
            out,
            "        {}",
            style.dim(&format!("... {} more lines", diff.more_lines))
        );
    }
}

pub fn render_status(report: &StatusReport, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.bold(&format!(
            "planrun status {} -> {}",
            report.plan, report.target
        ))
    );
    if !report.ledger_exists {
        let _ = writeln!(
            out,
            "no ledger yet: planrun has never applied a plan to this database"
        );
    }
    out.push('\n');
    let id_width = width(report.stages.iter().map(|s| s.id.as_str()), "stage");
    let _ = writeln!(
        out,
        "  #  {}  {:<8}  {:>4}  {:<24}  {:>9}  notes",
        pad("stage", 5, id_width),
        "state",
        "run",
        "finished",
        "rows"
    );
    for (position, stage) in report.stages.iter().enumerate() {
        let state = match stage.state.as_str() {
            "applied" => style.good("applied"),
            "failed" | "drifted" => style.bad(&stage.state),
            other => other.to_owned(),
        };
        let mut notes = Vec::new();
        if stage.optional {
            notes.push("optional".to_owned());
        }
        if let Some(note) = &stage.note {
            notes.push(note.clone());
        }
        let _ = writeln!(
            out,
            "{:>3}  {}  {}  {:>4}  {:<24}  {:>9}  {}",
            position + 1,
            pad(&stage.id, stage.id.len(), id_width),
            pad(&state, stage.state.len(), 8),
            stage.run_id.map(|r| r.to_string()).unwrap_or_default(),
            stage.finished_at.clone().unwrap_or_default(),
            stage
                .rows_affected
                .map(|r| r.to_string())
                .unwrap_or_default(),
            notes.join("; ")
        );
    }
    for line in &report.history {
        let _ = writeln!(out, "{} {line}", style.bad("history:"));
    }
    if !report.recent_runs.is_empty() {
        let _ = writeln!(out, "\nrecent runs:");
        for run in &report.recent_runs {
            let _ = writeln!(
                out,
                "  run {:>4}  {}  {:<16} {:<20} by {}@{}{}",
                run.id,
                run.started_at,
                run.command,
                run.outcome,
                run.user,
                run.host,
                run.backup_file
                    .as_ref()
                    .map(|f| format!("  backup {f}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}
