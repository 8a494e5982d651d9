//! Command-line arguments (clap derive), shared option groups flattened into each
//! command that needs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 done or nothing to do, 1 error, 2 usage, 10 invalid plan, 11 precondition
failed, 12 verification failed, 13 step failed, 14 drift, 15 locked, 16 cannot connect,
17 backup failed, 18 rehearsal required. See docs/exit-codes.md.";

/// planrun: declarative, verified PostgreSQL migrations.
#[derive(Debug, Parser)]
#[command(name = "planrun", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// When to use colour: auto (terminal and no NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a plan offline and print a one-screen summary.
    Check(PlanArg),
    /// Show the stage order, dependencies and levels.
    Graph(GraphArgs),
    /// List the native transforms built into this binary.
    Transforms,
}

#[derive(Debug, Args)]
pub struct PlanArg {
    /// The plan file. Default: $PLANRUN_PLAN, else the single *.toml in ./plans.
    pub plan: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormatArg::Text)]
    pub format: GraphFormatArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormatArg {
    Text,
    Dot,
    Mermaid,
    Json,
}
