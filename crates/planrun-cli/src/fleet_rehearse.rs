//! `rehearse PLAN --fleet FILE` (one rehearsal per schema group, and the fleet's
//! record of them) and the check `apply --fleet --require-rehearsal DIR` makes of
//! each target against that record.

use std::collections::BTreeMap;
use std::path::Path;

use planrun_contract::{format, Document, Envelope, OutcomeCode};
use planrun_engine::{exit_codes, ApplyOptions, FleetRehearsal, Runner};
use planrun_fleet::{Fleet, RehearsalNeed, ResolvedTarget};
use planrun_plan::Plan;
use planrun_transform::Registry;

use crate::args::{RehearseArgs, ReportFormat};
use crate::commands::print_json;
use crate::documents::ErrorBody;
use crate::fleet::{cwd, plan_and_fleet};

/// `rehearse PLAN --fleet FILE`.
pub(crate) fn run(args: &RehearseArgs, fleet: &Path, registry: &Registry) -> i32 {
    let started = chrono::Local::now();
    let (plan, fleet) = match plan_and_fleet(&args.plan, fleet, registry, "rehearse", args.format) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return crate::commands::engine_failure(error),
    };
    let dir = match planrun_engine::PrivateDir::open_or_create(&args.report_dir, "report directory")
    {
        Ok(dir) => dir,
        Err(error) => {
            say_err!("error: {error}");
            if args.format == ReportFormat::Json {
                print_json(
                    &ErrorBody::new("rehearse", Some(&plan.name), error.to_string())
                        .document(exit_codes::ERROR),
                );
            }
            return exit_codes::ERROR;
        }
    };
    let targets = planrun_fleet::resolve_targets(&fleet, &cwd());
    let options = crate::rehearse::rehearse_options(args);
    let note = |line: &str| say_err!("{line}");
    let (record, code) =
        planrun_fleet::rehearse_fleet(&fleet, &runner, &plan, &targets, &options, &dir, &note);
    match args.format {
        ReportFormat::Json => {
            let outcome = match code {
                exit_codes::SUCCESS => OutcomeCode::Ok,
                code => OutcomeCode::of_failure(code),
            };
            print_json(&Document::new(
                Envelope::finished_now(&format::FLEET_REHEARSAL, outcome, started),
                &record,
            ));
        }
        ReportFormat::Text => say_raw!("{}", render(&record, &args.report_dir)),
    }
    code
}

fn render(record: &FleetRehearsal, dir: &Path) -> String {
    let mut out = format!("fleet {}: plan {}\n", record.fleet, record.plan);
    for group in &record.groups {
        out.push_str(&format!(
            "schema {}: {} targets, rehearsed on {}: {}{}\n",
            group.fingerprint,
            group.targets.len(),
            group.representative,
            group.outcome.replace('_', " "),
            group
                .report
                .as_deref()
                .map(|file| format!(", report {}", dir.join(file).display()))
                .unwrap_or_default()
        ));
        if let Some(message) = &group.message {
            out.push_str(&format!("    {message}\n"));
        }
    }
    for target in &record.unreachable {
        out.push_str(&format!("not fingerprinted: {target}\n"));
    }
    out.push_str(&format!(
        "fleet record: {}\n",
        planrun_fleet::record_path(dir, &record.plan).display()
    ));
    out
}

/// The targets `--require-rehearsal DIR` refuses, with why; `Err` (exit 18) when the
/// fleet's record cannot be read, or the exit code of a selection that is not valid.
pub(crate) fn refused(
    dir: &Path,
    plan: &Plan,
    fleet: &Fleet,
    runner: &Runner<'_>,
    targets: &[ResolvedTarget],
    options: &ApplyOptions,
) -> Result<BTreeMap<String, String>, (i32, String)> {
    let stages = runner.selected_stages(options).map_err(|error| {
        let message = error.to_string();
        (crate::commands::engine_failure(error), message)
    })?;
    let checksum = runner.plan_checksum();
    let need = RehearsalNeed {
        dir,
        plan,
        plan_checksum: &checksum,
        stages: &stages,
        max_age: crate::rehearse::max_age(plan),
    };
    let refused = planrun_fleet::refused_targets(fleet, targets, &need)
        .map_err(|message| (exit_codes::REHEARSAL_REQUIRED, message))?;
    for (name, why) in &refused {
        say_err!("{name}: refused by --require-rehearsal: {why}");
    }
    Ok(refused)
}
