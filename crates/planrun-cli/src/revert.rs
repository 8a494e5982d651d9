//! `planrun revert [PLAN] --to STAGE|start`: the options from the command line, the
//! rehearsal it may require, then the engine's revert, printed as text or as the
//! `planrun.revert` document.

use std::time::Duration;

use planrun_engine::{RevertOptions, Runner};
use planrun_plan::Plan;
use planrun_transform::Registry;

use crate::args::{BackupArgs, ReportFormat, RevertArgs};
use crate::commands::{failure, notify, plan_and_target, print_json, print_run};
use crate::documents::ErrorBody;
use crate::live::Live;
use crate::report::{Detail, Style};

/// The engine's options for a revert (or `plan --revert`) to `to`.
pub(crate) fn options(plan: &Plan, to: &str, backup: &BackupArgs) -> RevertOptions {
    RevertOptions {
        to: (to != "start").then(|| to.to_owned()),
        backup_dir: crate::commands::backup_dir(plan, backup),
        ..RevertOptions::default()
    }
}

pub(crate) fn run(args: &RevertArgs, style: Style, detail: Detail, registry: &Registry) -> i32 {
    let (plan, target) = match plan_and_target(
        &args.plan,
        &args.connection,
        registry,
        "revert",
        args.format,
    ) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return failure("revert", error, &plan, args.format),
    };
    let mut options = options(&plan, &args.to, &args.backup);
    options.dry_run = args.dry_run;
    options.lock_wait = Duration::from_secs_f64(args.lock_wait.max(0.0));
    if let Some(file) = &args.require_rehearsal {
        if let Err((code, message)) =
            crate::rehearse::require_revert(file, &plan, &runner, &options, &target)
        {
            if args.format == ReportFormat::Json {
                print_json(&ErrorBody::new("revert", Some(&plan.name), message).document(code));
            }
            return code;
        }
    }
    // From here SIGINT and SIGTERM stop the revert cleanly: the running statement is
    // cancelled and its stage rolled back, still applied.
    if let Err(error) = planrun_engine::interrupt::install(notify) {
        say_err!("warning: cannot handle SIGINT and SIGTERM ({error}); an interrupt ends planrun at once, and the server rolls back the open stage");
    }
    let live = Live::new(args.format == ReportFormat::Text);
    match runner.revert(&target, &options, &live) {
        Ok(report) => print_run(&report, args.format, style, detail),
        Err(error) => failure("revert", error, &plan, args.format),
    }
}
