//! The parts of a stage's section that a rehearsal and an apply share: its checks
//! with their values, its steps with rows and quarantine, where it failed, and the
//! colour of its status.

use std::fmt::Write as _;

use planrun_report::{CheckResult, CheckStatus, StageReport, StageStatus};

use crate::escape::escape;
use crate::graph_svg::Tone;
use crate::units::{count, duration};

/// The colour a stage's status is drawn in.
pub(crate) fn status_tone(status: StageStatus) -> Tone {
    match status {
        StageStatus::Applied
        | StageStatus::AlreadyApplied
        | StageStatus::Verified
        | StageStatus::WouldRun => Tone::Good,
        StageStatus::Failed
        | StageStatus::Blocked
        | StageStatus::Drifted
        | StageStatus::Interrupted => Tone::Bad,
        StageStatus::DriftAccepted | StageStatus::Reset => Tone::Warning,
        _ => Tone::Neutral,
    }
}

pub(crate) fn tone_class(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "good",
        Tone::Neutral => "neutral",
        Tone::Warning => "warning",
        Tone::Bad => "bad",
    }
}

/// A status as a coloured badge.
pub(crate) fn badge(text: &str, tone: Tone) -> String {
    format!(
        "<span class=\"outcome {}\">{}</span>",
        tone_class(tone),
        escape(text)
    )
}

/// Every check of the stage (skip rules, preconditions, verifications) with what it
/// expected and read, and the values its computed captures took.
pub(crate) fn checks(stage: &StageReport) -> String {
    let all: Vec<(&str, &CheckResult)> = [
        ("skip rule", &stage.skip_rules),
        ("precondition", &stage.preconditions),
        ("verification", &stage.verifications),
    ]
    .into_iter()
    .flat_map(|(kind, list)| list.iter().map(move |check| (kind, check)))
    .collect();
    let mut out = String::new();
    if !all.is_empty() {
        out.push_str(
            "<h3>Checks</h3>\n<table class=\"checks\"><tr><th>kind</th><th>check</th><th>result</th>\
             <th>expected</th><th>read</th><th>note</th></tr>\n",
        );
        for (kind, check) in all {
            let (word, tone) = match (kind, check.status) {
                // A skip rule that does not hold is no failure: the stage runs.
                ("skip rule", CheckStatus::Passed) => ("holds: skipped", Tone::Neutral),
                ("skip rule", CheckStatus::Failed) if check.problem.is_none() => {
                    ("does not hold", Tone::Neutral)
                }
                (_, CheckStatus::Passed) => ("passed", Tone::Good),
                (_, CheckStatus::Failed) => ("failed", Tone::Bad),
                (_, status) => (check_word(status), Tone::Neutral),
            };
            let note = check
                .problem
                .as_deref()
                .or(check.message.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                out,
                "<tr><td>{kind}</td><td><code>{}</code></td><td>{}</td><td class=\"sql\">{}</td>\
                 <td class=\"sql\">{}</td><td>{}</td></tr>",
                escape(&check.name),
                badge(word, tone),
                escape(&check.expected),
                escape(&check.actual),
                escape(note),
            );
        }
        out.push_str("</table>\n");
    }
    if !stage.computed.is_empty() {
        out.push_str(
            "<h3>Computed captures</h3>\n<table><tr><th>capture</th><th>value</th></tr>\n",
        );
        for (name, value) in &stage.computed {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"sql\">{}</td></tr>",
                escape(name),
                escape(value.as_deref().unwrap_or("NULL"))
            );
        }
        out.push_str("</table>\n");
    }
    out
}

fn check_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Passed => "passed",
        CheckStatus::Failed => "failed",
        CheckStatus::EvaluatedAfter => "evaluated after",
        CheckStatus::Superseded => "superseded",
        CheckStatus::NotRecheckable => "not recheckable",
    }
}

/// The stage's steps: how long each ran, the rows it changed, read and quarantined.
pub(crate) fn steps(stage: &StageReport) -> String {
    if stage.steps.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3>Steps</h3>\n<table class=\"steps\"><tr><th>step</th><th>kind</th><th class=\"num\">time</th>\
         <th class=\"num\">rows</th><th class=\"num\">read</th><th class=\"num\">quarantined</th><th>notes</th></tr>\n",
    );
    for step in &stage.steps {
        let optional = |n: Option<u64>| n.map_or(String::from("\u{2013}"), count);
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&step.name),
            escape(&step.kind),
            duration(step.duration_ms),
            count(step.rows_affected),
            optional(step.rows_read),
            optional(step.rows_quarantined),
            escape(&step.notes.join("; ")),
        );
    }
    out.push_str("</table>\n");
    out
}

/// Where and why the stage failed, with the statement and what blocked it.
pub(crate) fn error(stage: &StageReport) -> String {
    let Some(error) = &stage.error else {
        return String::new();
    };
    let mut out = format!(
        "<h3>Error</h3>\n<p class=\"bad\">{}</p>\n",
        escape(&error.message)
    );
    let place = [
        error.step.as_deref().map(|step| format!("step {step}")),
        error.file.as_deref().map(str::to_owned),
        error.line.map(|line| format!("line {line}")),
        error
            .sqlstate
            .as_deref()
            .map(|code| format!("SQLSTATE {code}")),
    ];
    let place: Vec<String> = place.into_iter().flatten().collect();
    if !place.is_empty() {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(&place.join(", ")));
    }
    for (label, text) in [("detail", &error.detail), ("hint", &error.hint)] {
        if let Some(text) = text {
            let _ = writeln!(out, "<p class=\"meta\">{label}: {}</p>", escape(text));
        }
    }
    if let Some(statement) = &error.statement {
        let _ = writeln!(out, "<pre class=\"sql\">{}</pre>", escape(statement));
    }
    for blocker in &error.blocked_by {
        let _ = writeln!(
            out,
            "<p class=\"meta\">blocked by {}</p>",
            escape(&blocker.to_string())
        );
    }
    out
}
