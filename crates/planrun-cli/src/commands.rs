//! One function per command, dispatched from [`dispatch`].

use std::path::{Path, PathBuf};

use std::time::Duration;

use planrun_contract::{format, Document, Envelope, OutcomeCode};
use planrun_engine::{exit_codes, ApplyOptions, EngineError, ResetOptions, Runner, Target};
use planrun_plan::{
    discover_plan, is_variable_name, render_graph, Dag, GraphFormat, GraphStatus, Operator, Plan,
    StageState, StepKind,
};

use crate::args::{
    ApplyArgs, BackupArgs, CheckArgs, Cli, Command, ConnectionArgs, DbCommandArgs, GraphArgs,
    GraphFormatArg, PlanArg, PlanCommandArgs, ReportFormat, SelectionArgs, StatusArgs,
    TransformsArgs,
};
use crate::documents::{CheckReport, ErrorBody, TransformList};
use crate::live::Live;
use crate::output::{report, use_colour};
use crate::report::{render_run, render_status, Detail, Style};
use planrun_transform::Registry;

/// Runs the parsed command with `registry`'s transforms and returns its exit code.
pub(crate) fn dispatch(cli: Cli, registry: &Registry) -> i32 {
    let style = Style {
        colour: use_colour(cli.global.color),
    };
    let detail = if cli.global.verbose {
        Detail::Verbose
    } else {
        Detail::Summary
    };
    match cli.command {
        Command::Check(args) => check(&args, registry),
        Command::Graph(args) => graph(&args, registry),
        Command::Transforms(args) => transforms(&args, registry),
        Command::Apply(args) => apply(&args, style, detail, registry),
        Command::Plan(args) => preview(&args, style, detail, registry),
        Command::Rehearse(args) => crate::rehearse::run(&args, style, detail, registry),
        Command::Status(args) => status(&args, style, registry),
        Command::Verify(args) => verify(&args, style, detail, registry),
        Command::Revert(args) => crate::revert::run(&args, style, detail, registry),
        Command::Reset(args) => reset(&args, registry),
        Command::Demo(args) => crate::demo::run(&args, style, detail, registry),
        Command::Init(args) => crate::init::run(&args),
        Command::Completions(args) => crate::completions::run(&args),
        Command::Man(args) => crate::man_page::run(&args),
        Command::Help(args) => args.run(),
    }
}

/// Tells the user, on stderr, what a signal does to the run.
pub(crate) fn notify(text: &str) {
    say_err!("\nplanrun: {text}");
}

pub(crate) fn engine_failure(error: EngineError) -> i32 {
    say_err!("error: {error}");
    if let EngineError::Locked { .. } = error {
        say_err!(
            "another `planrun apply` of this plan is running; wait for it, or raise --lock-wait"
        );
    }
    error.exit_code()
}

/// [`engine_failure`], and with `--format json` the failure as a `planrun.error`
/// document on stdout too, so that a script reading stdout sees why there is no report.
pub(crate) fn failure(command: &str, error: EngineError, plan: &Plan, format: ReportFormat) -> i32 {
    let message = error.to_string();
    let code = engine_failure(error);
    if format == ReportFormat::Json {
        print_json(&ErrorBody::new(command, Some(&plan.name), message).document(code));
    }
    code
}

pub(crate) fn options(plan: &Plan, selection: &SelectionArgs, backup: &BackupArgs) -> ApplyOptions {
    ApplyOptions {
        include_optional: selection.include_optional,
        stages: selection.stages.clone(),
        until: selection.until.clone(),
        backup_dir: backup_dir(plan, backup),
        ..ApplyOptions::default()
    }
}

/// Where the backup before the first change goes: `--backup-dir`, the plan's
/// `backup_dir`, else `./backups`; `None` for `--no-backup`.
pub(crate) fn backup_dir(plan: &Plan, backup: &BackupArgs) -> Option<PathBuf> {
    if backup.no_backup {
        return None;
    }
    Some(
        backup
            .backup_dir
            .clone()
            .or_else(|| plan.backup_dir.clone())
            .unwrap_or_else(|| PathBuf::from("backups")),
    )
}

