//! One function per command, dispatched from [`dispatch`].

use std::path::PathBuf;

use planrun_engine::exit_codes;
use planrun_plan::{discover_plan, render_graph, Dag, GraphFormat, Plan, StepKind};

use crate::args::{Cli, Command, GraphArgs, GraphFormatArg, PlanArg};
use crate::output::report;
use crate::registry::default_registry;

pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Graph(args) => graph(&args),
        Command::Transforms => transforms(),
    }
}

/// The plan path from the argument, `$PLANRUN_PLAN` or `./plans`.
fn plan_path(arg: &PlanArg) -> Result<PathBuf, i32> {
    let env = std::env::var("PLANRUN_PLAN").ok();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    discover_plan(arg.plan.as_deref(), env.as_deref(), &cwd).map_err(|error| {
        eprintln!("error: {error}");
        exit_codes::ERROR
    })
}

/// Loads the plan with every offline check, printing diagnostics on failure.
fn load_checked(arg: &PlanArg) -> Result<Plan, i32> {
    let path = plan_path(arg)?;
    Plan::load_checked(&path, &default_registry()).map_err(|errors| {
        report(errors);
        exit_codes::INVALID_PLAN
    })
}

fn check(args: &PlanArg) -> i32 {
    let plan = match load_checked(args) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let dag = Dag::build(&plan).expect("a loaded plan has no cycle");
    let stages = &plan.stages;
    let optional = stages.iter().filter(|stage| stage.optional).count();
    let steps: Vec<_> = stages.iter().flat_map(|stage| &stage.steps).collect();
    let transforms = steps
        .iter()
        .filter(|step| matches!(step.kind, StepKind::Transform { .. }))
        .count();
    let count = |f: fn(&planrun_plan::Stage) -> usize| stages.iter().map(f).sum::<usize>();
    println!("plan {} ({}): valid", plan.name, plan.path.display());
    if let Some(description) = &plan.description {
        println!("  {description}");
    }
    println!(
        "  {} stages ({optional} optional) in {} levels; {} steps: {} SQL, {transforms} transform",
        stages.len(),
        dag.levels().len(),
        steps.len(),
        steps.len() - transforms,
    );
    println!(
        "  {} preconditions, {} skip rules, {} captures, {} verifications",
        count(|s| s.preconditions.len()),
        count(|s| s.skip_if.len()),
        count(|s| s.captures.len()),
        count(|s| s.verify.len()),
    );
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
    println!("  order: {}", order.join(" -> "));
    exit_codes::SUCCESS
}

fn graph(args: &GraphArgs) -> i32 {
    let path = match plan_path(&args.plan) {
        Ok(path) => path,
        Err(code) => return code,
    };
    let plan = match Plan::load(&path) {
        Ok(plan) => plan,
        Err(errors) => {
            report(errors);
            return exit_codes::INVALID_PLAN;
        }
    };
    let dag = Dag::build(&plan).expect("a loaded plan has no cycle");
    let format = match args.format {
        GraphFormatArg::Text => GraphFormat::Text,
        GraphFormatArg::Dot => GraphFormat::Dot,
        GraphFormatArg::Mermaid => GraphFormat::Mermaid,
        GraphFormatArg::Json => GraphFormat::Json,
    };
    print!("{}", render_graph(&plan, &dag, format, None));
    exit_codes::SUCCESS
}

fn transforms() -> i32 {
    let registry = default_registry();
    let width = registry.iter().map(|t| t.name().len()).max().unwrap_or(0);
    for transform in registry.iter() {
        println!(
            "{:<width$}  v{}  {}",
            transform.name(),
            transform.version(),
            transform.summary()
        );
    }
    exit_codes::SUCCESS
}
