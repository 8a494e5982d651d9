//! An apply's report as a page (`planrun apply --report FILE`): what ran on what, the
//! stage graph, a table of the stages, then per stage the locks it held from its
//! start to its commit on a timeline against its budget, its checks with their
//! values, steps with rows and quarantine, lock retries and error. An apply does not
//! trace its locks as a rehearsal does: a lock is drawn held for the whole stage.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use planrun_plan::{Dag, Plan};
use planrun_report::{RunReport, StageReport, StageStatus};

use crate::escape::escape;
use crate::graph_svg::{graph_svg, NodeMark, Tone};
use crate::lock_class::Blocks;
use crate::page::{legend, page};
use crate::sections::{self, badge, status_tone};
use crate::timeline::{timeline_svg, LockBar, Timeline};
use crate::units::{count, duration};

/// The whole HTML document of `report`, a run of `plan` (whose graph is `dag`).
pub fn run_html(report: &RunReport, plan: &Plan, dag: &Dag) -> String {
    let outcome = report.outcome_code();
    let tone = if report.exit_code == 0 {
        Tone::Good
    } else {
        Tone::Bad
    };
    let mut body = format!(
        "<h1>{} of {} {}</h1>\n<p class=\"meta\">target {} (from {}){}{}; exit code {}</p>\n",
        escape(&report.command.to_string()),
        escape(&report.plan),
        badge(outcome.as_str(), tone),
        escape(&planrun_conninfo::display_target(&report.target)),
        escape(&report.target_source),
        if report.dry_run {
            ", dry run (rolled back)"
        } else {
            ""
        },
        report
            .backup_file
            .as_deref()
            .map_or(String::new(), |file| format!(", backup {}", escape(file))),
        report.exit_code,
    );
    if !report.summary.is_empty() {
        body.push_str("<ul class=\"summary\">\n");
        for line in &report.summary {
            let _ = writeln!(body, "<li>{}</li>", escape(line));
        }
        body.push_str("</ul>\n");
    }
    let marks: BTreeMap<String, NodeMark> = report
        .stages
        .iter()
        .map(|stage| {
            let mark = NodeMark {
                label: stage.status.label().to_owned(),
                tone: status_tone(stage.status),
            };
            (stage.id.clone(), mark)
        })
        .collect();
    let _ = writeln!(
        body,
        "<h2>Stages</h2>\n<div class=\"graph\">{}</div>",
        graph_svg(plan, dag, &marks)
    );
    body.push_str(&summary(report, "stage"));
    body.push_str(&legend());
    for (number, stage) in report.stages.iter().enumerate() {
        body.push_str(&stage_section(&format!("stage-{number}"), stage, plan));
    }
    page(
        &format!("planrun {} of {}", report.command, report.plan),
        &body,
    )
}

/// A table of the run's stages, each linked to its section `#{anchor}-{number}`.
pub(crate) fn summary(report: &RunReport, anchor: &str) -> String {
    let mut out = String::from(
        "<table class=\"stages\"><tr><th>stage</th><th>status</th><th class=\"num\">time</th>\
         <th class=\"num\">rows</th><th class=\"num\">quarantined</th><th class=\"num\">checks</th><th>note</th></tr>\n",
    );
    for (number, stage) in report.stages.iter().enumerate() {
        let passed = stage
            .verifications
            .iter()
            .filter(|check| check.passed)
            .count();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{anchor}-{number}\"><code>{}</code></a></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{passed}/{}</td><td>{}</td></tr>",
            escape(&stage.id),
            badge(stage.status.label(), status_tone(stage.status)),
            duration(stage.duration_ms),
            count(stage.rows_affected),
            count(stage.rows_quarantined),
            stage.verifications.len(),
            escape(stage.note.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>\n");
    out
}

fn ran(status: StageStatus) -> bool {
    matches!(
        status,
        StageStatus::Applied
            | StageStatus::Failed
            | StageStatus::Interrupted
            | StageStatus::Blocked
    )
}

/// The stage's section, `id` its anchor.
pub(crate) fn stage_section(id: &str, stage: &StageReport, plan: &Plan) -> String {
    let planned = plan.stages.iter().find(|planned| planned.id == stage.id);
    let mut out = format!(
        "<section class=\"stage\" id=\"{}\" data-stage=\"{}\">\n<h2>{} {}</h2>\n",
        escape(id),
        escape(&stage.id),
        escape(&stage.id),
        badge(stage.status.label(), status_tone(stage.status)),
    );
    if let Some(title) = &stage.title {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(title));
    }
    let _ = writeln!(
        out,
        "<p class=\"meta\">ran {}; {} rows, {} quarantined{}</p>",
        duration(stage.duration_ms),
        count(stage.rows_affected),
        count(stage.rows_quarantined),
        stage
            .note
            .as_deref()
            .map_or(String::new(), |note| format!("; {}", escape(note))),
    );
    if ran(stage.status) {
        let timeline = Timeline {
            stage: &stage.id,
            stage_ms: stage.duration_ms,
            locks: held_locks(stage),
            budget: planned.and_then(|planned| plan.lock_budget_of(planned)),
        };
        let _ = writeln!(
            out,
            "<h3>Locks held</h3>\n<div class=\"timeline-box\">{}</div>",
            timeline_svg(&timeline)
        );
        out.push_str(&retries(stage));
    }
    out.push_str(&sections::checks(stage));
    out.push_str(&sections::steps(stage));
    out.push_str(&sections::error(stage));
    out.push_str("</section>\n");
    out
}

/// The stage's declared locks, held from its start to its commit.
fn held_locks(stage: &StageReport) -> Vec<LockBar> {
    stage
        .locks
        .iter()
        .map(|lock| {
            let blocks = Blocks::of_mode(&lock.mode);
            let held = stage.duration_ms.saturating_sub(lock.waited_ms);
            LockBar {
                table: lock.table.clone(),
                mode: lock.mode.clone(),
                reads_ms: if blocks == Blocks::ReadsAndWrites {
                    held
                } else {
                    0
                },
                writes_ms: if blocks == Blocks::Nothing { 0 } else { held },
                rewritten: false,
                statement: Some(format!("declared by {}", lock.declared_by)),
            }
        })
        .collect()
}

fn retries(stage: &StageReport) -> String {
    if stage.lock_retries.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3>Lock attempts retried</h3>\n<table><tr><th>waiting</th><th class=\"num\">attempt</th><th>reason</th><th>blocked by</th></tr>\n",
    );
    for retry in &stage.lock_retries {
        let blockers: Vec<String> = retry.blocked_by.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}/{}</td><td>{}</td><td class=\"sql\">{}</td></tr>",
            escape(&retry.waiting),
            retry.attempt,
            retry.attempts,
            escape(&retry.reason),
            escape(&blockers.join("\n")),
        );
    }
    out.push_str("</table>\n");
    out
}
