//! The fleet commands: `check` of a fleet file, `apply --fleet` (with its progress
//! view on stderr) and `status --fleet`, rendering what `planrun-fleet` returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use planrun_contract::{format, Document, Envelope, OutcomeCode};
use planrun_engine::{exit_codes, FleetReport, FleetStatus, Runner, TargetRun};
use planrun_fleet::{Eta, Fleet, FleetError, FleetProgress, RolloutOptions, Wave, WaveTally};
use planrun_plan::{Dag, Plan};
use planrun_transform::Registry;

use crate::args::{ApplyArgs, ReportFormat, StatusArgs};
use crate::commands::{load_plan, print_json};
use crate::documents::ErrorBody;
use crate::output::{duration, report};

/// How long a target may stay locked by another process before it counts as failed.
const LOCKED_FOR_AT_MOST: Duration = Duration::from_secs(600);

/// Whether `path` is a fleet file rather than a plan: it has targets and no `[plan]`.
pub(crate) fn is_fleet_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    match text.parse::<toml::Table>() {
        Ok(table) => table.contains_key("target") && !table.contains_key("plan"),
        Err(_) => false,
    }
}

/// Loads the fleet file, printing every problem with its span; the exit code of
/// what failed (10: invalid, like a plan).
pub(crate) fn load_fleet(path: &Path, command: &str, format: ReportFormat) -> Result<Fleet, i32> {
    planrun_fleet::load(path).map_err(|error| {
        let message = error.to_string();
        let code = match error {
            FleetError::Invalid(errors) => {
                report(errors);
                exit_codes::INVALID_PLAN
            }
            other => {
                say_err!("error: {other}");
                exit_codes::ERROR
            }
        };
        if format == ReportFormat::Json {
            print_json(&ErrorBody::new(command, None, message).document(code));
        }
        code
    })
}

/// `planrun check FLEET` or `check PLAN --fleet FLEET`: the fleet file's summary.
pub(crate) fn check_fleet(path: &Path) -> i32 {
    let fleet = match load_fleet(path, "check", ReportFormat::Text) {
        Ok(fleet) => fleet,
        Err(code) => return code,
    };
    say!(
        "fleet {}: {} targets, {} waves, at most {} at once, {} per server",
        path.display(),
        fleet.targets.len(),
        fleet.waves.len(),
        fleet.max_parallel,
        fleet.max_parallel_per_host
    );
    for wave in &fleet.waves {
        let names: Vec<&str> = wave
            .targets
            .iter()
            .map(|&i| fleet.targets[i].name.as_str())
            .collect();
        say!(
            "  wave {}: {} targets: {}",
            wave.name,
            names.len(),
            names.join(", ")
        );
    }
    exit_codes::SUCCESS
}

pub(crate) fn plan_and_fleet(
    plan: &crate::args::PlanArg,
    fleet: &Path,
    registry: &Registry,
    command: &str,
    format: ReportFormat,
) -> Result<(Plan, Fleet), i32> {
    let plan = load_plan(plan, Some(registry), command, format)?;
    let fleet = load_fleet(fleet, command, format)?;
    Ok((plan, fleet))
}

pub(crate) fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// `apply PLAN --fleet FILE`.
pub(crate) fn apply(
    args: &ApplyArgs,
    fleet: &Path,
    options: planrun_engine::ApplyOptions,
    registry: &Registry,
) -> i32 {
    let started = chrono::Local::now();
    let (plan, fleet) = match plan_and_fleet(&args.plan, fleet, registry, "apply", args.format) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return crate::commands::engine_failure(error),
    };
    let targets = planrun_fleet::resolve_targets(&fleet, &cwd());
    if let Err(error) = planrun_engine::interrupt::install(crate::commands::notify) {
        say_err!("warning: cannot handle SIGINT and SIGTERM ({error}); an interrupt ends planrun at once");
    }
    let refused = match &args.require_rehearsal {
        Some(dir) => {
            match crate::fleet_rehearse::refused(dir, &plan, &fleet, &runner, &targets, &options) {
                Ok(refused) => refused,
                Err((code, message)) => {
                    say_err!("error: {message}");
                    if args.format == ReportFormat::Json {
                        print_json(
                            &ErrorBody::new("apply", Some(&plan.name), message).document(code),
                        );
                    }
                    return code;
                }
            }
        }
        None => Default::default(),
    };
    let html = match crate::html_report::open_requested(
        args.report.as_deref(),
        "apply",
        &plan,
        args.format,
    ) {
        Ok(html) => html,
        Err(code) => return code,
    };
    let options = RolloutOptions {
        apply: options,
        locked_for_at_most: LOCKED_FOR_AT_MOST,
        refused,
    };
    let progress = Progress::new();
    let (mut report, code) =
        planrun_fleet::apply_fleet(&fleet, &runner, &targets, &options, &progress);
    report.plan = plan.name.clone();
    match args.format {
        ReportFormat::Json => {
            let outcome = fleet_outcome(&report, code);
            print_json(&Document::new(
                Envelope::finished_now(&format::FLEET_APPLY, outcome, started),
                &report,
            ));
        }
        ReportFormat::Text => say_raw!("{}", render_fleet(&report)),
    }
    let page = |plan: &Plan, dag: &Dag| planrun_html::fleet_html(&report, plan, dag);
    crate::html_report::finish(html.as_ref(), &plan, page, code)
}

fn fleet_outcome(report: &FleetReport, code: i32) -> OutcomeCode {
    let only = |state: &str| report.counts.keys().all(|key| key == state);
    match code {
        exit_codes::SUCCESS if report.dry_run => OutcomeCode::WouldApply,
        exit_codes::SUCCESS if only("nothing_to_do") => OutcomeCode::NothingToDo,
        exit_codes::SUCCESS => OutcomeCode::Applied,
        code => OutcomeCode::of_failure(code),
    }
}

