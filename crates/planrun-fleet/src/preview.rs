//! `plan --fleet`: what `planrun plan` says of each target (the stages that would
//! run, the drift), grouped by wave. Read-only: every target is previewed at once
//! within the fleet's limits, whatever its wave, since nothing is written.

use std::collections::BTreeMap;

use planrun_engine::{
    exit_codes, ApplyOptions, FleetPlan, RunReport, Runner, StageStatus, TargetPlan, WavePlan,
};

use crate::model::Fleet;
use crate::pool::within_limits;
use crate::resolve::ResolvedTarget;

/// Every target's preview, wave by wave (`plan` left for the caller to name), and the exit code of the whole: 14 when a
/// target drifted, 1 when one could not be previewed, else 0.
pub fn plan_fleet(
    fleet: &Fleet,
    runner: &Runner<'_>,
    targets: &[ResolvedTarget],
    options: &ApplyOptions,
) -> (FleetPlan, i32) {
    let order: Vec<usize> = fleet
        .waves
        .iter()
        .flat_map(|wave| wave.targets.iter().copied())
        .collect();
    let mut previews = within_limits(fleet, targets, &order, |resolved| {
        preview_target(runner, resolved, options)
    })
    .into_iter();
    let waves: Vec<WavePlan> = fleet
        .waves
        .iter()
        .map(|wave| WavePlan {
            name: wave.name.clone(),
            targets: previews.by_ref().take(wave.targets.len()).collect(),
        })
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for target in waves.iter().flat_map(|wave| &wave.targets) {
        *counts.entry(target.state.clone()).or_default() += 1;
    }
    let code = if counts.contains_key("drifted") {
        exit_codes::DRIFT
    } else if counts.contains_key("error") || counts.contains_key("blocked") {
        exit_codes::ERROR
    } else {
        exit_codes::SUCCESS
    };
    let report = FleetPlan {
        plan: String::new(),
        fleet: fleet.path.display().to_string(),
        waves,
        counts,
    };
    (report, code)
}

fn preview_target(
    runner: &Runner<'_>,
    resolved: &ResolvedTarget,
    options: &ApplyOptions,
) -> TargetPlan {
    let mut plan = TargetPlan {
        name: resolved.name.clone(),
        host: resolved.host.clone(),
        state: "error".into(),
        outcome: None,
        would_run: Vec::new(),
        would_skip: Vec::new(),
        drift: Vec::new(),
        message: None,
    };
    let result = match &resolved.target {
        Ok(target) => runner
            .preview(target, options)
            .map_err(|error| error.to_string()),
        Err(reason) => Err(reason.clone()),
    };
    match result {
        Ok(report) => fill(&mut plan, &report),
        Err(message) => plan.message = Some(planrun_engine::redact(&message)),
    }
    plan
}

fn fill(plan: &mut TargetPlan, report: &RunReport) {
    let outcome = report.outcome_code();
    plan.state = match outcome.as_str() {
        "would_apply" => "would_apply",
        "nothing_to_do" => "nothing_to_do",
        "drift" => "drifted",
        _ => "blocked",
    }
    .into();
    plan.outcome = Some(outcome.as_str().to_owned());
    for stage in &report.stages {
        match stage.status {
            StageStatus::WouldRun | StageStatus::Waiting => plan.would_run.push(stage.id.clone()),
            StageStatus::WouldSkip => plan.would_skip.push(stage.id.clone()),
            StageStatus::Drifted => {
                plan.drift
                    .push(format!("{}: {}", stage.id, stage.drift.join("; ")))
            }
            _ => {}
        }
    }
    if plan.state == "blocked" {
        plan.message = report
            .stages
            .iter()
            .find(|stage| matches!(stage.status, StageStatus::Blocked | StageStatus::Failed))
            .map(|stage| match &stage.error {
                Some(error) => format!("stage `{}`: {}", stage.id, error.message),
                None => format!("stage `{}`: {}", stage.id, stage.status.label()),
            });
    }
}
