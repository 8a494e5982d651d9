//! A fleet rollout as a page (`planrun apply PLAN --fleet FILE --report FILE`): the
//! targets by wave, each with its state, how long it took and its wave's limits as
//! measured on it; each wave's gate, what failed it and why the rollout halted; then
//! per target that ran, its own stages (the sections of an apply's page), linked
//! from its row.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use planrun_plan::{Dag, Plan};
use planrun_report::{FleetReport, GateCheck, GateLimits, TargetRun, WaveReport};

use crate::escape::escape;
use crate::graph_svg::{graph_svg, Tone};
use crate::page::{legend, page};
use crate::run_page::{stage_section, summary};
use crate::sections::badge;
use crate::units::duration;

/// The whole HTML document of the rollout `report` of `plan` (whose graph is `dag`).
pub fn fleet_html(report: &FleetReport, plan: &Plan, dag: &Dag) -> String {
    let targets: usize = report.waves.iter().map(|wave| wave.targets.len()).sum();
    let (outcome, tone) = match &report.halted {
        Some(_) => ("halted", Tone::Bad),
        None if report.counts.keys().all(|state| ran_well(state)) => ("applied", Tone::Good),
        None => ("incomplete", Tone::Warning),
    };
    let counts: Vec<String> = report
        .counts
        .iter()
        .map(|(state, count)| format!("{count} {}", state_words(state).0))
        .collect();
    let mut body = format!(
        "<h1>apply --fleet of {} {}</h1>\n<p class=\"meta\">fleet {}{}: {targets} targets in {} waves: {}</p>\n",
        escape(&report.plan),
        badge(outcome, tone),
        escape(&report.fleet),
        if report.dry_run {
            ", dry run (rolled back)"
        } else {
            ""
        },
        report.waves.len(),
        escape(&counts.join(", ")),
    );
    if let Some(halted) = &report.halted {
        let _ = writeln!(
            body,
            "<ul class=\"warnings\"><li>halted: {}; no target started after it. \
             Fix what failed and run the same command again: only what is left runs.</li></ul>",
            escape(halted)
        );
    }
    let _ = writeln!(
        body,
        "<h2>Stages of the plan</h2>\n<div class=\"graph\">{}</div>",
        graph_svg(plan, dag, &BTreeMap::new())
    );
    let mut number = 0;
    for (index, wave) in report.waves.iter().enumerate() {
        body.push_str(&wave_section(index, wave, number));
        number += wave.targets.len();
    }
    let runs = report.waves.iter().flat_map(|wave| &wave.targets);
    for (number, run) in runs.enumerate() {
        body.push_str(&target_section(number, run, plan));
    }
    page(&format!("planrun apply --fleet of {}", report.plan), &body)
}

/// Whether a target in `state` passes its wave's gate by its state.
fn ran_well(state: &str) -> bool {
    matches!(state, "applied" | "nothing_to_do" | "would_apply")
}

/// A target's state in words, and its colour.
fn state_words(state: &str) -> (&str, Tone) {
    match state {
        "applied" => ("applied", Tone::Good),
        "would_apply" => ("would apply", Tone::Good),
        "nothing_to_do" => ("nothing to do", Tone::Good),
        "drifted" => ("drifted", Tone::Warning),
        "not_started" => ("not started", Tone::Neutral),
        "locked" => ("locked by another process", Tone::Bad),
        "refused" => ("refused: no passing rehearsal", Tone::Bad),
        other => (other, Tone::Bad),
    }
}