/// The fleet report as text: wave by wave, one line per target, then why it halted.
pub(crate) fn render_fleet(report: &FleetReport) -> String {
    let mut out = format!(
        "fleet {}: plan {}{}\n",
        report.fleet,
        report.plan,
        if report.dry_run {
            " (dry run, rolled back)"
        } else {
            ""
        }
    );
    for wave in &report.waves {
        out.push_str(&format!(
            "wave {} (gate {})\n",
            wave.name,
            wave.gate.replace('_', " ")
        ));
        for run in &wave.targets {
            out.push_str(&target_line(run));
        }
        for failure in &wave.gate_failures {
            out.push_str(&format!("  gate: {failure}\n"));
        }
    }
    if let Some(halted) = &report.halted {
        out.push_str(&format!("halted: {halted}\n"));
        out.push_str("fix what failed and run the same command again: each target's ledger says what it has, so only what is left runs\n");
    }
    out.push_str(&counts_line(&report.counts));
    out
}

/// `targets: 3 applied, 1 failed, ...`: the last line of a fleet's report and plan.
pub(crate) fn counts_line(counts: &BTreeMap<String, usize>) -> String {
    let counts: Vec<String> = counts
        .iter()
        .map(|(state, count)| format!("{count} {}", state.replace('_', " ")))
        .collect();
    format!("targets: {}\n", counts.join(", "))
}

/// A target's line up to its state, in the columns of the fleet's report and plan.
pub(crate) fn target_columns(name: &str, host: &str, state: &str) -> String {
    format!("  {name:<20} {host:<22} {:<14}", state.replace('_', " "))
}

fn target_line(run: &TargetRun) -> String {
    let mut line = target_columns(&run.name, &run.host, &run.state);
    if let Some(id) = run.run_id {
        line.push_str(&format!(" run {id}"));
    }
    if run.state != "not_started" {
        line.push_str(&format!("  {}", duration(run.duration_ms)));
    }
    if run.revisits > 0 {
        line.push_str(&format!(
            "  (locked by another process {} times)",
            run.revisits
        ));
    }
    if let Some(message) = &run.message {
        line.push_str(&format!("\n      {message}"));
    }
    line.push('\n');
    line
}

/// One progress view of the fleet on stderr: a line per wave and per target done,
/// with the wave's counts and the rollout's estimated time left (`eta.rs`; unknown
/// until a target of this run finished).
struct Progress {
    last_eta: Mutex<Eta>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            last_eta: Mutex::new(Eta::Unknown),
        }
    }
}

/// The estimate as the progress view says it.
fn eta_text(eta: Eta) -> String {
    match eta {
        Eta::Unknown => "ETA unknown".to_owned(),
        Eta::Done => "nothing left".to_owned(),
        Eta::Left(left) => format!("ETA {}", duration(left.as_millis() as u64)),
    }
}

impl FleetProgress for Progress {
    fn wave_started(&self, wave: &Wave, targets: usize) {
        let eta = self.last_eta.lock().map(|eta| *eta).unwrap_or_default();
        say_err!("wave {}: {targets} targets, {}", wave.name, eta_text(eta));
    }

    fn target_finished(&self, run: &TargetRun, tally: &WaveTally) {
        if let Ok(mut last) = self.last_eta.lock() {
            *last = tally.eta;
        }
        say_err!(
            "  [{}] {}/{} done, {} running, {} failed, {}: {} {}",
            tally.wave,
            tally.done,
            tally.total,
            tally.running,
            tally.failed,
            eta_text(tally.eta),
            run.name,
            run.state.replace('_', " ")
        );
    }

    fn target_locked_elsewhere(&self, name: &str) {
        say_err!("  {name}: locked by another process; revisited later");
    }

    fn halted(&self, why: &str) {
        say_err!("halted: {why}; the targets already running finished, no other starts");
    }
}

/// `status PLAN --fleet FILE`.
pub(crate) fn status(args: &StatusArgs, fleet: &Path, registry: &Registry) -> i32 {
    let (plan, fleet) = match plan_and_fleet(&args.plan, fleet, registry, "status", args.format) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return crate::commands::engine_failure(error),
    };
    let targets = planrun_fleet::resolve_targets(&fleet, &cwd());
    let status = planrun_fleet::fleet_status(&fleet, &runner, &plan, &targets);
    match args.format {
        ReportFormat::Json => print_json(&Document::new(
            Envelope::generated_now(&format::FLEET_STATUS, OutcomeCode::Ok),
            &status,
        )),
        ReportFormat::Text => say_raw!("{}", render_status(&status)),
    }
    exit_codes::SUCCESS
}

fn render_status(status: &FleetStatus) -> String {
    let mut out = format!("fleet {}: plan {}\n", status.fleet, status.plan);
    for target in &status.targets {
        let stages: Vec<String> = target
            .stages
            .iter()
            .map(|stage| format!("{} {}", stage.id, stage.state))
            .collect();
        out.push_str(&format!(
            "  {:<20} {:<22} {}  {}\n",
            target.name,
            target.host,
            target.fingerprint.as_deref().unwrap_or("-"),
            match &target.error {
                Some(error) => format!("error: {error}"),
                None => format!(
                    "{}; last run {}",
                    stages.join(", "),
                    target.last_run.as_deref().unwrap_or("none")
                ),
            }
        ));
    }
    for group in &status.groups {
        out.push_str(&format!(
            "schema {}: {} targets\n",
            group.fingerprint,
            group.targets.len()
        ));
    }
    if !status.outliers.is_empty() {
        out.push_str(&format!(
            "outliers (not the largest group's schema): {}\n",
            status.outliers.join(", ")
        ));
    }
    out
}