/// The validated plan and the database target, or the exit code of what failed; with
/// `--format json`, a failure is also a `planrun.error` document of `command` on
/// stdout (an invalid plan with its `problems[]`), so that a script reading stdout
/// always gets a document.
pub(crate) fn plan_and_target(
    plan: &PlanArg,
    connection: &ConnectionArgs,
    registry: &Registry,
    command: &str,
    format: ReportFormat,
) -> Result<(Plan, Target), i32> {
    let plan = load_plan(plan, Some(registry), command, format)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let target = Target::resolve(connection.database_url.as_deref(), &cwd)
        .map_err(|error| failure(command, error, &plan, format))?;
    if let Some(warning) = target.warning() {
        say_err!("warning: {warning}");
    }
    Ok((plan, target))
}

/// Prints a run report in `format` (text with `detail`) and returns its exit code.
pub(crate) fn print_run(
    report: &planrun_engine::RunReport,
    format: ReportFormat,
    style: Style,
    detail: Detail,
) -> i32 {
    match format {
        ReportFormat::Json => print_json(&report.document()),
        ReportFormat::Text => say_raw!("{}", render_run(report, style, detail)),
    }
    report.exit_code
}

pub(crate) fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => say!("{text}"),
        Err(error) => say_err!("error: cannot render the report as JSON: {error}"),
    }
}

fn apply(args: &ApplyArgs, style: Style, detail: Detail, registry: &Registry) -> i32 {
    if let Some(fleet) = &args.fleet {
        return apply_fleet(args, fleet, registry);
    }
    let (plan, target) =
        match plan_and_target(&args.plan, &args.connection, registry, "apply", args.format) {
            Ok(pair) => pair,
            Err(code) => return code,
        };
    let runner = match Runner::new(&plan, registry) {
        Ok(runner) => runner,
        Err(error) => return failure("apply", error, &plan, args.format),
    };
    let mut options = options(&plan, &args.selection, &args.backup);
    options.dry_run = args.dry_run;
    options.hold_locks = args.hold_locks;
    options.allow_drift = args.allow_drift;
    options.history = planrun_engine::HistoryAcceptance {
        accept_missing: args.accept_missing,
        renames: args.rename.clone(),
        allow_out_of_order: args.allow_out_of_order,
    };
    options.lock_wait = Duration::from_secs_f64(args.lock_wait.max(0.0));
    if let Some(file) = &args.require_rehearsal {
        if let Err((code, message)) =
            crate::rehearse::require(file, &plan, &runner, &options, &target)
        {
            if args.format == ReportFormat::Json {
                print_json(&ErrorBody::new("apply", Some(&plan.name), message).document(code));
            }
            return code;
        }
    }
    // From here SIGINT and SIGTERM stop the run cleanly instead of killing planrun
    // mid-stage: the running statement is cancelled and its stage rolled back.
    if let Err(error) = planrun_engine::interrupt::install(notify) {
        say_err!("warning: cannot handle SIGINT and SIGTERM ({error}); an interrupt ends planrun at once, and the server rolls back the open stage");
    }
    let html = match crate::html_report::open_requested(
        args.report.as_deref(),
        "apply",
        &plan,
        args.format,
    ) {
        Ok(html) => html,
        Err(code) => return code,
    };
    let live = Live::new(args.format == ReportFormat::Text);
    match runner.apply(&target, &options, &live) {
        Ok(report) => {
            let code = print_run(&report, args.format, style, detail);
            let page = |plan: &Plan, dag: &Dag| planrun_html::run_html(&report, plan, dag);
            crate::html_report::finish(html.as_ref(), &plan, page, code)
        }
        Err(error) => failure("apply", error, &plan, args.format),
    }
}

/// `apply --fleet`: the same options as a single apply, for every target.
fn apply_fleet(args: &ApplyArgs, fleet: &Path, registry: &Registry) -> i32 {
    let plan = match load_plan(&args.plan, Some(registry), "apply", args.format) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let mut options = options(&plan, &args.selection, &args.backup);
    options.dry_run = args.dry_run;
    options.hold_locks = args.hold_locks;
    options.allow_drift = args.allow_drift;
    options.history = planrun_engine::HistoryAcceptance {
        accept_missing: args.accept_missing,
        renames: args.rename.clone(),
        allow_out_of_order: args.allow_out_of_order,
    };
    crate::fleet::apply(args, fleet, options, registry)
}

