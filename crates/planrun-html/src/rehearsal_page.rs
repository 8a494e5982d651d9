//! The rehearsal report as a page: what was rehearsed on what, the stage graph, a
//! table of the stages, the way back (`--revert`), then per stage its lock timeline (estimated on the target,
//! against the stage's budget), its locks and statements as measured on the copy,
//! its breaches of the budget, checks, steps, lock waits and error.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use planrun_plan::{Dag, Plan};
use planrun_report::rehearsal::{RehearsalReport, RehearsedStage};
use planrun_report::{StageReport, StageStatus};

use crate::escape::escape;
use crate::graph_svg::{graph_svg, NodeMark, Tone};
use crate::page::{legend, page};
use crate::sections::{self, badge, status_tone};
use crate::timeline::{timeline_svg, LockBar, Timeline};
use crate::units::{bytes, count, duration};

/// The whole HTML document of `report`, a rehearsal of `plan` (whose graph is `dag`).
pub fn rehearsal_html(report: &RehearsalReport, plan: &Plan, dag: &Dag) -> String {
    let mut body = header(report);
    let marks: BTreeMap<String, NodeMark> = report
        .stages
        .iter()
        .map(|stage| (stage.id.clone(), mark(stage)))
        .collect();
    let _ = writeln!(
        body,
        "<h2>Stages</h2>\n<div class=\"graph\">{}</div>",
        graph_svg(plan, dag, &marks)
    );
    body.push_str(&summary(report));
    body.push_str(&way_back(report));
    let run_stages: BTreeMap<&str, &StageReport> = report
        .run
        .body
        .report
        .stages
        .iter()
        .map(|stage| (stage.id.as_str(), stage))
        .collect();
    for (number, stage) in report.stages.iter().enumerate() {
        body.push_str(&stage_section(
            number,
            stage,
            run_stages.get(stage.id.as_str()).copied(),
            plan,
            report.estimate.scale,
        ));
    }
    page(&format!("planrun rehearsal of {}", report.plan), &body)
}

fn mark(stage: &RehearsedStage) -> NodeMark {
    if !stage.over_budget.is_empty() {
        return NodeMark {
            label: format!("{}, over budget", stage.status.label()),
            tone: Tone::Bad,
        };
    }
    NodeMark {
        label: match stage.estimated_target_ms {
            Some(ms) => format!("{}, ~{} on target", stage.status.label(), duration(ms)),
            None => stage.status.label().to_owned(),
        },
        tone: status_tone(stage.status),
    }
}

fn header(report: &RehearsalReport) -> String {
    let envelope = &report.envelope;
    let outcome_tone = if envelope.exit_code == 0 {
        Tone::Good
    } else {
        Tone::Bad
    };
    let identity = &report.target_identity;
    let mut out = format!(
        "<h1>Rehearsal of {} {}</h1>\n\
         <p class=\"meta\">target {} (from {}): PostgreSQL {}, database {}, {}, {} rows in the {} tables the plan names</p>\n\
         <p class=\"meta\">copy: pg_dump {}, pg_restore -j {} {}; applied as {}; times on the target estimated as the copy's \u{00d7} {:.2} ({})</p>\n\
         <p class=\"meta\">started {}, exit code {}</p>\n",
        escape(&report.plan),
        badge(envelope.outcome.as_str(), outcome_tone),
        escape(&planrun_conninfo::display_target(&report.target)),
        escape(&report.target_source),
        escape(&identity.server_version),
        escape(&identity.database),
        bytes(identity.size_bytes.max(0) as u64),
        count(identity.rows_total.max(0) as u64),
        identity.tables.len(),
        duration(report.copy.dump_ms),
        report.copy.restore_jobs,
        duration(report.copy.restore_ms),
        escape(&report.copy.roles.applying_role),
        report.estimate.scale,
        escape(&report.estimate.model),
        escape(envelope.started_at.as_ref().map_or("", |at| at.as_str())),
        envelope.exit_code,
    );
    if !report.warnings.is_empty() {
        out.push_str("<ul class=\"warnings\">\n");
        for warning in &report.warnings {
            let _ = writeln!(out, "<li>{}</li>", escape(warning));
        }
        out.push_str("</ul>\n");
    }
    out
}