/// One wave: its gate and limits, a row per target (the first numbered `first`), and
/// what failed the gate.
fn wave_section(index: usize, wave: &WaveReport, first: usize) -> String {
    let gate_tone = match wave.gate.as_str() {
        "passed" => Tone::Good,
        "failed" => Tone::Bad,
        _ => Tone::Neutral,
    };
    let mut out = format!(
        "<section class=\"wave\" id=\"wave-{index}\" data-wave=\"{}\">\n<h2>Wave {} <span class=\"meta\">gate</span> {}</h2>\n\
         <p class=\"meta\">gate: {}</p>\n",
        escape(&wave.name),
        escape(&wave.name),
        badge(&wave.gate.replace('_', " "), gate_tone),
        escape(&limits_words(&wave.limits)),
    );
    out.push_str(
        "<table class=\"targets\"><tr><th>target</th><th>server</th><th>state</th><th class=\"num\">time</th>\
         <th class=\"num\">run</th><th>gate: measured against the limit</th><th>note</th></tr>\n",
    );
    for (offset, run) in wave.targets.iter().enumerate() {
        out.push_str(&target_row(first + offset, run));
    }
    out.push_str("</table>\n");
    if !wave.gate_failures.is_empty() {
        out.push_str("<h3>What failed the gate</h3>\n<ul class=\"over-budget\">\n");
        for failure in &wave.gate_failures {
            let _ = writeln!(out, "<li>{}</li>", escape(failure));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
    out
}

/// What a wave's gate asks, besides every target applied.
fn limits_words(limits: &GateLimits) -> String {
    let mut words = vec!["every target applied (or nothing to do)".to_owned()];
    if let Some(ms) = limits.max_lock_wait_ms {
        words.push(format!(
            "a stage waits at most {} for its locks",
            duration(ms)
        ));
    }
    if let Some(factor) = limits.max_duration_factor {
        words.push(format!(
            "a stage takes at most {factor} x its slowest run on the first wave (never under 1 s)"
        ));
    }
    if let Some(ms) = limits.max_replica_lag_ms {
        words.push(format!(
            "the server's standbys replay at most {} behind",
            duration(ms)
        ));
    }
    words.join("; ")
}

fn target_row(number: usize, run: &TargetRun) -> String {
    let (words, tone) = state_words(&run.state);
    let name = if run.report.is_some() {
        format!(
            "<a href=\"#target-{number}\"><code>{}</code></a>",
            escape(&run.name)
        )
    } else {
        format!("<code>{}</code>", escape(&run.name))
    };
    let mut note = run.message.as_deref().map(escape).unwrap_or_default();
    if run.revisits > 0 {
        let _ = write!(
            note,
            " (found locked by another process {} times, revisited)",
            run.revisits
        );
    }
    let checks: Vec<String> = run.gate_checks.iter().map(check_words).collect();
    format!(
        "<tr data-target=\"{}\" data-state=\"{}\"><td>{name}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td>{}</td><td>{note}</td></tr>\n",
        escape(&run.name),
        escape(&run.state),
        escape(&run.host),
        badge(words, tone),
        if run.state == "not_started" {
            "-".to_owned()
        } else {
            duration(run.duration_ms)
        },
        run.run_id.map_or("-".to_owned(), |id| id.to_string()),
        if checks.is_empty() {
            "-".to_owned()
        } else {
            checks.join("<br>")
        },
    )
}

/// `lock wait 12 ms ≤ 500 ms`, in red when over.
fn check_words(check: &GateCheck) -> String {
    let what = match (check.limit.as_str(), &check.stage) {
        ("max_lock_wait", _) => "lock wait".to_owned(),
        ("max_replica_lag", _) => "standby lag".to_owned(),
        (_, Some(stage)) => format!("<code>{}</code>", escape(stage)),
        (other, None) => escape(other),
    };
    let limit = match check.canary_ms {
        Some(canary) => format!("{} (canary {})", duration(check.limit_ms), duration(canary)),
        None => duration(check.limit_ms),
    };
    let (sign, class) = if check.passed {
        ("\u{2264}", "")
    } else {
        ("&gt;", " class=\"over\"")
    };
    format!(
        "<span{class}>{what} {} {sign} {limit}</span>",
        duration(check.measured_ms)
    )
}

/// The target's own run, stage by stage, when it ran.
fn target_section(number: usize, run: &TargetRun, plan: &Plan) -> String {
    let Some(report) = &run.report else {
        return String::new();
    };
    let (words, tone) = state_words(&run.state);
    let mut out = format!(
        "<section class=\"target\" id=\"target-{number}\" data-target=\"{}\">\n<h2>Target {} {}</h2>\n\
         <p class=\"meta\">server {}, run {}, outcome {}, exit code {}; {}</p>\n",
        escape(&run.name),
        escape(&run.name),
        badge(words, tone),
        escape(&run.host),
        report.run_id.map_or("-".to_owned(), |id| id.to_string()),
        escape(report.outcome_code().as_str()),
        report.exit_code,
        duration(run.duration_ms),
    );
    if let Some(message) = &run.message {
        let _ = writeln!(
            out,
            "<ul class=\"warnings\"><li>{}</li></ul>",
            escape(message)
        );
    }
    let anchor = format!("target-{number}-stage");
    out.push_str(&summary(report, &anchor));
    out.push_str(&legend());
    for (index, stage) in report.stages.iter().enumerate() {
        out.push_str(&stage_section(&format!("{anchor}-{index}"), stage, plan));
    }
    out.push_str("</section>\n");
    out
}