fn preview(args: &PlanCommandArgs, style: Style, detail: Detail, registry: &Registry) -> i32 {
    if let Some(fleet) = &args.fleet {
        return crate::fleet_plan::plan(args, fleet, registry);
    }
    let (plan, target) =
        match plan_and_target(&args.plan, &args.connection, registry, "plan", args.format) {
            Ok(pair) => pair,
            Err(code) => return code,
        };
    if args.revert {
        let options =
            crate::revert::options(&plan, args.to.as_deref().unwrap_or("start"), &args.backup);
        let result = Runner::new(&plan, registry)
            .and_then(|runner| runner.preview_revert(&target, &options));
        return match result {
            Ok(report) => print_run(&report, args.format, style, detail),
            Err(error) => failure("plan", error, &plan, args.format),
        };
    }
    let result = Runner::new(&plan, registry).and_then(|runner| {
        let mut report = runner.preview(&target, &options(&plan, &args.selection, &args.backup))?;
        report.lock_impact = runner.lock_weight(&target)?;
        report.lock_budget = rehearsed_budget(
            &plan,
            &runner,
            &report.lock_impact,
            args.rehearsal.as_deref(),
        );
        Ok(report)
    });
    match result {
        Ok(report) => print_run(&report, args.format, style, detail),
        Err(error) => failure("plan", error, &plan, args.format),
    }
}

/// The lock estimates of the rehearsal `file` (else the newest in `./rehearsals`)
/// against the plan's budgets; a report that cannot serve is said on stderr.
fn rehearsed_budget(
    plan: &Plan,
    runner: &Runner<'_>,
    weighed: &[planrun_engine::StageLockWeight],
    file: Option<&Path>,
) -> Option<planrun_engine::BudgetEstimate> {
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| planrun_engine::newest_rehearsal(Path::new("rehearsals"), &plan.name))?;
    let impact: Vec<_> = weighed.iter().map(|stage| stage.impact.clone()).collect();
    planrun_engine::budget_estimate(plan, &runner.plan_checksum(), &impact, &file)
        .map_err(|reason| say_err!("warning: lock budgets not weighed: {reason}"))
        .ok()
}

fn status(args: &StatusArgs, style: Style, registry: &Registry) -> i32 {
    if let Some(fleet) = &args.fleet {
        return crate::fleet::status(args, fleet, registry);
    }
    let (plan, target) = match plan_and_target(
        &args.plan,
        &args.connection,
        registry,
        "status",
        args.format,
    ) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let result =
        Runner::new(&plan, registry).and_then(|runner| planrun_engine::status(&runner, &target));
    match result {
        Ok(report) => {
            match args.format {
                ReportFormat::Json => print_json(&Document::new(
                    Envelope::generated_now(&format::STATUS, OutcomeCode::Ok),
                    &report,
                )),
                ReportFormat::Text => say_raw!("{}", render_status(&report, style)),
            }
            exit_codes::SUCCESS
        }
        Err(error) => failure("status", error, &plan, args.format),
    }
}

fn reset(args: &crate::args::ResetArgs, registry: &Registry) -> i32 {
    let started = chrono::Local::now();
    let (plan, target) =
        match plan_and_target(&args.plan, &args.connection, registry, "reset", args.format) {
            Ok(pair) => pair,
            Err(code) => return code,
        };
    let result = Runner::new(&plan, registry)
        .and_then(|runner| runner.reset(&target, &args.stage, &reset_options(args)));
    match result {
        Ok(report) => {
            match args.format {
                ReportFormat::Json => print_json(&Document::new(
                    Envelope::finished_now(&format::RESET, OutcomeCode::Reset, started),
                    &report,
                )),
                ReportFormat::Text => {
                    say!(
                        "reset {} on {} (from {}): the half-done attempt ({} batches, after key {}) is abandoned [run {}]",
                        report.stage,
                        planrun_conninfo::display_target(&report.target),
                        report.target_source,
                        crate::output::count_signed(report.batches),
                        report.last_key.map_or("-".into(), |key| key.to_string()),
                        report.run_id
                    );
                    for line in &report.removed {
                        say!("  {line}");
                    }
                    say!(
                        "  change capture removed ({} recorded changes dropped), checkpoint removed",
                        crate::output::count_signed(report.changes_dropped)
                    );
                    say!("next: `planrun apply` runs the stage again from the start");
                }
            }
            exit_codes::SUCCESS
        }
        Err(error) => failure("reset", error, &plan, args.format),
    }
}

fn reset_options(args: &crate::args::ResetArgs) -> ResetOptions {
    ResetOptions {
        lock_wait: Duration::from_secs_f64(args.lock_wait.max(0.0)),
    }
}