/// `rehearse --revert`: per stage whose revert ran on the copy, newest first,
/// whether it was proved exact, and why not.
fn way_back(report: &RehearsalReport) -> String {
    let Some(revert) = &report.revert else {
        return String::new();
    };
    let mut out = String::from(
        "<h2>The way back</h2>\n<p class=\"meta\">each stage's revert run on the copy after the apply, \
         newest first, and compared with the copy as it was before the stage</p>\n\
         <table class=\"reverts\"><tr><th>stage</th><th>revert</th><th>why not proved</th></tr>\n",
    );
    for proof in &revert.stages {
        let (words, tone) = if proof.proved {
            ("proved", Tone::Good)
        } else {
            ("not proved", Tone::Bad)
        };
        let _ = writeln!(
            out,
            "<tr data-revert=\"{}\"><td><code>{}</code></td><td>{}</td><td class=\"sql\">{}</td></tr>",
            escape(&proof.id),
            escape(&proof.id),
            badge(words, tone),
            escape(&proof.differences.join("\n")),
        );
    }
    out.push_str("</table>\n");
    out
}

fn summary(report: &RehearsalReport) -> String {
    let mut out = String::from(
        "<table class=\"stages\"><tr><th>stage</th><th>status</th><th class=\"num\">on the copy</th>\
         <th class=\"num\">on the target (est.)</th><th class=\"num\">rows</th><th class=\"num\">quarantined</th>\
         <th class=\"num\">lock waits</th><th class=\"num\">checks</th><th>budget</th></tr>\n",
    );
    for (number, stage) in report.stages.iter().enumerate() {
        let budget = if stage.over_budget.is_empty() {
            badge("within", Tone::Good)
        } else {
            badge("over", Tone::Bad)
        };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#stage-{number}\"><code>{}</code></a></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}/{}</td><td>{budget}</td></tr>",
            escape(&stage.id),
            badge(stage.status.label(), status_tone(stage.status)),
            duration(stage.duration_ms),
            stage.estimated_target_ms.map_or(String::from("\u{2013}"), duration),
            count(stage.rows_affected),
            count(stage.rows_quarantined),
            count(stage.lock_waits),
            stage.verifications_passed,
            stage.verifications_passed + stage.verifications_failed,
        );
    }
    out.push_str("</table>\n");
    out.push_str(&legend());
    out
}

fn stage_section(
    number: usize,
    stage: &RehearsedStage,
    run: Option<&StageReport>,
    plan: &Plan,
    scale: f64,
) -> String {
    let planned = plan.stages.iter().find(|planned| planned.id == stage.id);
    let title = planned.and_then(|planned| planned.title.as_deref());
    let mut out = format!(
        "<section class=\"stage\" id=\"stage-{number}\" data-stage=\"{}\">\n<h2>{} {}</h2>\n",
        escape(&stage.id),
        escape(&stage.id),
        badge(stage.status.label(), status_tone(stage.status)),
    );
    if let Some(title) = title {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(title));
    }
    let _ = writeln!(
        out,
        "<p class=\"meta\">ran {} on the copy, about {} on the target; {} rows, {} quarantined</p>",
        duration(stage.duration_ms),
        duration(stage.estimated_target_ms.unwrap_or(stage.duration_ms)),
        count(stage.rows_affected),
        count(stage.rows_quarantined),
    );
    let ran = matches!(
        stage.status,
        StageStatus::Applied
            | StageStatus::Failed
            | StageStatus::Interrupted
            | StageStatus::Blocked
    );
    if !ran && stage.locks.is_empty() {
        out.push_str(&checks_and_steps(run));
        out.push_str("</section>\n");
        return out;
    }
    let timeline = Timeline {
        stage: &stage.id,
        stage_ms: stage.estimated_target_ms.unwrap_or(stage.duration_ms),
        locks: lock_bars(stage),
        budget: planned.and_then(|planned| plan.lock_budget_of(planned)),
    };
    let _ = writeln!(
        out,
        "<h3>Locks on the target (estimated: the copy's times \u{00d7} {scale:.2})</h3>\n<div class=\"timeline-box\">{}</div>",
        timeline_svg(&timeline)
    );
    out.push_str(&over_budget(stage));
    out.push_str(&measured_locks(stage));
    out.push_str(&statements(stage));
    out.push_str(&waits(stage));
    out.push_str(&checks_and_steps(run));
    out.push_str("</section>\n");
    out
}

