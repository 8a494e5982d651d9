//! Command-line arguments (clap derive), shared option groups flattened into each
//! command that needs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 done or nothing to do, 1 error, 2 usage, 10 invalid plan, 11 precondition
failed, 12 verification failed, 13 step failed, 14 drift, 15 locked, 16 cannot connect,
17 backup failed, 18 rehearsal required, 19 over budget, 20 revert refused, 21 fleet halted,
22 revert unproved, 130 interrupted. See docs/exit-codes.md.";

/// planrun: declarative, verified PostgreSQL migrations.
///
/// A plan (a TOML file) lists stages: SQL files and transforms, what each depends on,
/// the locks it may take, the checks before it and the verification after it. Each
/// stage commits in one transaction, only when its verification passes, and the ledger
/// in the target database remembers what was applied. SQL files run as psql would run
/// them, `\set`, `:NAME` variables and `COPY ... FROM stdin` rows included.
///
/// Start with `planrun init`, validate offline with `planrun check`, see what would run
/// on the target with `planrun plan`, try it on a copy with `planrun rehearse`, then
/// `planrun apply`; `planrun status` shows the ledger. The target comes from
/// --database-url, else DATABASE_URL (environment or ./.env), else libpq's PG*
/// variables. `planrun demo` shows it all on a throwaway PostgreSQL.
// clap's own `help` command reads every word after it as a command name, so that
// `planrun help --help` would be an error; planrun has its own (`Command::Help`).
#[derive(Debug, Parser)]
#[command(
    name = "planrun",
    version,
    after_help = AFTER_HELP,
    disable_help_subcommand = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalOptions {
    /// When to use colour: auto (terminal and no NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Show every check with its values, each step, the locks held and the captured
    /// values (apply, plan, verify, rehearse, demo); by default, one line per stage
    /// and failures in full.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a plan offline and print a one-screen summary.
    ///
    /// Nothing connects. Reads the plan's keys and types, its stage graph, and each SQL
    /// file as PostgreSQL's parser reads it (psql's variables substituted, COPY rows set
    /// apart, any other psql meta-command refused with its line), then lists the locks
    /// each stage takes and the lock analysis's findings (docs/lock-analysis.md).
    /// Exits 10 when the plan is invalid; findings to review do not fail it.
    Check(CheckArgs),
    /// Show the stage order, dependencies and levels.
    Graph(GraphArgs),
    /// List the native transforms built into this binary.
    Transforms(TransformsArgs),
    /// Run the plan against the database: checks, stages, verification, ledger.
    ///
    /// Takes the plan's advisory lock, refuses drift (an applied stage whose SQL has
    /// changed), backs up with pg_dump before the first change (--no-backup skips it),
    /// then runs each stage not yet applied in its own transaction: locks, skip rules,
    /// preconditions, steps, verification, ledger row. A failure rolls that stage
    /// back and the report says what committed and what to run next.
    Apply(ApplyArgs),
    /// Show what apply would do now, stage by stage, without writing anything.
    ///
    /// Per stage: applied, to run or skipped, and whether its preconditions hold now;
    /// then the lock analysis weighed on the target's tables (size, rows, write rate),
    /// with what only the catalog can decide decided (whether a column's type change
    /// rewrites the table depends on its current type).
    Plan(PlanCommandArgs),
    /// Apply the plan to a throwaway copy of the database first, and report per stage.
    Rehearse(RehearseArgs),
    /// Show the ledger's state of each stage and the recent runs.
    Status(StatusArgs),
    /// Run the verification of every applied stage again, now.
    Verify(DbCommandArgs),
    /// Undo the applied stages after --to STAGE, newest first (--to start: all).
    ///
    /// Each stage's declared [[stage.revert]] runs in its own transaction under the
    /// stage's locks: revert preconditions, captures, steps, then the revert
    /// verifications as the gate before commit, and the ledger records it `reverted`
    /// (a later apply runs it again). Refused before anything changes (exit 20) when a
    /// stage is irreversible or a revert precondition fails (a loss not declared).
    /// Takes the plan's lock and a pg_dump backup before the first change, as apply.
    Revert(RevertArgs),
    /// Abandon a half-done batched stage: undo what it wrote, remove its change capture
    /// and checkpoint, and record it in the ledger.
    Reset(ResetArgs),
    /// Throwaway PostgreSQL, synthetic legacy memoir data, the memoir plan applied and verified.
    Demo(DemoArgs),
    /// Write a commented starter plan, plans/NAME.toml, and its SQL file.
    Init(InitArgs),
    /// Print a shell completion script for planrun.
    Completions(CompletionsArgs),
    /// Print planrun's man page (roff), or write one page per command to a directory.
    Man(ManArgs),
    /// Print this message or the help of the given command.
    Help(HelpArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HelpArgs {
    /// The command to print the help of.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

impl HelpArgs {
    /// Prints what `planrun [COMMAND] --help` prints, with its exit code: 0, or 2 for
    /// a command planrun does not have.
    pub(crate) fn run(&self) -> i32 {
        use clap::error::ErrorKind;
        use planrun_engine::exit_codes;
        let args = std::iter::once("planrun")
            .chain(self.command.as_deref())
            .chain(std::iter::once("--help"));
        match Cli::try_parse_from(args) {
            Ok(_) => exit_codes::SUCCESS,
            Err(error) => {
                let _ = error.print();
                match error.kind() {
                    ErrorKind::DisplayHelp => exit_codes::SUCCESS,
                    _ => exit_codes::USAGE,
                }
            }
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The plan's name: letters, digits, _ and -, starting with a letter. Default: the
    /// current directory's name when it is one, else "migration".
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell, e.g. `planrun completions bash > ~/.local/share/bash-completion/completions/planrun`.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write planrun.1 and one page per command (planrun-apply.1, ...) into DIR instead
    /// of printing planrun.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// PostgreSQL URL or key=value string. Default: DATABASE_URL from the environment
    /// or ./.env, else libpq's PG* variables.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct SelectionArgs {
    /// Also run optional stages.
    #[arg(long)]
    pub include_optional: bool,
    /// Run only this stage and what it depends on (repeatable).
    #[arg(long = "stage", value_name = "ID")]
    pub stages: Vec<String>,
    /// Stop after this stage.
    #[arg(long, value_name = "ID")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// Do not take a pg_dump backup before the first change.
    #[arg(long, conflicts_with = "backup_dir")]
    pub no_backup: bool,
    /// Directory for the backup (default: the plan's backup_dir, else ./backups).
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Run everything inside one transaction and roll it back at the end.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: hold every lock until the final rollback even where that
    /// blocks the application longer than the real run (refused otherwise).
    #[arg(long, requires = "dry_run")]
    pub hold_locks: bool,
    /// Accept applied stages whose definition changed, and record the change.
    #[arg(long)]
    pub allow_drift: bool,
    /// Accept that applied stages are gone from the plan (their changes stay), and
    /// record them as retired.
    #[arg(long)]
    pub accept_missing: bool,
    /// Record that applied stage OLD is now called NEW (same definition), so NEW does
    /// not run again. Repeatable.
    #[arg(long, value_name = "OLD=NEW", value_parser = parse_rename)]
    pub rename: Vec<(String, String)>,
    /// Run pending stages that the plan places before stages already applied.
    #[arg(long)]
    pub allow_out_of_order: bool,
    /// How long to wait for another apply of this plan to release its lock: a
    /// duration as plans write them ("30s", "500ms", "2min") or a number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_lock_wait)]
    pub lock_wait: f64,
    /// Refuse (exit 18) unless FILE is a passing rehearsal of this plan, of this
    /// database, younger than the plan's max_rehearsal_age (default 7 days). With
    /// --fleet, the report directory of `rehearse --fleet`: each target is checked
    /// against its schema group's rehearsal, and one without a passing one refused.
    #[arg(long, value_name = "FILE|DIR")]
    pub require_rehearsal: Option<PathBuf>,
    /// Also write the run as one self-contained HTML page to FILE (0600): the stage
    /// graph, the locks each stage held, checks, rows and quarantine.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Roll the plan out to every database of the fleet file FILE, wave by wave, each
    /// target a full apply of its own (docs/fleet.md); exit 21 when a wave's gate
    /// fails.
    #[arg(long, value_name = "FILE", conflicts_with = "database_url")]
    pub fleet: Option<PathBuf>,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct RehearseArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Directory for the rehearsal report, <plan>-<YYYYmmdd_HHMMSS>.json.
    #[arg(long, value_name = "DIR", default_value = "rehearsals")]
    pub report_dir: PathBuf,
    /// Parallel pg_restore jobs (default: the number of CPUs, at most 4).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Leave the throwaway copy running and print its URL.
    #[arg(long)]
    pub keep: bool,
    /// After the apply, revert every stage on the copy in a session of its own and
    /// compare with the copy before the apply: the report's `revert` section, which
    /// `revert --require-rehearsal` reads.
    #[arg(long)]
    pub revert: bool,
    /// Also write the rehearsal as one self-contained HTML page to FILE (0600): the
    /// stage graph, a lock timeline per stage against its budget, checks, rows,
    /// quarantine and lock waits.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Rehearse the fleet file FILE: one target per schema-fingerprint group, each
    /// report in the report directory with the fleet's record <plan>-fleet.json,
    /// which `apply --fleet --require-rehearsal DIR` reads (docs/fleet.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["database_url", "keep", "report"])]
    pub fleet: Option<PathBuf>,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct PlanCommandArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Rehearsal report whose lock estimates to hold against the plan's lock budgets
    /// (default: the newest rehearsals/<plan>-*.json, if any).
    #[arg(long, value_name = "FILE")]
    pub rehearsal: Option<PathBuf>,
    /// Show what `planrun revert --to STAGE` would do instead: the stages it would
    /// undo, their revert steps, the locks each would hold, its refusals.
    #[arg(long, requires = "to")]
    pub revert: bool,
    /// With --revert: the stage to go back to, or `start`.
    #[arg(long, value_name = "STAGE|start", requires = "revert")]
    pub to: Option<String>,
    /// What `plan` says of every database of the fleet file FILE, wave by wave
    /// (docs/fleet.md): read-only, within the fleet's limits; exit 14 when a target
    /// drifted.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["database_url", "revert"])]
    pub fleet: Option<PathBuf>,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct RevertArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The stage to go back to: every applied stage after it (in the plan's order) is
    /// reverted; `start` reverts every applied stage.
    #[arg(long, value_name = "STAGE|start")]
    pub to: String,
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Run everything inside one transaction and roll it back at the end.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for another apply or revert of this plan to release its lock:
    /// a duration as plans write them ("30s", "500ms", "2min") or a number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_lock_wait)]
    pub lock_wait: f64,
    /// Refuse (exit 18) unless FILE is a fresh, passing rehearsal of this plan and
    /// database whose report proves the revert of every stage this revert undoes.
    #[arg(long, value_name = "FILE")]
    pub require_rehearsal: Option<PathBuf>,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct DbCommandArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Every target of the fleet file FILE: its stages' states and last run, and the
    /// targets grouped by the fingerprint of the schema the plan touches.
    #[arg(long, value_name = "FILE", conflicts_with = "database_url")]
    pub fleet: Option<PathBuf>,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The batched stage to abandon.
    #[arg(value_name = "STAGE")]
    pub stage: String,
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// How long to wait for another apply of this plan to release its lock: a
    /// duration as plans write them ("30s", "500ms", "2min") or a number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_lock_wait)]
    pub lock_wait: f64,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of synthetic legacy chapters.
    #[arg(long, default_value_t = 5_000)]
    pub chapters: usize,
    /// Type of the legacy chapters.images column.
    #[arg(long, value_name = "TYPE", default_value = "jsonb", value_parser = ["jsonb", "json", "text"])]
    pub images_type: String,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leave the throwaway cluster running and print its URL.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Also validate the fleet file FILE (its targets, waves and limits; nothing
    /// connects). `planrun check FILE` of a fleet file validates it alone.
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct TransformsArgs {
    /// Output format: text (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArg {
    /// The plan file. Default: $PLANRUN_PLAN, else the single *.toml in ./plans.
    pub plan: Option<PathBuf>,
    /// Also allow the plan's SQL files in DIR (repeatable). By default they must lie
    /// in the plan file's directory; the plan itself cannot widen that.
    #[arg(long = "allow-sql-dir", value_name = "DIR")]
    pub allow_sql_dirs: Vec<PathBuf>,
    /// Set psql variable NAME to VALUE for the plan's SQL (`:NAME`, `:'NAME'`,
    /// `:"NAME"`), over the plan's [plan.variables]; repeatable, as `psql --set`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub variables: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Output format: text (default), dot, mermaid, json or svg (drawn by planrun,
    /// no Graphviz needed).
    #[arg(long, value_enum, default_value_t = GraphFormatArg::Text)]
    pub format: GraphFormatArg,
    /// Add each stage's state from the ledger (needs a database).
    #[arg(long)]
    pub status: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormatArg {
    Text,
    Dot,
    Mermaid,
    Json,
    Svg,
}

/// `--lock-wait`, in seconds: a plan duration (`planrun_plan::PgDuration`) or a bare
/// number of seconds, as earlier planrun took.
fn parse_lock_wait(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        Ok(_) => Err(format!(
            "`{text}` is not a wait: give a duration such as \"5s\", or a number of seconds, 0 or more"
        )),
        Err(_) => planrun_plan::PgDuration::parse(text).map(|wait| wait.as_duration().as_secs_f64()),
    }
}

/// `OLD=NEW` for `--rename`.
fn parse_rename(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
            Ok((old.trim().to_owned(), new.trim().to_owned()))
        }
        _ => Err(format!(
            "`{text}` is not OLD=NEW, e.g. --rename load_orders=import_orders"
        )),
    }
}
