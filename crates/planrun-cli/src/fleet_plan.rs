//! `plan PLAN --fleet FILE`: what `plan` says of every target, wave by wave, as
//! text or the `planrun.fleet-plan` document.

use std::path::Path;

use planrun_contract::{format, Document, Envelope, OutcomeCode};
use planrun_engine::{exit_codes, FleetPlan, Runner, TargetPlan};
use planrun_transform::Registry;

use crate::args::{PlanCommandArgs, ReportFormat};
use crate::commands::print_json;
use crate::fleet::{counts_line, cwd, plan_and_fleet, target_columns};

/// `plan PLAN --fleet FILE`.
pub(crate) fn plan(args: &PlanCommandArgs, fleet: &Path, registry: &Registry) -> i32 {
    let started = chrono::Local::now();
    let (plan, fleet) = match plan_and_fleet(&args.plan, fleet, registry, "plan", args.format) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return crate::commands::engine_failure(error),
    };
    let targets = planrun_fleet::resolve_targets(&fleet, &cwd());
    let options = crate::commands::options(&plan, &args.selection, &args.backup);
    let (mut report, code) = planrun_fleet::plan_fleet(&fleet, &runner, &targets, &options);
    report.plan = plan.name.clone();
    match args.format {
        ReportFormat::Json => {
            let outcome = match code {
                exit_codes::SUCCESS if report.counts.contains_key("would_apply") => {
                    OutcomeCode::WouldApply
                }
                exit_codes::SUCCESS => OutcomeCode::NothingToDo,
                code => OutcomeCode::of_failure(code),
            };
            print_json(&Document::new(
                Envelope::finished_now(&format::FLEET_PLAN, outcome, started),
                &report,
            ));
        }
        ReportFormat::Text => say_raw!("{}", render(&report)),
    }
    code
}

fn render(report: &FleetPlan) -> String {
    let mut out = format!(
        "fleet {}: plan {} (nothing written)\n",
        report.fleet, report.plan
    );
    for wave in &report.waves {
        out.push_str(&format!(
            "wave {}: {} targets\n",
            wave.name,
            wave.targets.len()
        ));
        for target in &wave.targets {
            out.push_str(&target_line(target));
        }
    }
    out.push_str(&counts_line(&report.counts));
    out
}

fn target_line(target: &TargetPlan) -> String {
    let mut line = target_columns(&target.name, &target.host, &target.state);
    if !target.would_run.is_empty() {
        line.push_str(&format!(" would run: {}", target.would_run.join(", ")));
    }
    if !target.would_skip.is_empty() {
        line.push_str(&format!("; would skip: {}", target.would_skip.join(", ")));
    }
    for drift in &target.drift {
        line.push_str(&format!("\n      drifted: {drift}"));
    }
    if let Some(message) = &target.message {
        line.push_str(&format!("\n      {message}"));
    }
    line.push('\n');
    line
}
