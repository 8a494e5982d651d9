//! `planrun rehearse` (the plan on a throwaway copy of the target, with a report
//! file) and the `apply --require-rehearsal` gate that reads that file.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use planrun_engine::rehearse::{
    self, check_rehearsal, database_name, RehearsalReport, RehearsalRequirement, RehearseOptions,
    RehearsedStage,
};
use planrun_engine::{exit_codes, ApplyOptions, Runner, StageStatus, Target};
use planrun_plan::{Dag, Plan};
use planrun_transform::Registry;

use crate::args::{RehearseArgs, ReportFormat};
use crate::commands::{engine_failure, plan_and_target, print_json};
use crate::documents::ErrorBody;
use crate::live::Live;
use crate::output::{count, count_signed, duration};
use crate::report::{render_run, Detail, Style};

/// The engine's options for `rehearse` with `args`.
pub(crate) fn rehearse_options(args: &RehearseArgs) -> RehearseOptions {
    RehearseOptions {
        apply: ApplyOptions {
            include_optional: args.selection.include_optional,
            stages: args.selection.stages.clone(),
            until: args.selection.until.clone(),
            ..ApplyOptions::default()
        },
        jobs: args.jobs.unwrap_or_else(rehearse::default_jobs),
        keep: args.keep,
        revert: args.revert,
    }
}

pub(crate) fn run(args: &RehearseArgs, style: Style, detail: Detail, registry: &Registry) -> i32 {
    if let Some(fleet) = &args.fleet {
        return crate::fleet_rehearse::run(args, fleet, registry);
    }
    let (plan, target) = match plan_and_target(
        &args.plan,
        &args.connection,
        registry,
        "rehearse",
        args.format,
    ) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return engine_failure(error),
    };
    let text = args.format == ReportFormat::Text;
    // Refused before the rehearsal rather than after it: a directory another account
    // can read into or write is no place for production values.
    let report_dir =
        planrun_engine::PrivateDir::open_or_create(&args.report_dir, "report directory")
            .map_err(rehearse::RehearseError::from);
    let options = rehearse_options(args);
    let live = Live::new(text);
    let note = |line: &str| {
        if text {
            say_err!("{line}");
        }
    };
    let failed = |error: rehearse::RehearseError| {
        say_err!("error: {error}");
        let code = error.exit_code();
        if !text {
            print_json(
                &ErrorBody::new("rehearse", Some(&plan.name), error.to_string()).document(code),
            );
        }
        code
    };
    let report_dir = match report_dir {
        Ok(dir) => dir,
        Err(error) => return failed(error),
    };
    let html = match crate::html_report::open_requested(
        args.report.as_deref(),
        "rehearse",
        &plan,
        args.format,
    ) {
        Ok(html) => html,
        Err(code) => return code,
    };
    let rehearsal = match rehearse::rehearse(&runner, &target, &options, &live, &note) {
        Ok(rehearsal) => rehearsal,
        Err(error) => return failed(error),
    };
    let report = &rehearsal.report;
    let file = match rehearse::write_report(report, &report_dir) {
        Ok(file) => file,
        Err(error) => return failed(error),
    };
    print_rehearsal(args.format, &rehearsal, &file, style, detail);
    let page = |plan: &Plan, dag: &Dag| planrun_html::rehearsal_html(report, plan, dag);
    crate::html_report::finish(html.as_ref(), &plan, page, report.envelope.exit_code)
}

/// The rehearsal on stdout (a table, or the report as JSON), where its report file is,
/// and how to stop a copy left running.
fn print_rehearsal(
    format: ReportFormat,
    rehearsal: &rehearse::Rehearsal,
    file: &Path,
    style: Style,
    detail: Detail,
) {
    let report = &rehearsal.report;
    match format {
        ReportFormat::Json => {
            print_json(report);
            for warning in &report.warnings {
                say_err!("warning: {warning}");
            }
            say_err!("rehearsal report written to {}", file.display());
        }
        ReportFormat::Text => {
            say_raw!("{}", render_rehearsal(report, file, style, detail));
        }
    }
    if let Some(kept) = &rehearsal.kept {
        if let Some(copy) = &report.copy.kept {
            say_err!("the copy is still running: {}", copy.url);
        }
        say_err!("stop it with: {}", kept.stop_command);
    }
}

/// How old a rehearsal `plan` accepts: its `max_rehearsal_age`, else 7 days.
pub(crate) fn max_age(plan: &Plan) -> Duration {
    plan.max_rehearsal_age
        .as_ref()
        .map_or(rehearse::DEFAULT_MAX_AGE, |age| {
            Duration::from_millis(age.millis())
        })
}