fn verify(args: &DbCommandArgs, style: Style, detail: Detail, registry: &Registry) -> i32 {
    let (plan, target) = match plan_and_target(
        &args.plan,
        &args.connection,
        registry,
        "verify",
        args.format,
    ) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let result = Runner::new(&plan, registry).and_then(|runner| runner.verify(&target));
    match result {
        Ok(report) => print_run(&report, args.format, style, detail),
        Err(error) => failure("verify", error, &plan, args.format),
    }
}

/// Ledger state per stage for `graph --status`; a failure is a `planrun.error`
/// document too when the graph is asked for in JSON.
fn graph_status(
    plan: &Plan,
    connection: &ConnectionArgs,
    registry: &Registry,
    format: ReportFormat,
) -> Result<GraphStatus, i32> {
    let fail = |error| failure("graph", error, plan, format);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let target = Target::resolve(connection.database_url.as_deref(), &cwd).map_err(fail)?;
    if let Some(warning) = target.warning() {
        say_err!("warning: {warning}");
    }
    let runner = Runner::new(plan, registry).map_err(fail)?;
    let report = planrun_engine::status(&runner, &target).map_err(fail)?;
    Ok(report
        .stages
        .into_iter()
        .map(|line| {
            let state = match line.state.as_str() {
                "applied" => StageState::Applied,
                "skipped" => StageState::Skipped,
                "failed" => StageState::Failed,
                "drifted" => StageState::Drifted,
                "partial" => StageState::Partial,
                "reverted" => StageState::Reverted,
                _ => StageState::Pending,
            };
            (line.id, state)
        })
        .collect())
}

/// Loads the plan with every offline check, printing diagnostics on failure.
fn load_checked(arg: &PlanArg, registry: &Registry) -> Result<Plan, i32> {
    load_plan(arg, Some(registry), "check", ReportFormat::Text)
}

/// [`load_checked`] (the structure only, without a `registry`: `graph`); with
/// `--format json` a plan that cannot be found or is invalid is also a
/// `planrun.error` document of `command` on stdout (diagnostics still go to stderr).
pub(crate) fn load_plan(
    arg: &PlanArg,
    registry: Option<&Registry>,
    command: &str,
    format: ReportFormat,
) -> Result<Plan, i32> {
    let json = format == ReportFormat::Json;
    let env = std::env::var("PLANRUN_PLAN").ok();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let path = discover_plan(arg.plan.as_deref(), env.as_deref(), &cwd).map_err(|error| {
        say_err!("error: {error}");
        let code = if error.is_usage() {
            exit_codes::USAGE
        } else {
            exit_codes::ERROR
        };
        if json {
            print_json(&ErrorBody::new(command, None, error.to_string()).document(code));
        }
        code
    })?;
    let operator = operator(arg).map_err(|error| {
        say_err!("error: {error}");
        if json {
            print_json(&ErrorBody::new(command, None, error).document(exit_codes::USAGE));
        }
        exit_codes::USAGE
    })?;
    let loaded = match registry {
        Some(registry) => Plan::load_checked_allowing(&path, registry, &operator),
        None => Plan::load_allowing(&path, &operator),
    };
    loaded.map_err(|errors| {
        let body = json.then(|| ErrorBody::invalid_plan(command, &errors));
        report(errors);
        if let Some(body) = body {
            print_json(&body.document(exit_codes::INVALID_PLAN));
        }
        exit_codes::INVALID_PLAN
    })
}

