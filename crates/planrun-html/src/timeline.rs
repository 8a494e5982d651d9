//! One stage's lock timeline as SVG: a row for the stage and one per table, time
//! running to the stage's commit at the right edge. A lock taken in a transaction is
//! held until the commit, so each table's bar ends there: red while it blocks the
//! application's reads and writes, orange while it blocks its writes, green while it
//! blocks neither. The stage's lock budget is a dashed line per limit: a bar reaching
//! left of its line held the lock longer than the budget allows. A rewritten table is
//! marked; the statement that took the lock is in the bar's hover title.

use std::fmt::Write as _;

use planrun_plan::LockBudget;

use crate::escape::{escape, shorten};
use crate::lock_class::Blocks;
use crate::units::duration;

const WIDTH: f64 = 760.0;
const CHART_LEFT: f64 = 230.0;
const CHART_RIGHT: f64 = 740.0;
const ROW: f64 = 24.0;
const TOP: f64 = 40.0;
/// Characters of a table name drawn in the label column.
const LABEL_CHARS: usize = 30;

/// What one stage's timeline shows.
pub(crate) struct Timeline<'a> {
    pub(crate) stage: &'a str,
    /// How long the stage ran, on the timeline's scale.
    pub(crate) stage_ms: u64,
    pub(crate) locks: Vec<LockBar>,
    pub(crate) budget: Option<&'a LockBudget>,
}

/// One table's lock, on the timeline's scale.
pub(crate) struct LockBar {
    pub(crate) table: String,
    pub(crate) mode: String,
    /// How long it blocked reads (and so writes too).
    pub(crate) reads_ms: u64,
    /// How long it blocked writes, the time it blocked reads included.
    pub(crate) writes_ms: u64,
    pub(crate) rewritten: bool,
    pub(crate) statement: Option<String>,
}

struct Scale {
    span_ms: f64,
}

impl Scale {
    /// The x of `ms` before the commit.
    fn x(&self, ms: u64) -> f64 {
        CHART_RIGHT - (ms as f64 / self.span_ms).min(1.0) * (CHART_RIGHT - CHART_LEFT)
    }
}

/// The timeline's SVG element.
pub(crate) fn timeline_svg(timeline: &Timeline<'_>) -> String {
    let budget_ms = budget_limits(timeline.budget);
    let longest = timeline
        .locks
        .iter()
        .map(|lock| lock.writes_ms.max(lock.reads_ms))
        .fold(timeline.stage_ms, u64::max);
    let scale = Scale {
        span_ms: (longest as f64 * 1.08).max(1.0),
    };
    let rows = timeline.locks.len() + 1;
    let height = TOP + rows as f64 * ROW + 34.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         font-family=\"system-ui, sans-serif\" font-size=\"12\">\n\
         <title>lock timeline of stage {}</title>\n",
        escape(timeline.stage)
    );
    push_stage_row(&mut out, timeline, &scale);
    for (row, lock) in timeline.locks.iter().enumerate() {
        push_lock_row(
            &mut out,
            lock,
            TOP + (row + 1) as f64 * ROW,
            &scale,
            timeline.stage_ms,
        );
    }
    let bottom = TOP + rows as f64 * ROW;
    push_axis(&mut out, &scale, bottom);
    for (row, (limit, ms)) in budget_ms.iter().enumerate() {
        push_budget_line(&mut out, limit, *ms, &scale, (bottom, row));
    }
    out.push_str("</svg>\n");
    out
}

/// The budget's time limits: what each bounds, and its milliseconds.
fn budget_limits(budget: Option<&LockBudget>) -> Vec<(Blocks, u64)> {
    let Some(budget) = budget else {
        return Vec::new();
    };
    let mut limits = Vec::new();
    if let Some(reads) = &budget.blocks_reads {
        limits.push((Blocks::ReadsAndWrites, reads.millis()));
    }
    if let Some(writes) = &budget.blocks_writes {
        limits.push((Blocks::Writes, writes.millis()));
    }
    limits
}

fn push_stage_row(out: &mut String, timeline: &Timeline<'_>, scale: &Scale) {
    let x = scale.x(timeline.stage_ms);
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"{}\" font-weight=\"600\" fill=\"#1d2733\">stage {}</text>\
         <rect class=\"bar stage-bar\" x=\"{x:.1}\" y=\"{}\" width=\"{:.1}\" height=\"12\" rx=\"2\" \
         fill=\"#5b6b7f\"><title>stage {} ran {}</title></rect>",
        TOP + 12.0,
        escape(&shorten(timeline.stage, LABEL_CHARS - 6)),
        TOP + 3.0,
        (CHART_RIGHT - x).max(2.0),
        escape(timeline.stage),
        duration(timeline.stage_ms),
    );
}