/// Refuses (with the exit code and why, in one line) unless `file` is a passing
/// rehearsal of this plan, of this database, of every stage this apply selects,
/// younger than the plan's `max_rehearsal_age`.
pub(crate) fn require(
    file: &Path,
    plan: &Plan,
    runner: &Runner<'_>,
    options: &ApplyOptions,
    target: &Target,
) -> Result<(), (i32, String)> {
    let max_age = max_age(plan);
    let checksum = runner.plan_checksum();
    let database = database_name(target);
    let stages = match runner.selected_stages(options) {
        Ok(stages) => stages,
        Err(error) => {
            let message = error.to_string();
            return Err((engine_failure(error), message));
        }
    };
    let refusals = check_rehearsal(
        file,
        &RehearsalRequirement {
            plan: &plan.name,
            plan_checksum: &checksum,
            database: &database,
            stages: &stages,
            max_age,
            now: rehearse::now(),
        },
    );
    if refusals.is_empty() {
        return Ok(());
    }
    say_err!(
        "error: apply refused by --require-rehearsal {}; nothing ran",
        file.display()
    );
    for refusal in &refusals {
        say_err!("  - {refusal}");
    }
    say_err!(
        "next: planrun rehearse {}, then planrun apply {} --require-rehearsal <the report it writes>",
        plan.path.display(),
        plan.path.display()
    );
    let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    Err((
        exit_codes::REHEARSAL_REQUIRED,
        format!(
            "apply refused by --require-rehearsal {}; nothing ran: {}",
            file.display(),
            reasons.join("; ")
        ),
    ))
}

/// Refuses (with the exit code and why, in one line) unless `file` is a passing,
/// matching, fresh rehearsal that proved the revert of every stage a revert with
/// `options` may undo.
pub(crate) fn require_revert(
    file: &Path,
    plan: &Plan,
    runner: &Runner<'_>,
    options: &planrun_engine::RevertOptions,
    target: &Target,
) -> Result<(), (i32, String)> {
    let max_age = max_age(plan);
    let checksum = runner.plan_checksum();
    let database = database_name(target);
    let stages = match runner.revert_candidates(options.to.as_deref()) {
        Ok(stages) => stages,
        Err(error) => {
            let message = error.to_string();
            return Err((engine_failure(error), message));
        }
    };
    let need = RehearsalRequirement {
        plan: &plan.name,
        plan_checksum: &checksum,
        database: &database,
        stages: &stages,
        max_age,
        now: rehearse::now(),
    };
    let refusals = rehearse::check_revert_rehearsal(file, &need, &stages);
    if refusals.is_empty() {
        return Ok(());
    }
    say_err!(
        "error: revert refused by --require-rehearsal {}; nothing ran",
        file.display()
    );
    for refusal in &refusals {
        say_err!("  - {refusal}");
    }
    let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    Err((
        exit_codes::REHEARSAL_REQUIRED,
        format!(
            "revert refused by --require-rehearsal {}; nothing ran: {}",
            file.display(),
            reasons.join("; ")
        ),
    ))
}

/// Who the plan ran as in the copy, and what the rehearsal could not make safe.
fn render_roles(report: &RehearsalReport, style: Style) -> String {
    let roles = &report.copy.roles;
    let mut out = format!(
        "roles: {} copied from the target, with owners and privileges; the plan ran as {}{}, as on the target\n",
        count(roles.copied as u64),
        roles.applying_role,
        if roles.superuser { ", a superuser" } else { "" }
    );
    if !roles.demoted.is_empty() {
        let _ = writeln!(
            out,
            "  superusers on the target, not in the copy (what runs as them may fail here only): {}",
            roles.demoted.join(", ")
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "{} {warning}", style.bad("WARNING:"));
    }
    out.push('\n');
    out
}

/// The engine's run table, then what only a rehearsal knows: the copy, lock waits and
/// the estimate on the target.
fn render_rehearsal(report: &RehearsalReport, file: &Path, style: Style, detail: Detail) -> String {
    let mut out = String::new();
    render_rehearsal_title(&mut out, report, style);
    out.push_str(&render_roles(report, style));
    out.push_str(&render_run(&report.run.body.report, style, detail));
    let _ = writeln!(
        out,
        "\n{}",
        style.bold("rehearsal per stage (estimate: the rehearsal's time scaled to the target's rows, same hardware assumed)")
    );
    let id_width = report
        .stages
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "  {:<id_width$}  {:<14}  {:>9}  {:>9}  {:>10}  {:>11}  {:>6}  {:>10}",
        "stage", "status", "time", "rows", "lock waits", "quarantined", "checks", "on target"
    );
    for stage in &report.stages {
        render_rehearsed_stage(&mut out, stage, id_width, style);
    }
    render_revert_proofs(&mut out, report, style);
    render_rehearsal_next(&mut out, report, file);
    out
}

/// What was rehearsed on what: the plan and target, the target's size, and the copy.
fn render_rehearsal_title(out: &mut String, report: &RehearsalReport, style: Style) {
    let identity = &report.target_identity;
    let _ = writeln!(
        out,
        "{}",
        style.bold(&crate::report::target_title(
            &format!("planrun rehearse {}", report.plan),
            &report.target,
            &report.target_source
        ))
    );
    let _ = writeln!(
        out,
        "target: PostgreSQL {}, database {}, {}; {} table{} the plan names, {} rows",
        identity.server_version,
        identity.database,
        rehearse::bytes(identity.size_bytes.max(0) as u64),
        identity.tables.len(),
        if identity.tables.len() == 1 { "" } else { "s" },
        count_signed(identity.rows_total)
    );
    let _ = writeln!(
        out,
        "copy: pg_dump {} ({}), pg_restore -j {} {}, PostgreSQL {}",
        duration(report.copy.dump_ms),
        rehearse::bytes(report.copy.dump_bytes),
        report.copy.restore_jobs,
        duration(report.copy.restore_ms),
        report.copy.identity.server_version
    );
}