/// What the operator adds to the plan: `--allow-sql-dir` directories, absolute (a
/// relative one is taken from the working directory, not the plan's; one that does
/// not exist is an error), and `--set NAME=VALUE` variables.
fn operator(arg: &PlanArg) -> Result<Operator, String> {
    let sql_dirs = arg
        .allow_sql_dirs
        .iter()
        .map(|dir| {
            dir.canonicalize()
                .ok()
                .filter(|dir| dir.is_dir())
                .ok_or_else(|| format!("--allow-sql-dir {}: not a directory", dir.display()))
        })
        .collect::<Result<_, _>>()?;
    let variables = arg
        .variables
        .iter()
        .map(|assignment| match assignment.split_once('=') {
            Some((name, value)) if is_variable_name(name) => Ok((name.to_owned(), value.to_owned())),
            _ => Err(format!(
                "--set {assignment}: expected NAME=VALUE, NAME being letters, digits and underscores"
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(Operator {
        sql_dirs,
        variables,
    })
}

/// `check --format json`: the valid plan's `planrun.check` document, or a
/// `planrun.error` with every problem of an invalid one.
fn check_json(arg: &PlanArg, registry: &Registry) -> i32 {
    match load_plan(arg, Some(registry), "check", ReportFormat::Json) {
        Ok(plan) => {
            let dag = Dag::build(&plan).expect("a loaded plan has no cycle");
            print_json(&Document::new(
                Envelope::generated_now(&format::CHECK, OutcomeCode::Valid),
                CheckReport::new(&plan, &dag, registry),
            ));
            exit_codes::SUCCESS
        }
        Err(code) => code,
    }
}

fn check(args: &CheckArgs, registry: &Registry) -> i32 {
    if let Some(path) = args
        .plan
        .plan
        .as_deref()
        .filter(|p| crate::fleet::is_fleet_file(p))
    {
        return crate::fleet::check_fleet(path);
    }
    if let Some(fleet) = &args.fleet {
        let code = crate::fleet::check_fleet(fleet);
        if code != exit_codes::SUCCESS {
            return code;
        }
    }
    if args.format == ReportFormat::Json {
        return check_json(&args.plan, registry);
    }
    let plan = match load_checked(&args.plan, registry) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let dag = Dag::build(&plan).expect("a loaded plan has no cycle");
    say_plan_counts(&plan, &dag);
    say_whole_at_cutover(&plan);
    say_order_and_locks(&plan, &dag, registry);
    say_raw!(
        "{}",
        crate::lock_report::render_lock_impact(&plan.lock_impact(&dag, registry))
    );
    exit_codes::SUCCESS
}

/// `check`'s summary of the plan: its name, then how many stages, steps and checks.
fn say_plan_counts(plan: &Plan, dag: &Dag) {
    let stages = &plan.stages;
    let optional = stages.iter().filter(|stage| stage.optional).count();
    let steps: Vec<_> = stages.iter().flat_map(|stage| &stage.steps).collect();
    let transforms = steps
        .iter()
        .filter(|step| matches!(step.kind, StepKind::Transform { .. }))
        .count();
    let count = |f: fn(&planrun_plan::Stage) -> usize| stages.iter().map(f).sum::<usize>();
    say!("plan {} ({}): valid", plan.name, plan.path.display());
    if let Some(description) = &plan.description {
        say!("  {description}");
    }
    let counted = |n: usize, noun: &str| {
        if n == 1 {
            format!("1 {noun}")
        } else {
            format!("{n} {noun}s")
        }
    };
    say!(
        "  {} ({optional} optional) in {}; {}: {} SQL, {}",
        counted(stages.len(), "stage"),
        counted(dag.levels().len(), "level"),
        counted(steps.len(), "step"),
        steps.len() - transforms,
        counted(transforms, "transform"),
    );
    say!(
        "  {}, {}, {}, {}",
        counted(count(|s| s.preconditions.len()), "precondition"),
        counted(count(|s| s.skip_if.len()), "skip rule"),
        counted(
            count(|s| s.captures.iter().map(|c| c.names.len()).sum()),
            "capture"
        ),
        counted(count(|s| s.verify.len()), "verification"),
    );
}

/// `check`'s note on the batched stages' checks that cannot be made incremental:
/// they run whole under the cutover's locks, a cost that grows with the table.
fn say_whole_at_cutover(plan: &Plan) {
    for whole in plan.whole_at_cutover() {
        say!(
            "  note: stage `{}` (batched): {} after `{}` {} no `per_key_sql`, so {} whole under the cutover's locks: {}",
            whole.stage,
            if whole.checks.len() == 1 { "1 check".to_owned() } else { format!("{} checks", whole.checks.len()) },
            whole.step,
            if whole.checks.len() == 1 { "has" } else { "have" },
            if whole.checks.len() == 1 { "it runs" } else { "they run" },
            whole.checks.join("; ")
        );
    }
}

/// `check`'s order of the stages, and the locks each takes at its start.
fn say_order_and_locks(plan: &Plan, dag: &Dag, registry: &Registry) {
    let stages = &plan.stages;
    let order: Vec<String> = dag
        .order()
        .iter()
        .map(|&index| {
            let stage = &stages[index];
            if stage.optional {
                format!("{} (optional)", stage.id)
            } else {
                stage.id.clone()
            }
        })
        .collect();
    say!("  order: {}", order.join(" -> "));
    let locked: Vec<(&str, Vec<planrun_plan::TableLock>)> = dag
        .order()
        .iter()
        .map(|&index| (stages[index].id.as_str(), stages[index].all_locks(registry)))
        .filter(|(_, locks)| !locks.is_empty())
        .collect();
    say_way_back(plan, dag);
    if !locked.is_empty() {
        say!("  locks, taken at the stage's start and held to its commit:");
        for (id, locks) in locked {
            let locks: Vec<String> = locks
                .iter()
                .map(|lock| format!("{} {} ({})", lock.mode, lock.table, lock.declared_by))
                .collect();
            say!("    {id}: {}", locks.join(", "));
        }
    }
}

/// `check`'s way back: which stages `planrun revert` can undo, and why not the others.
fn say_way_back(plan: &Plan, dag: &Dag) {
    let (mut reversible, mut irreversible) = (Vec::new(), Vec::new());
    for &index in dag.order() {
        let stage = &plan.stages[index];
        match crate::documents::irreversible(stage) {
            None => reversible.push(stage.id.as_str()),
            Some(why) => irreversible.push(format!("{} ({why})", stage.id)),
        }
    }
    let list = |items: &[String]| items.join(", ");
    match (reversible.is_empty(), irreversible.is_empty()) {
        (_, true) => say!("  revert: every stage can be reverted"),
        (true, false) => {
            say!("  revert: no stage can be reverted: none declares [[stage.revert]] steps")
        }
        (false, false) => {
            say!("  revert: can revert {}", reversible.join(", "));
            say!("    cannot revert {}", list(&irreversible));
        }
    }
}

fn graph(args: &GraphArgs, registry: &Registry) -> i32 {
    let json = if args.format == GraphFormatArg::Json {
        ReportFormat::Json
    } else {
        ReportFormat::Text
    };
    let plan = match load_plan(&args.plan, None, "graph", json) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let dag = Dag::build(&plan).expect("a loaded plan has no cycle");
    let status = if args.status {
        match graph_status(&plan, &args.connection, registry, json) {
            Ok(status) => Some(status),
            Err(code) => return code,
        }
    } else {
        None
    };
    if args.format == GraphFormatArg::Svg {
        say_raw!("{}", graph_svg_document(&plan, &dag, status.as_ref()));
        return exit_codes::SUCCESS;
    }
    let format = match args.format {
        GraphFormatArg::Svg | GraphFormatArg::Text => GraphFormat::Text,
        GraphFormatArg::Dot => GraphFormat::Dot,
        GraphFormatArg::Mermaid => GraphFormat::Mermaid,
        GraphFormatArg::Json => GraphFormat::Json,
    };
    say_raw!("{}", render_graph(&plan, &dag, format, status.as_ref()));
    exit_codes::SUCCESS
}

/// `graph --format svg`: a standalone SVG file, stages coloured by `status` if given.
fn graph_svg_document(plan: &Plan, dag: &Dag, status: Option<&GraphStatus>) -> String {
    use planrun_html::{NodeMark, Tone};
    let marks = status
        .into_iter()
        .flatten()
        .map(|(id, state)| {
            let tone = match state {
                StageState::Applied => Tone::Good,
                StageState::Failed | StageState::Drifted => Tone::Bad,
                StageState::Partial => Tone::Warning,
                StageState::Pending | StageState::Skipped | StageState::Reverted => Tone::Neutral,
            };
            let label = state.label().to_owned();
            (id.clone(), NodeMark { label, tone })
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
        planrun_html::graph_svg(plan, dag, &marks)
    )
}

fn transforms(args: &TransformsArgs, registry: &Registry) -> i32 {
    if args.format == ReportFormat::Json {
        print_json(&Document::new(
            Envelope::timeless(&format::TRANSFORMS, OutcomeCode::Ok),
            TransformList::new(registry),
        ));
        return exit_codes::SUCCESS;
    }
    if registry.iter().next().is_none() {
        say!("this planrun binary has no native transforms: its plans can run SQL steps only");
        return exit_codes::SUCCESS;
    }
    let width = registry.iter().map(|t| t.name().len()).max().unwrap_or(0);
    for transform in registry.iter() {
        say!(
            "{:<width$}  v{}  {}",
            transform.name(),
            transform.version(),
            transform.summary()
        );
    }
    exit_codes::SUCCESS
}