fn push_lock_row(out: &mut String, lock: &LockBar, y: f64, scale: &Scale, stage_ms: u64) {
    let label = if lock.rewritten {
        format!(
            "{} \u{27f3} rewritten",
            shorten(&lock.table, LABEL_CHARS - 12)
        )
    } else {
        shorten(&lock.table, LABEL_CHARS)
    };
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"{}\" fill=\"#1d2733\"{}>{}<title>{}</title></text>",
        y + 12.0,
        if lock.rewritten {
            " font-weight=\"600\""
        } else {
            ""
        },
        escape(&label),
        escape(&lock.table),
    );
    let writes_ms = lock.writes_ms.max(lock.reads_ms);
    let held_ms = stage_ms.max(writes_ms);
    let segments = [
        (Blocks::Nothing, held_ms, writes_ms),
        (Blocks::Writes, writes_ms, lock.reads_ms),
        (Blocks::ReadsAndWrites, lock.reads_ms, 0),
    ];
    for (blocks, from_ms, to_ms) in segments {
        if from_ms > to_ms {
            push_segment(
                out,
                lock,
                blocks,
                (scale.x(from_ms), scale.x(to_ms)),
                y,
                from_ms - to_ms,
            );
        }
    }
    if held_ms == 0 {
        push_segment(
            out,
            lock,
            Blocks::of_mode(&lock.mode),
            (CHART_RIGHT - 2.0, CHART_RIGHT),
            y,
            0,
        );
    }
}

fn push_segment(
    out: &mut String,
    lock: &LockBar,
    blocks: Blocks,
    (x1, x2): (f64, f64),
    y: f64,
    ms: u64,
) {
    let mut hover = format!(
        "{}: {}, {} {}",
        lock.table,
        lock.mode,
        blocks.words(),
        duration(ms)
    );
    if blocks == Blocks::Nothing {
        hover = format!(
            "{}: {}, held until the commit, {}",
            lock.table,
            lock.mode,
            blocks.words()
        );
    }
    if lock.rewritten {
        hover.push_str("; the table was rewritten");
    }
    if let Some(statement) = &lock.statement {
        hover.push_str("\ntaken by: ");
        hover.push_str(statement);
    }
    let (height, offset, opacity) = match blocks {
        Blocks::Nothing => (8.0, 6.0, 0.7),
        _ => (16.0, 2.0, 1.0),
    };
    let outline = if lock.rewritten {
        " stroke=\"#1d2733\" stroke-width=\"1.2\" stroke-dasharray=\"3 2\""
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<rect class=\"bar lock-bar {}\" x=\"{x1:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{height}\" \
         fill=\"{}\" fill-opacity=\"{opacity}\"{outline}><title>{}</title></rect>",
        blocks.class(),
        y + offset,
        (x2 - x1).max(2.0),
        blocks.colour(),
        escape(&hover),
    );
}

fn push_axis(out: &mut String, scale: &Scale, bottom: f64) {
    let _ = writeln!(
        out,
        "<line x1=\"{CHART_LEFT}\" y1=\"{bottom}\" x2=\"{CHART_RIGHT}\" y2=\"{bottom}\" stroke=\"#9aa5b1\"/>"
    );
    for tick in 0..=4u32 {
        let ms = (scale.span_ms * f64::from(tick) / 4.0) as u64;
        let x = scale.x(ms);
        let label = if tick == 0 {
            "commit".to_owned()
        } else {
            format!("\u{2212}{}", duration(ms))
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#e3e7ec\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5b6b7f\" font-size=\"11\">{}</text>",
            bottom + 4.0,
            bottom + 17.0,
            escape(&label),
        );
    }
}

/// A budget limit's dashed line, or where the limit is longer than the whole
/// timeline (far from being reached), its words at the left edge.
fn push_budget_line(
    out: &mut String,
    limit: &Blocks,
    ms: u64,
    scale: &Scale,
    (bottom, row): (f64, usize),
) {
    let what = match limit {
        Blocks::ReadsAndWrites => "reads",
        _ => "writes",
    };
    let label_y = 14.0 + 14.0 * row as f64;
    let hover = format!(
        "lock budget: a lock may block {what} for {} at most",
        duration(ms)
    );
    if ms as f64 > scale.span_ms {
        let _ = writeln!(
            out,
            "<g class=\"budget-line\"><title>{}</title><text x=\"{CHART_LEFT}\" y=\"{label_y}\" fill=\"{}\" \
             font-size=\"11\">\u{25c2} budget {what} {}: beyond the left edge</text></g>",
            escape(&hover),
            limit.colour(),
            duration(ms),
        );
        return;
    }
    let x = scale.x(ms);
    let (anchor, label_x) = if x > (CHART_LEFT + CHART_RIGHT) / 2.0 {
        ("end", x - 4.0)
    } else {
        ("start", x + 4.0)
    };
    let _ = writeln!(
        out,
        "<g class=\"budget-line\"><title>{}</title>\
         <line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"{}\" stroke-width=\"2\" \
         stroke-dasharray=\"6 4\"/><text x=\"{label_x:.1}\" y=\"{label_y}\" text-anchor=\"{anchor}\" fill=\"{}\" \
         font-size=\"11\">budget {what} {}</text></g>",
        escape(&hover),
        label_y - 10.0,
        limit.colour(),
        limit.colour(),
        duration(ms),
    );
}