/// One stage's line of the rehearsal table, then its lock waits, its locks that
/// blocked writes or rewrote a table, and its breaches of the budget.
fn render_rehearsed_stage(out: &mut String, stage: &RehearsedStage, id_width: usize, style: Style) {
    let status = match stage.status {
        StageStatus::Failed | StageStatus::Blocked | StageStatus::Drifted => {
            style.bad(stage.status.label())
        }
        StageStatus::Applied => style.good(stage.status.label()),
        _ => stage.status.label().to_owned(),
    };
    let checks = stage.verifications_passed + stage.verifications_failed;
    let _ = writeln!(
        out,
        "  {:<id_width$}  {}{}  {:>9}  {:>9}  {:>10}  {:>11}  {:>6}  {:>10}",
        stage.id,
        status,
        " ".repeat(14usize.saturating_sub(stage.status.label().len())),
        stage
            .estimated_target_ms
            .map(|_| duration(stage.duration_ms))
            .unwrap_or_default(),
        count(stage.rows_affected),
        count(stage.lock_waits),
        count(stage.rows_quarantined),
        if checks == 0 {
            String::new()
        } else {
            format!("{}/{checks}", stage.verifications_passed)
        },
        stage.estimated_target_ms.map(duration).unwrap_or_default(),
    );
    for sample in &stage.lock_wait_samples {
        let _ = writeln!(out, "      {}", style.dim(sample));
    }
    render_measured_locks(out, stage, style);
    for line in &stage.over_budget {
        let _ = writeln!(out, "      {} {line}", style.bad("OVER BUDGET:"));
    }
}

/// The locks a stage held that blocked writes or rewrote a table, measured on the copy
/// and estimated on the target.
fn render_measured_locks(out: &mut String, stage: &RehearsedStage, style: Style) {
    for lock in stage
        .locks
        .iter()
        .filter(|lock| lock.measured.blocked_writes_ms > 0 || lock.measured.rewritten)
    {
        let measured = &lock.measured;
        let _ = writeln!(
            out,
            "      lock {} {}: reads blocked {} (target ~{}), writes blocked {} (target ~{}){}",
            measured.strongest,
            measured.table,
            duration(measured.blocked_reads_ms),
            duration(lock.estimated_blocked_reads_ms),
            duration(measured.blocked_writes_ms),
            duration(lock.estimated_blocked_writes_ms),
            if measured.rewritten {
                ", REWRITTEN"
            } else {
                ""
            }
        );
        if let Some(statement) = &measured.taken_by {
            let _ = writeln!(
                out,
                "        {}",
                style.dim(&format!("taken by: {statement}"))
            );
        }
    }
}

/// The most differences shown per stage; the report file has up to 20.
const PROOF_LINES: usize = 5;

/// `rehearse --revert`: each stage's revert, proved or not, with the first
/// differences.
fn render_revert_proofs(out: &mut String, report: &RehearsalReport, style: Style) {
    let Some(revert) = &report.revert else {
        return;
    };
    let _ = writeln!(
        out,
        "\n{}",
        style.bold("revert proved on the copy, per stage (newest first, each alone, after the plan's rehearse_writes)")
    );
    for proof in &revert.stages {
        let verdict = if proof.proved {
            style.good("proved")
        } else {
            style.bad("NOT PROVED")
        };
        let _ = writeln!(out, "  {}  {verdict}", proof.id);
        for line in proof.differences.iter().take(PROOF_LINES) {
            let _ = writeln!(out, "      {line}");
        }
        if proof.differences.len() > PROOF_LINES {
            let _ = writeln!(
                out,
                "      {}",
                style.dim(&format!(
                    "... {} more in the report",
                    proof.differences.len() - PROOF_LINES
                ))
            );
        }
    }
}

/// Where the rehearsal report is, and the command to run next.
fn render_rehearsal_next(out: &mut String, report: &RehearsalReport, file: &Path) {
    let _ = writeln!(out, "\nrehearsal report: {}", file.display());
    if report.envelope.exit_code == exit_codes::SUCCESS {
        let _ = writeln!(
            out,
            "next: planrun apply {} --require-rehearsal {}",
            report.plan_file,
            file.display()
        );
    } else {
        let _ = writeln!(
            out,
            "the rehearsal failed (exit {}); the target was not changed. Fix the plan and rehearse again",
            report.envelope.exit_code
        );
    }
    if report.copy.kept.is_none() {
        let _ = writeln!(out, "the throwaway copy is removed");
    }
}
