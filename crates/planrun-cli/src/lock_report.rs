//! `planrun check`'s lock analysis: per stage, the relations it locks and in which
//! mode (rewritten or scanned, new or live), then each finding with why it matters
//! and what to do instead, or the reason the plan accepts it.

use std::fmt::Write as _;

use planrun_engine::{BudgetEstimate, StageLockWeight, TableNow, Weight};
use planrun_plan::{StageLock, StageLockImpact};

/// The lock analysis of every stage, indented under `check`'s summary.
pub(crate) fn render_lock_impact(stages: &[StageLockImpact]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  lock analysis (offline; the rules are in docs/lock-analysis.md):"
    );
    for stage in stages {
        let _ = writeln!(
            out,
            "    {}{}:",
            stage.stage,
            if stage.transaction {
                ""
            } else {
                " (no transaction)"
            }
        );
        if stage.locks.is_empty() {
            let _ = writeln!(out, "      no table locks beyond reads");
        }
        for lock in &stage.locks {
            let _ = writeln!(out, "      {}", lock_line(lock));
        }
        for line in &stage.over_budget {
            let _ = writeln!(out, "      over budget: {line}");
        }
        for finding in &stage.findings {
            let rule = finding.rule;
            match &finding.allowed {
                Some(reason) => {
                    let _ = writeln!(
                        out,
                        "      accepted[{rule}] {}: {}\n        reason: {reason}",
                        finding.place, finding.detail
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "      warning[{rule}] {}: {}\n        why: {}\n        instead: {}",
                        finding.place,
                        finding.detail,
                        rule.explanation(),
                        rule.alternative()
                    );
                }
            }
        }
    }
    let findings = stages.iter().flat_map(|stage| &stage.findings);
    let (accepted, open): (Vec<_>, Vec<_>) = findings.partition(|f| f.allowed.is_some());
    let _ = writeln!(
        out,
        "  lock findings: {} to review, {} accepted by `allow`",
        open.len(),
        accepted.len()
    );
    out
}

fn lock_line(lock: &StageLock) -> String {
    let mut notes = Vec::new();
    if lock.new {
        notes.push("new".to_owned());
    }
    if lock.rewrites {
        notes.push("rewrites".to_owned());
    } else if lock.scans {
        notes.push("scans".to_owned());
    }
    let blocks = if lock.mode.blocks_reads() {
        "blocks reads and writes"
    } else if lock.mode.blocks_writes() {
        "blocks writes"
    } else {
        "blocks DDL"
    };
    if !lock.new {
        notes.push(blocks.to_owned());
    }
    format!(
        "{} {} [{}] by {}",
        lock.mode,
        lock.relation,
        notes.join(", "),
        places(&lock.taken_by)
    )
}

/// `a.sql line 3`, `a.sql line 6` as `a.sql lines 3, 6`.
fn places(taken_by: &[String]) -> String {
    let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
    for place in taken_by {
        let (source, line) = match place.rsplit_once(" line ") {
            Some((source, line)) => (source, Some(line)),
            None => (place.as_str(), None),
        };
        match grouped.iter_mut().find(|(known, _)| *known == source) {
            Some((_, lines)) => lines.extend(line),
            None => grouped.push((source, line.into_iter().collect())),
        }
    }
    grouped
        .into_iter()
        .map(|(source, lines)| match lines.len() {
            0 => source.to_owned(),
            1 => format!("{source} line {}", lines[0]),
            _ => format!("{source} lines {}", lines.join(", ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `planrun plan`'s lock impact: each locked table's size, rows and write rate on the
/// target, then the open findings weighed by them (accepted ones are counted).
pub(crate) fn render_lock_weight(stages: &[StageLockWeight]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lock impact on the target (tables as they are now; writes sampled over 1 s):"
    );
    let mut counts = [0usize; 3];
    for stage in stages {
        if stage.impact.locks.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {}:", stage.impact.stage);
        for (lock, table) in stage.impact.locks.iter().zip(&stage.tables) {
            let _ = writeln!(out, "    {} {}", lock_line(lock), table_now(table));
        }
        for line in &stage.impact.over_budget {
            let _ = writeln!(out, "    over budget: {line}");
        }
        for (finding, weight) in stage.impact.findings.iter().zip(&stage.weights) {
            if finding.allowed.is_some() {
                continue;
            }
            counts[*weight as usize] += 1;
            let label = match weight {
                Weight::Harmless => "harmless here (new or empty table)",
                Weight::Live => "review",
                Weight::Heavy => "REVIEW: big or busy table",
            };
            let _ = writeln!(
                out,
                "    {label} [{}] {}: {}",
                finding.rule, finding.place, finding.detail
            );
        }
    }
    let _ = writeln!(
        out,
        "  open findings: {} on big or busy tables, {} on live tables, {} harmless on new or empty tables",
        counts[Weight::Heavy as usize],
        counts[Weight::Live as usize],
        counts[Weight::Harmless as usize]
    );
    out
}

fn table_now(table: &TableNow) -> String {
    if !table.exists {
        return "(not on the target yet)".into();
    }
    let rows = if table.rows < 0 {
        "rows unknown".to_owned()
    } else {
        format!("{} rows", crate::output::count_signed(table.rows))
    };
    format!(
        "({}, {rows}, {} writes/s)",
        human_bytes(table.bytes),
        crate::output::rate(table.writes_per_second)
    )
}

fn human_bytes(bytes: i64) -> String {
    let bytes = bytes.max(0) as f64;
    match bytes {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// `planrun plan`'s lock budgets against a rehearsal: per stage, each table's lock as
/// the rehearsal measured it, the time it blocks reads and writes estimated on the
/// target, and the budget; the breaches the rehearsal found.
pub(crate) fn render_budget_estimate(estimate: &BudgetEstimate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lock budget against the rehearsal of {} ({}, database {}):",
        estimate.rehearsed_at, estimate.file, estimate.rehearsed_database
    );
    if !estimate.same_plan {
        let _ = writeln!(
            out,
            "  the plan changed since this rehearsal: its estimates may be off; rehearse again"
        );
    }
    let limit = |ms: Option<u64>| ms.map_or("no limit".to_owned(), crate::output::duration);
    for stage in &estimate.stages {
        let budget = match &stage.budget {
            Some(budget) => format!(
                "budget: strongest {}, reads blocked {}, writes blocked {}",
                budget.strongest.as_deref().unwrap_or("any"),
                limit(budget.blocks_reads_ms),
                limit(budget.blocks_writes_ms)
            ),
            None => "no lock_budget".to_owned(),
        };
        let verdict = if stage.over_budget.is_empty() {
            "within"
        } else {
            "OVER"
        };
        let _ = writeln!(out, "  {} ({budget}): {verdict}", stage.id);
        for lock in stage
            .locks
            .iter()
            .filter(|lock| lock.estimated_blocked_writes_ms > 0 || lock.rewritten)
        {
            let _ = writeln!(
                out,
                "    {} {}: reads blocked ~{}, writes blocked ~{} on the target{}",
                lock.strongest,
                lock.table,
                crate::output::duration(lock.estimated_blocked_reads_ms),
                crate::output::duration(lock.estimated_blocked_writes_ms),
                if lock.rewritten { ", rewritten" } else { "" }
            );
            if lock.new_table {
                let _ = writeln!(
                    out,
                    "      a table the plan created, not filled when the stage locked it: not held against the budget"
                );
            }
        }
        for line in &stage.over_budget {
            let _ = writeln!(out, "    over budget: {line}");
        }
    }
    out
}
