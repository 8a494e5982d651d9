//! Human rendering of run and status reports, for a reader who scans: one line per
//! stage (status, time, rows, its checks counted), then only what needs a look (a
//! failed check, the SQL error, drift), what committed and the next command. `-v`
//! adds every check with its values, the steps, locks and captured values.
//! `--format json` prints the same models with serde instead.

use std::fmt::Write as _;

use planrun_engine::{
    CheckResult, CheckStatus, LockRetry, RunReport, SqlDiff, StageReport, StageStatus, StatusReport,
};

use crate::output::{count, count_signed, duration};

/// The width the text aims to stay within; a value is shortened in the middle and a
/// long note or summary line wraps to stay within it.
const WIDTH: usize = 100;

/// Where a check's details start: below the stage's name.
const INDENT: &str = "      ";

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy)]
pub(crate) struct Style {
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
    pub(crate) fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub(crate) fn bad(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    pub(crate) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub(crate) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// How much a run report shows: the default (a line per stage, failures in full) or
/// `-v` (every check with its values, steps, locks, captured values).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) enum Detail {
    #[default]
    Summary,
    Verbose,
}

/// A table cell: its text and its text as painted.
struct Cell {
    text: String,
    painted: String,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Cell {
        let text = text.into();
        Cell {
            painted: text.clone(),
            text,
        }
    }
    fn painted(text: impl Into<String>, paint: impl FnOnce(&str) -> String) -> Cell {
        let text = text.into();
        Cell {
            painted: paint(&text),
            text,
        }
    }
    fn width(&self) -> usize {
        self.text.chars().count()
    }
}

/// A column of a table: aligned to the right or not, and at least how wide.
#[derive(Clone, Copy)]
struct Column {
    right: bool,
    min: usize,
}

const LEFT: Column = Column {
    right: false,
    min: 0,
};
const RIGHT: Column = Column {
    right: true,
    min: 0,
};
/// Durations: as wide as `1,234 ms`, so that the column keeps its place from run to
/// run.
const TIME: Column = Column {
    right: true,
    min: 8,
};

/// Renders rows of cells as `columns` two spaces apart. Trailing blanks are trimmed.
fn table(rows: &[Vec<Cell>], columns: &[Column]) -> Vec<String> {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(Cell::width)
                .max()
                .unwrap_or(0)
                .max(columns.get(column).map_or(0, |c| c.min))
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let padding = " ".repeat(widths[column].saturating_sub(cell.width()));
                if column > 0 {
                    line.push_str("  ");
                }
                if columns.get(column).is_some_and(|c| c.right) {
                    line.push_str(&padding);
                    line.push_str(&cell.painted);
                } else {
                    line.push_str(&cell.painted);
                    line.push_str(&padding);
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// `text` in lines of at most `width` characters, broken at spaces outside
/// backquotes (a command stays whole), continuation lines indented by `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut word = String::new();
    for c in text.chars() {
        if c == '`' {
            quoted = !quoted;
        }
        if c == ' ' && !quoted {
            words.push(std::mem::take(&mut word));
        } else {
            word.push(c);
        }
    }
    words.push(word);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in words {
        let prefix = if lines.is_empty() { "" } else { indent };
        let wanted = prefix.chars().count() + line.chars().count() + 1 + word.chars().count();
        if !line.is_empty() && wanted > width {
            lines.push(format!("{prefix}{line}"));
            line = word;
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
    }
    let prefix = if lines.is_empty() { "" } else { indent };
    lines.push(format!("{prefix}{line}"));
    lines
}

/// A value as one line: line breaks and tabs made visible, other control characters
/// replaced.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '→',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// `value` in at most `max` characters, its middle replaced with `…`.
pub(crate) fn shorten(value: &str, max: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= max || max < 5 {
        return value.to_owned();
    }
    let keep = max - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// `value` in at most `max` characters around character `at` (where it differs from
/// what was expected), `…` for what is left out on either side.
fn window(value: &str, at: usize, max: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= max {
        return value.to_owned();
    }
    let room = max - 2;
    let start = at.saturating_sub(room / 3).min(chars.len() - room);
    let end = (start + room).min(chars.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push('…');
    }
    out
}

/// The value an expectation compares with: `= 'text'` -> `text`, `> 3` -> `3`.
fn compared(expected: &str) -> &str {
    let value = expected
        .trim_start_matches(['=', '!', '<', '>'])
        .trim_start();
    value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value)
}

/// The value a check read, booleans spelt as the expectation spells them: PostgreSQL
/// sends `t` and `f`.
fn actual_value(check: &CheckResult) -> String {
    let boolean = matches!(compared(&check.expected), "true" | "false");
    match check.actual.as_str() {
        "t" if boolean => "true".into(),
        "f" if boolean => "false".into(),
        actual => one_line(actual),
    }
}

/// The character position where `a` and `b` first differ.
fn first_difference(a: &str, b: &str) -> usize {
    a.chars()
        .zip(b.chars())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.chars().count().min(b.chars().count()))
}

/// A check with its values: one line when it fits, else the values on lines of their
/// own, shortened around where they differ (a failure) or in the middle.
fn check_lines(style: Style, kind: &str, check: &CheckResult) -> Vec<String> {
    let head = |mark: &str| format!("{INDENT}{mark} {kind} {}", one_line(&check.name));
    let mut lines = match check.status {
        CheckStatus::EvaluatedAfter | CheckStatus::Superseded | CheckStatus::NotRecheckable => {
            return not_judged_lines(style, &head("--  "), check);
        }
        CheckStatus::Passed | CheckStatus::Failed => judged_lines(style, head, check),
    };
    if let Some(problem) = &check.problem {
        lines.push(format!("{INDENT}     {}", one_line(problem)));
    }
    if let Some(message) = &check.message {
        lines.push(format!("{INDENT}     {}", one_line(message)));
    }
    lines
}

/// A check not evaluated or not judged now (`head` its first words), and why.
fn not_judged_lines(style: Style, head: &str, check: &CheckResult) -> Vec<String> {
    match check.status {
        CheckStatus::EvaluatedAfter => vec![style.dim(&format!(
            "{head}: evaluated after {}",
            check.evaluated_after.join(", ")
        ))],
        CheckStatus::Superseded => {
            let stages: Vec<&str> = check
                .superseded_by
                .iter()
                .map(|by| by.stage.as_str())
                .collect();
            let mut lines =
                vec![style.dim(&format!("{head}: superseded by {}", stages.join(", ")))];
            for by in &check.superseded_by {
                lines.push(style.dim(&format!(
                    "{INDENT}     {} changed {}",
                    by.stage,
                    by.relations.join(", ")
                )));
            }
            lines
        }
        _ => {
            let why = check
                .not_recheckable
                .as_ref()
                .map_or_else(|| "not re-checkable".to_owned(), |why| why.reason());
            vec![
                style.dim(&format!("{head}: {why}")),
                style.dim(&format!(
                    "{INDENT}     read {}, expected {}",
                    actual_value(check),
                    one_line(&check.expected)
                )),
            ]
        }
    }
}

/// A check that passed or failed, with what it expected and read: on its line when
/// they fit, else shortened or on lines of their own.
fn judged_lines(style: Style, head: impl Fn(&str) -> String, check: &CheckResult) -> Vec<String> {
    let failed = check.failed();
    let (mark, visible) = if failed {
        (style.bad("FAIL"), "FAIL")
    } else {
        (style.good("ok  "), "ok  ")
    };
    let first = head(&mark);
    let first_width = head(visible).chars().count();
    let expected = one_line(&check.expected);
    let actual = actual_value(check);
    let whole = format!(": expected {expected}, got {actual}");
    let budget = WIDTH.saturating_sub(first_width + ": expected , got ".len()) / 2;
    if first_width + whole.chars().count() <= WIDTH {
        vec![format!("{first}{whole}")]
    } else if !failed && budget >= 16 {
        vec![format!(
            "{first}: expected {}, got {}",
            shorten(&expected, budget),
            shorten(&actual, budget)
        )]
    } else if INDENT.len() + whole.chars().count() + 3 <= WIDTH {
        // A long name: the values on the next line.
        vec![first, format!("{INDENT}     {}", &whole[2..])]
    } else {
        let room = WIDTH - INDENT.len() - "     expected ".len();
        let (expected, actual) = if failed {
            let at = first_difference(compared(&check.expected), &actual);
            let offset = expected.chars().count() - compared(&expected).chars().count();
            let offset = offset.saturating_sub(usize::from(expected.ends_with('\'')));
            (
                window(&expected, at + offset, room),
                window(&actual, at, room),
            )
        } else {
            (shorten(&expected, room), shorten(&actual, room))
        };
        vec![
            first,
            format!("{INDENT}     expected {expected}"),
            format!("{INDENT}     got      {actual}"),
        ]
    }
}

/// A stage's checks in one cell: `12/12 checks ok`, `1 of 12 checks FAILED`, and the
/// checks not evaluated now (`3 evaluated later`, `2 superseded`).
fn checks_cell(style: Style, stage: &StageReport) -> Cell {
    let checks: Vec<&CheckResult> = stage
        .preconditions
        .iter()
        .chain(&stage.verifications)
        .collect();
    let tally = |status: CheckStatus| checks.iter().filter(|c| c.status == status).count();
    let (passed, failed) = (tally(CheckStatus::Passed), tally(CheckStatus::Failed));
    let (later, superseded) = (
        tally(CheckStatus::EvaluatedAfter),
        tally(CheckStatus::Superseded),
    );
    if failed > 0 {
        return Cell::painted(
            format!("{failed} of {} checks FAILED", passed + failed),
            |text| style.bad(text),
        );
    }
    if stage.error.is_some() {
        // The error below says what stopped the stage; its checks did not all run.
        return Cell::plain("");
    }
    let mut parts = Vec::new();
    if passed > 0 {
        parts.push(format!("{passed}/{passed} checks ok"));
    }
    if later > 0 {
        parts.push(format!("{later} evaluated later"));
    }
    if superseded > 0 {
        parts.push(format!("{superseded} superseded"));
    }
    let moved = tally(CheckStatus::NotRecheckable);
    if moved > 0 {
        parts.push(format!("{moved} not re-checkable"));
    }
    Cell::plain(parts.join(", "))
}

fn status_cell(style: Style, status: StageStatus, dry_run: bool) -> Cell {
    let label = match status {
        StageStatus::Applied if dry_run => "would apply",
        StageStatus::Skipped if dry_run => "would skip",
        status => status.label(),
    };
    let paint = |text: &str| match status {
        StageStatus::Applied | StageStatus::Verified | StageStatus::WouldRun => style.good(text),
        StageStatus::Failed
        | StageStatus::Blocked
        | StageStatus::Drifted
        | StageStatus::Interrupted => style.bad(text),
        StageStatus::NotRun
        | StageStatus::NotSelected
        | StageStatus::Waiting
        | StageStatus::Superseded => style.dim(text),
        _ => text.to_owned(),
    };
    Cell::painted(label, paint)
}

/// Whether the stage ran in this run, so that its time and rows mean something.
fn ran(stage: &StageReport) -> bool {
    matches!(
        stage.status,
        StageStatus::Applied
            | StageStatus::Failed
            | StageStatus::Skipped
            | StageStatus::Interrupted
    )
}

fn notes(stage: &StageReport) -> String {
    let mut notes = Vec::new();
    // A stage left out for being optional says so in its note already.
    let says_optional = stage
        .note
        .as_deref()
        .is_some_and(|note| note.starts_with("optional"));
    if stage.optional && !says_optional {
        notes.push("optional".to_owned());
    }
    if !stage.transaction && ran(stage) {
        notes.push("ran outside a transaction".to_owned());
    }
    if stage.rows_quarantined > 0 {
        notes.push(format!("{} quarantined", count(stage.rows_quarantined)));
    }
    if !stage.lock_retries.is_empty() && !failed(stage) {
        let retries = stage.lock_retries.len();
        notes.push(format!(
            "took its locks after {retries} {}",
            if retries == 1 { "retry" } else { "retries" }
        ));
    }
    if let Some(note) = &stage.note {
        notes.push(one_line(note));
    }
    notes.join("; ")
}

/// Whether the stage needs a look: its failure is shown in full.
fn failed(stage: &StageReport) -> bool {
    matches!(
        stage.status,
        StageStatus::Failed
            | StageStatus::Blocked
            | StageStatus::Drifted
            | StageStatus::DriftAccepted
            | StageStatus::Interrupted
    )
}

/// The whole report as text.
pub(crate) fn render_run(report: &RunReport, style: Style, detail: Detail) -> String {
    let mut out = String::new();
    render_run_title(&mut out, report, style);
    out.push('\n');
    render_stage_table(&mut out, report, style, detail);
    out.push('\n');
    render_run_summary(&mut out, report, style);
    out
}

/// The first line of a report: `head -> target (from source)`, or, where that would
/// not fit a 120-column terminal (a socket directory is long), the target on a line of
/// its own under `head`.
pub(crate) fn target_title(head: &str, target: &str, source: &str) -> String {
    let on = format!(
        "{} (from {source})",
        planrun_conninfo::display_target(target)
    );
    let one_line = format!("{head} -> {on}");
    if one_line.chars().count() <= TITLE_WIDTH {
        one_line
    } else {
        format!("{head}\n  -> {on}")
    }
}

/// The widest title line: readable in a 120-column terminal.
const TITLE_WIDTH: usize = 118;

/// What ran on what: the command, plan, target and run, and the backup.
fn render_run_title(out: &mut String, report: &RunReport, style: Style) {
    let command = if report.dry_run {
        format!("{} --dry-run", report.command)
    } else {
        report.command.to_string()
    };
    let mut head = format!("planrun {command} {}", report.plan);
    if let (Some(run), false) = (report.run_id, report.dry_run) {
        let _ = write!(head, " [run {run}]");
    }
    let title = target_title(&head, &report.target, &report.target_source);
    let _ = writeln!(out, "{}", style.bold(&title));
    if report.dry_run {
        let _ = writeln!(
            out,
            "dry run, nothing recorded: the stages ran in one transaction, rolled back at the end"
        );
    }
    if let Some(file) = &report.backup_file {
        let _ = writeln!(out, "backup: {file}");
    }
}

/// One line per stage, each followed by its details; a note that would make its line
/// too wide goes below it.
fn render_stage_table(out: &mut String, report: &RunReport, style: Style, detail: Detail) {
    let (rows, columns) = stage_rows(report, style);
    let lines = table(&rows, &columns);
    let without_notes: Vec<Vec<Cell>> = rows
        .into_iter()
        .map(|mut row| {
            row.pop();
            row
        })
        .collect();
    let short_lines = table(&without_notes, &columns);
    let visible = |line: &String| {
        if style.colour {
            strip_ansi(line)
        } else {
            line.clone()
        }
    };
    let _ = writeln!(out, "  {}", lines[0]);
    for (index, stage) in report.stages.iter().enumerate() {
        let line = &lines[index + 1];
        let note = notes(stage);
        let short = &short_lines[index + 1];
        if visible(line).chars().count() + 2 <= WIDTH {
            let _ = writeln!(out, "  {line}");
        } else if visible(short).chars().count() + note.chars().count() + 4 <= WIDTH {
            // Out of the notes column, but on the stage's line.
            let _ = writeln!(out, "  {short}  {note}");
        } else {
            let _ = writeln!(out, "  {short}");
            for part in wrap(&note, WIDTH - INDENT.len(), "  ") {
                let _ = writeln!(out, "{INDENT}{}", style.dim(&part));
            }
        }
        render_details(out, stage, style, detail);
    }
}

/// The stage table's header and rows, notes last; time and rows only when a stage ran.
fn stage_rows(report: &RunReport, style: Style) -> (Vec<Vec<Cell>>, Vec<Column>) {
    let timed = report.stages.iter().any(ran);
    let mut header = vec![
        Cell::plain("#"),
        Cell::plain("stage"),
        Cell::plain("status"),
    ];
    if timed {
        header.extend([Cell::plain("time"), Cell::plain("rows")]);
    }
    header.extend([Cell::plain("checks"), Cell::plain("notes")]);
    let mut rows = vec![header];
    let mut columns = vec![RIGHT, LEFT, LEFT];
    if timed {
        columns.extend([TIME, RIGHT]);
    }
    for (position, stage) in report.stages.iter().enumerate() {
        let mut row = vec![
            Cell::plain((position + 1).to_string()),
            Cell::plain(stage.id.clone()),
            status_cell(style, stage.status, report.dry_run),
        ];
        if timed {
            let (time, rows) = if ran(stage) {
                (duration(stage.duration_ms), count(stage.rows_affected))
            } else {
                (String::new(), String::new())
            };
            row.extend([Cell::plain(time), Cell::plain(rows)]);
        }
        row.push(checks_cell(style, stage));
        row.push(Cell::plain(notes(stage)));
        rows.push(row);
    }
    (rows, columns)
}

/// The history, the summary, and for `plan` the lock impact and budget estimate.
fn render_run_summary(out: &mut String, report: &RunReport, style: Style) {
    // A summary line is one sentence, its command whole to copy: never wrapped.
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
}

/// `text` without ANSI colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What follows a stage's line: its failure in full (the failed checks, the error,
/// the drift); with `-v` also every check, captured value, lock and step.
fn render_details(out: &mut String, stage: &StageReport, style: Style, detail: Detail) {
    let verbose = detail == Detail::Verbose;
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    if verbose {
        render_skip_rules(&mut say, stage, style);
    }
    for (kind, checks) in [
        ("precondition", &stage.preconditions),
        ("verify", &stage.verifications),
    ] {
        for check in checks {
            if verbose || check.failed() {
                for line in check_lines(style, kind, check) {
                    say(line);
                }
            }
        }
    }
    if verbose {
        for (name, value) in &stage.computed {
            let value = value.as_deref().map_or("null".into(), one_line);
            say(format!("{INDENT}{name} = {}", shorten(&value, 60)));
        }
        render_held_locks(&mut say, stage, style);
    }
    if verbose || failed(stage) {
        for retry in &stage.lock_retries {
            say(format!("{INDENT}{}", lock_retry_line(retry)));
        }
    }
    render_drift(&mut say, stage, style, verbose);
    if verbose {
        for step in &stage.steps {
            render_step(&mut say, step, style);
        }
    }
    if let Some(error) = &stage.error {
        render_error(&mut say, error, style);
    }
}

/// `-v`: whether each skip rule held.
fn render_skip_rules(say: &mut impl FnMut(String), stage: &StageReport, style: Style) {
    for rule in &stage.skip_rules {
        let holds = if rule.status == CheckStatus::EvaluatedAfter {
            format!("evaluated after {}", rule.evaluated_after.join(", "))
        } else if rule.passed {
            "met".to_owned()
        } else {
            "not met".to_owned()
        };
        say(style.dim(&format!(
            "{INDENT}skip rule {holds}: {}",
            one_line(&rule.name)
        )));
    }
}

/// `-v`: the locks the stage held, and how long it waited for them.
fn render_held_locks(say: &mut impl FnMut(String), stage: &StageReport, style: Style) {
    let Some(first) = stage.locks.first() else {
        return;
    };
    let locks: Vec<String> = stage
        .locks
        .iter()
        .map(|lock| format!("{} {}", lock.mode, lock.table))
        .collect();
    let mut line = format!("locks: {}", locks.join(", "));
    if first.attempts > 1 {
        let _ = write!(
            line,
            " (after {} attempts, {})",
            first.attempts,
            duration(first.waited_ms)
        );
    }
    for part in wrap(&line, WIDTH - INDENT.len(), "  ") {
        say(style.dim(&format!("{INDENT}{part}")));
    }
}

/// What changed in a drifted stage: the SQL's diff where there is one, else the
/// drift line (with `-v`, both, unshortened).
fn render_drift(say: &mut impl FnMut(String), stage: &StageReport, style: Style, verbose: bool) {
    for line in &stage.drift {
        let diff = stage
            .drift_diff
            .iter()
            .find(|diff| line.starts_with(&format!("changed {}:", diff.entry)));
        match diff {
            // The diff says what changed better than the checksums do.
            Some(diff) if !verbose => render_sql_diff(say, diff, style),
            _ => {
                let room = WIDTH - INDENT.len() - "drift ".len();
                let line = one_line(line);
                let line = if verbose { line } else { shorten(&line, room) };
                say(format!("{INDENT}{} {line}", style.bad("drift")));
                if let Some(diff) = diff {
                    render_sql_diff(say, diff, style);
                }
            }
        }
    }
}

fn render_step(say: &mut impl FnMut(String), step: &planrun_engine::StepReport, style: Style) {
    let mut line = format!("{INDENT}step {}: ", step.name);
    match step.rows_read {
        Some(read) => {
            let _ = write!(
                line,
                "{} read, {} written",
                count(read),
                count(step.rows_affected)
            );
        }
        None => {
            let _ = write!(line, "{} rows", count(step.rows_affected));
        }
    }
    if let Some(quarantined) = step.rows_quarantined.filter(|q| *q > 0) {
        let _ = write!(line, ", {} quarantined", count(quarantined));
    }
    let _ = write!(line, " in {}", duration(step.duration_ms));
    say(style.dim(&line));
    // A transform's own count of what it read and wrote says the line above again.
    for note in step.notes.iter().filter(|note| !note.contains(" read, ")) {
        say(style.dim(&format!("{INDENT}  {}", one_line(note))));
    }
}

/// Where and why the stage failed: the step, the file's line and column, SQLSTATE,
/// PostgreSQL's message, the statement, detail and hint.
fn render_error(say: &mut impl FnMut(String), error: &planrun_engine::StageError, style: Style) {
    let mut place = Vec::new();
    if let Some(step) = error.step.as_deref() {
        if error.file.as_deref() != Some(step) {
            place.push(format!("step {step}"));
        }
    }
    if let Some(file) = &error.file {
        let mut at = file.clone();
        if let Some(line) = error.line {
            let _ = write!(at, " at line {line}");
            if let Some(column) = error.column {
                let _ = write!(at, ", column {column}");
            }
        }
        place.push(at);
    }
    let mut head = style.bad("error");
    if !place.is_empty() {
        let _ = write!(head, " in {}", place.join(", "));
    }
    if let Some(code) = &error.sqlstate {
        let _ = write!(head, " [SQLSTATE {code}]");
    }
    say(format!("{INDENT}{head}"));
    say(format!("{INDENT}  {}", error.message));
    let room = WIDTH - INDENT.len() - "  detail: ".len();
    if let Some(statement) = &error.statement {
        say(format!(
            "{INDENT}  at: {}",
            shorten(&one_line(statement), room)
        ));
    }
    if let Some(detail) = &error.detail {
        say(format!("{INDENT}  detail: {detail}"));
    }
    if let Some(hint) = &error.hint {
        say(format!("{INDENT}  hint: {hint}"));
    }
}

/// One failed lock attempt: what waited, why, who held the lock, when it tries again.
pub(crate) fn lock_retry_line(retry: &LockRetry) -> String {
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

fn render_sql_diff(say: &mut impl FnMut(String), diff: &SqlDiff, style: Style) {
    say(format!(
        "{INDENT}{} changed {}: - as applied, + in the plan now",
        style.bad("drift"),
        diff.entry
    ));
    for line in &diff.lines {
        let painted = match line.chars().next() {
            Some('-') => style.bad(line),
            Some('+') => style.good(line),
            Some('@') => style.dim(line),
            _ => line.clone(),
        };
        say(format!("        {painted}"));
    }
    if diff.more_lines > 0 {
        say(format!(
            "        {}",
            style.dim(&format!("... {} more lines", count(diff.more_lines as u64)))
        ));
    }
}

pub(crate) fn render_status(report: &StatusReport, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.bold(&target_title(
            &format!("planrun status {}", report.plan),
            &report.target,
            &report.target_source
        ))
    );
    if !report.ledger_exists {
        let _ = writeln!(
            out,
            "no ledger yet: planrun has never applied a plan to this database"
        );
    }
    out.push('\n');
    let header = ["#", "stage", "state", "run", "finished", "rows", "notes"].map(Cell::plain);
    let mut rows = vec![Vec::from(header)];
    for (position, stage) in report.stages.iter().enumerate() {
        let state = Cell::painted(stage.state.clone(), |text| match text {
            "applied" => style.good(text),
            "failed" | "drifted" => style.bad(text),
            other => other.to_owned(),
        });
        let mut notes = Vec::new();
        if stage.optional {
            notes.push("optional".to_owned());
        }
        if let Some(note) = &stage.note {
            notes.push(note.clone());
        }
        rows.push(vec![
            Cell::plain((position + 1).to_string()),
            Cell::plain(stage.id.clone()),
            state,
            Cell::plain(stage.run_id.map(|r| r.to_string()).unwrap_or_default()),
            Cell::plain(stage.finished_at.clone().unwrap_or_default()),
            Cell::plain(stage.rows_affected.map(count_signed).unwrap_or_default()),
            Cell::plain(notes.join("; ")),
        ]);
    }
    let columns = [RIGHT, LEFT, LEFT, RIGHT, LEFT, RIGHT, LEFT];
    for line in table(&rows, &columns) {
        let _ = writeln!(out, "  {line}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_shortened_in_the_middle() {
        let value = format!("abc{}xyz", "-".repeat(100));
        let short = shorten(&value, 20);
        assert_eq!(short.chars().count(), 20);
        assert!(short.starts_with("abc") && short.ends_with("xyz") && short.contains('…'));
        assert_eq!(shorten("short", 20), "short");
    }

    #[test]
    fn a_window_shows_where_values_differ() {
        let value = format!("{}DIFF{}", "a".repeat(100), "b".repeat(100));
        let shown = window(&value, 100, 40);
        assert!(shown.contains("DIFF"), "{shown}");
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        assert!(shown.chars().count() <= 40, "{shown}");
    }

    #[test]
    fn booleans_read_as_the_expectation_spells_them() {
        let mut check = CheckResult::from_outcome(
            "x",
            planrun_plan::Outcome {
                passed: true,
                expected: "= true".into(),
                actual: "t".into(),
                problem: None,
            },
            None,
        );
        assert_eq!(actual_value(&check), "true");
        check.expected = "= 't'".into();
        assert_eq!(actual_value(&check), "t", "a text `t` stays");
    }

    #[test]
    fn wrapping_keeps_commands_whole() {
        let lines = wrap(
            "next: run `planrun apply plans/a-long-name.toml` again; committed stages will not run twice",
            40,
            "  ",
        );
        assert!(
            lines
                .iter()
                .any(|line| line.contains("`planrun apply plans/a-long-name.toml`")),
            "{lines:#?}"
        );
        assert!(lines[1..].iter().all(|line| line.starts_with("  ")));
    }
}