/// What the apply on the copy reported of the stage: checks, steps, error.
fn checks_and_steps(run: Option<&StageReport>) -> String {
    run.map_or(String::new(), |run| {
        sections::checks(run) + &sections::steps(run) + &sections::error(run)
    })
}

fn lock_bars(stage: &RehearsedStage) -> Vec<LockBar> {
    stage
        .locks
        .iter()
        .map(|lock| LockBar {
            table: lock.measured.table.clone(),
            mode: lock.measured.strongest.clone(),
            reads_ms: lock.estimated_blocked_reads_ms,
            writes_ms: lock.estimated_blocked_writes_ms,
            rewritten: lock.measured.rewritten,
            statement: lock.measured.taken_by.clone(),
        })
        .collect()
}

fn over_budget(stage: &RehearsedStage) -> String {
    if stage.over_budget.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Over the lock budget</h3>\n<ul class=\"over-budget\">\n");
    for breach in &stage.over_budget {
        let _ = writeln!(out, "<li>{}</li>", escape(breach));
    }
    out.push_str("</ul>\n");
    out
}

fn measured_locks(stage: &RehearsedStage) -> String {
    if stage.locks.is_empty() {
        return String::from("<p class=\"meta\">no table lock was seen during this stage</p>\n");
    }
    let mut out = String::from(
        "<table class=\"locks\"><tr><th>table</th><th>strongest lock</th><th class=\"num\">blocked reads (copy / target)</th>\
         <th class=\"num\">blocked writes (copy / target)</th><th>rewritten</th><th>taken by</th></tr>\n",
    );
    for lock in &stage.locks {
        let measured = &lock.measured;
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{} / {}</td>\
             <td>{}</td><td class=\"sql\">{}</td></tr>",
            escape(&measured.table),
            escape(&measured.strongest),
            duration(measured.blocked_reads_ms),
            duration(lock.estimated_blocked_reads_ms),
            duration(measured.blocked_writes_ms),
            duration(lock.estimated_blocked_writes_ms),
            if measured.rewritten { "\u{27f3} yes" } else { "no" },
            escape(measured.taken_by.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>\n");
    out
}

fn statements(stage: &RehearsedStage) -> String {
    if stage.statements.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3>Statements seen running</h3>\n<table class=\"statements\"><tr><th>statement</th><th class=\"num\">running</th>\
         <th class=\"num\">executions</th><th>locks first taken</th></tr>\n",
    );
    for statement in &stage.statements {
        let _ = writeln!(
            out,
            "<tr><td class=\"sql\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&statement.statement),
            duration(statement.running_ms),
            count(statement.executions),
            escape(&statement.locks_taken.join(", ")),
        );
    }
    out.push_str("</table>\n");
    out
}

fn waits(stage: &RehearsedStage) -> String {
    if stage.lock_waits == 0 {
        return String::new();
    }
    let mut out = format!(
        "<h3>Lock waits</h3>\n<p class=\"meta\">the copy's server logged {} wait{} of a deadlock_timeout or longer; the first:</p>\n<ul>\n",
        count(stage.lock_waits),
        if stage.lock_waits == 1 { "" } else { "s" }
    );
    for sample in &stage.lock_wait_samples {
        let _ = writeln!(out, "<li class=\"sql\">{}</li>", escape(sample));
    }
    out.push_str("</ul>\n");
    out
}
