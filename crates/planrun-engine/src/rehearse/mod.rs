//! `planrun rehearse`: the whole plan on a throwaway copy of the target, first.
//!
//! The target is only read: its identity and row counts in one read-only
//! transaction, then its roles (`pg_dumpall --roles-only`) and `pg_dump -F c`. The
//! roles, then the dump with its owners and privileges, are restored into a database
//! of the same name in a [`TempCluster`] on this machine, the plan is applied there
//! with [`Runner::apply`] as the applying role with its privileges on the target
//! (`rehearsal_roles.rs` says why and how), and the copy is removed (unless kept).
//! The result is a [`RehearsalReport`], written as JSON, which
//! `apply --require-rehearsal` checks with [`check_rehearsal`].

pub(crate) mod budget_estimate;
pub(crate) mod lock_trace;
pub(crate) mod rehearsal_gate;
pub mod rehearsal_roles;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Local;
use planrun_contract::{format, Document, Envelope};
use planrun_plan::{Stage, StepKind};
use planrun_tempdb::{KeptCluster, TempCluster, TempDbError};
use planrun_transform::Progress;
use postgres::Client;
use schemars::JsonSchema;
use serde::Serialize;

use crate::apply::run::Runner;
use crate::checksum::read_sql_file;
use crate::db::backup::{libpq_command, pg_tool};
use crate::db::connect::{redact, Source, Target};
use crate::error::EngineError;
use crate::exit_codes;
use crate::observer::Observer;
use crate::options::ApplyOptions;
use crate::rehearse::rehearsal_roles::{CopyRoles, TargetAccess, COPY_SUPERUSER};
use crate::report::{RunBody, RunOutcome, StageReport, StageStatus};

pub use crate::rehearse::rehearsal_gate::{
    check_rehearsal, now, refusals, EvidenceStage, EvidenceTarget, Refusal, RehearsalEvidence,
    RehearsalRequirement,
};

/// The `format` of a rehearsal report; its `format_version` is
/// [`format::REHEARSAL`]'s, which moves only if a field changes meaning.
pub const FORMAT: &str = format::REHEARSAL.name;

/// What rehearsal reports were called before every document had the common
/// envelope; their fields are the ones [`RehearsalEvidence`] reads, so they are
/// still read.
pub const LEGACY_FORMAT: &str = "planrun-rehearsal/1";

/// Whether a report whose envelope says `format` and `format_version` is one this
/// planrun reads.
pub fn readable_format(format: &str, format_version: Option<u32>) -> bool {
    format == LEGACY_FORMAT
        || (format == FORMAT && format_version == Some(format::REHEARSAL.version))
}

/// How old a rehearsal may be when the plan sets no `max_rehearsal_age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The server log line PostgreSQL writes (with `log_lock_waits = on`) when a session
/// has waited `deadlock_timeout` for a lock.
const LOCK_WAIT_MARK: &str = "still waiting for";

/// Lock-wait lines kept per stage in the report, so it names what waited on what.
const LOCK_WAIT_SAMPLES: usize = 5;

/// How `rehearse` runs.
#[derive(Debug, Clone)]
pub struct RehearseOptions {
    /// Selection as for `apply`; `backup_dir` and `dry_run` are ignored (a rehearsal
    /// takes no backup of its own copy and commits there).
    pub apply: ApplyOptions,
    /// Parallel `pg_restore` jobs.
    pub jobs: usize,
    /// Leave the copy running afterwards.
    pub keep: bool,
}

impl Default for RehearseOptions {
    fn default() -> Self {
        RehearseOptions {
            apply: ApplyOptions::default(),
            jobs: default_jobs(),
            keep: false,
        }
    }
}

/// `min(4, cores)`: beyond a few jobs a restore on one machine is disk-bound.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Why a rehearsal could not run (a rehearsal that ran and failed is a report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RehearseError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot start the throwaway cluster: {0}")]
    Cluster(#[from] TempDbError),
    #[error("cannot copy the target: {0}")]
    Copy(String),
    #[error("cannot write the rehearsal report: {0}")]
    ReportDir(#[from] crate::PrivateDirError),
    #[error("cannot write the rehearsal report {path}: {source}")]
    Report {
        path: String,
        source: std::io::Error,
    },
}

impl RehearseError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RehearseError::Engine(error) => error.exit_code(),
            _ => exit_codes::ERROR,
        }
    }
}

/// What was rehearsed, on what, and how it went; written to
/// `rehearsals/<plan>-<YYYYmmdd_HHMMSS>.json` (fields in `docs/exit-codes.md`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsalReport {
    /// `planrun.rehearsal`, from the rehearsal's start to the report; `outcome` and
    /// `exit_code` are the apply's on the copy, or `over_budget`.
    #[serde(flatten)]
    pub envelope: Envelope,
    pub plan: String,
    pub plan_file: String,
    pub plan_checksum: String,
    /// The target, password redacted.
    pub target: String,
    /// Where the target came from: `--database-url`, `DATABASE_URL` (the
    /// environment), `./.env`, `the PG* variables`, or `planrun's throwaway cluster` (one
    /// planrun made). Absent from documents written before it was added.
    #[serde(default)]
    pub target_source: String,
    pub target_identity: Identity,
    pub copy: CopyInfo,
    /// What the rehearsal could not make safe on this machine, one sentence each;
    /// empty when nothing. Today: an applying role that is a superuser, or a member
    /// of a role that reaches the server's files or programs (`copy.roles`).
    pub warnings: Vec<String>,
    pub selection: Selection,
    pub estimate: Estimate,
    pub stages: Vec<RehearsedStage>,
    /// The full `planrun.apply` document of the apply on the copy.
    pub run: Document<RunBody>,
}

/// A database as the rehearsal saw it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Identity {
    pub server_version: String,
    pub server_version_num: i32,
    pub database: String,
    pub size_bytes: i64,
    /// `count(*)` of every table whose name the plan mentions (`plan_words`).
    pub tables: Vec<TableRows>,
    pub rows_total: i64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

/// The throwaway copy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CopyInfo {
    /// Where the copy ran (gone afterwards unless `kept`).
    pub url: String,
    /// The copy before the plan ran: same tables, counted again.
    pub identity: Identity,
    /// The target's roles in the copy, and the one the plan ran as.
    pub roles: CopyRoles,
    pub pg_dump: String,
    pub pg_restore: String,
    pub dump_bytes: u64,
    pub dump_ms: u64,
    pub restore_ms: u64,
    pub restore_jobs: usize,
    pub kept: Option<Kept>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Kept {
    pub url: String,
    pub stop_command: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Selection {
    pub include_optional: bool,
    pub stages: Vec<String>,
    pub until: Option<String>,
}

/// How the per-stage estimates were made.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Estimate {
    pub model: String,
    /// Target rows / copy rows over the tables the plan names (1.0 when the copy has none).
    pub scale: f64,
}

/// One stage of the rehearsal, with what the engine report does not have.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsedStage {
    pub id: String,
    pub status: StageStatus,
    pub duration_ms: u64,
    pub rows_affected: u64,
    pub rows_quarantined: u64,
    /// `still waiting for` lines the copy's server logged while the stage ran.
    pub lock_waits: u64,
    pub lock_wait_samples: Vec<String>,
    pub verifications_passed: usize,
    pub verifications_failed: usize,
    /// `duration_ms` times the estimate's scale, for stages that ran.
    pub estimated_target_ms: Option<u64>,
    /// What was over the stage's `lock_budget` (the stage's, else the plan's), judged
    /// on the estimates for the target; any makes the rehearsal fail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub over_budget: Vec<String>,
    /// The table locks planrun's session really held during the stage, sampled every
    /// 10 ms (`lock_trace.rs`), with rewrites; the estimates on the target scale the
    /// blocked times like `estimated_target_ms`.
    pub locks: Vec<RehearsedLock>,
    /// The statements planrun's session ran during the stage, as sampled: each with
    /// how long it ran and the table locks first taken while it ran.
    pub statements: Vec<crate::rehearse::lock_trace::MeasuredStatement>,
}

/// A table lock measured on the copy, and its estimate on the target.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsedLock {
    #[serde(flatten)]
    pub measured: crate::rehearse::lock_trace::MeasuredLock,
    pub estimated_blocked_reads_ms: u64,
    pub estimated_blocked_writes_ms: u64,
}

/// A finished rehearsal and, with `keep`, the copy left running.
pub struct Rehearsal {
    pub report: RehearsalReport,
    pub kept: Option<KeptCluster>,
}

/// Rehearses `runner`'s plan on a copy of `target`. `note` hears what is happening
/// before the stages (copying, restoring) for live output.
pub fn rehearse(
    runner: &Runner<'_>,
    target: &Target,
    options: &RehearseOptions,
    observer: &dyn Observer,
    note: &dyn Fn(&str),
) -> Result<Rehearsal, RehearseError> {
    let plan = runner.plan();
    let started = Local::now();
    // Fail on a bad --stage/--until before copying anything.
    runner.selection(&options.apply)?;

    let words = plan_words(plan.stages.iter(), plan.setup_sql_file.as_ref())?;
    let mut source = target.connect(&format!("planrun rehearse {}", plan.name))?;
    let target_identity = identity(&mut source, &words)?;
    let access = TargetAccess::read(&mut source)?;
    drop(source);

    note(&format!(
        "starting a throwaway PostgreSQL for a copy of {} ({})",
        target_identity.database,
        bytes(target_identity.size_bytes.max(0) as u64)
    ));
    // The copy holds production's data: socket-only, so no other local account can
    // connect. Its superuser is planrun's, so the target's roles fit beside it. Lock
    // waits are counted from the server log; 100 ms makes short waits visible.
    let cluster = TempCluster::builder()
        .socket_only()
        .superuser(COPY_SUPERUSER)
        .setting("log_lock_waits", "on")
        .setting("deadlock_timeout", "100ms")
        .start()?;
    let cluster_version: i32 = cluster
        .psql("postgres", "SHOW server_version_num")?
        .trim()
        .parse()
        .map_err(|_| RehearseError::Copy("cannot read the throwaway cluster's version".into()))?;
    // A pg_dump older than the server refuses to dump it; the cluster's own tools
    // match the cluster, so they serve whenever the cluster is at least as new.
    let tool = |name: &str| {
        let own = cluster.bin_dir().join(name);
        if cluster_version / 10_000 >= target_identity.server_version_num / 10_000 && own.is_file()
        {
            own
        } else {
            pg_tool(name)
        }
    };
    let (pg_dump, pg_restore) = (tool("pg_dump"), tool("pg_restore"));

    // Inside the cluster's directory, so the dump goes when the copy goes.
    let cluster_dir = cluster.data_dir().parent().unwrap_or(cluster.data_dir());
    let dump_file = cluster_dir.join("target.dump");
    let roles_file = cluster_dir.join("target-roles.sql");
    note(&format!(
        "copying {} with pg_dumpall --roles-only and pg_dump",
        target
    ));
    let dumping = Instant::now();
    rehearsal_roles::dump_roles(&tool("pg_dumpall"), target, &roles_file)?;
    dump(&pg_dump, target, &dump_file)?;
    let dump_ms = millis(dumping.elapsed());
    let dump_bytes = std::fs::metadata(&dump_file).map_or(0, |m| m.len());

    let database = target_identity.database.clone();
    rehearsal_roles::restore_roles(&tool("psql"), &cluster, &roles_file)?;
    let _ = std::fs::remove_file(&roles_file);
    if database != "postgres" {
        cluster.create_database(&database)?;
    }
    note(&format!(
        "restoring {} into the throwaway cluster (pg_restore -j {})",
        bytes(dump_bytes),
        options.jobs.max(1)
    ));
    let restoring = Instant::now();
    restore(&pg_restore, &cluster, &database, &dump_file, options.jobs)?;
    let restore_ms = millis(restoring.elapsed());
    let _ = std::fs::remove_file(&dump_file);

    let admin = Target::parse(
        &format!("{}?sslmode=disable", cluster.url(&database)),
        Source::Planrun,
    )?;
    let roles = rehearsal_roles::confine(&admin, &database, &access, cluster.os_user())?;
    let copy_url = format!(
        "{}?sslmode=disable",
        cluster.url_as(access.applying_role(), &database)
    );
    let copy = Target::parse(&copy_url, Source::Planrun)?;
    let mut copy_client = copy.connect(&format!("planrun rehearse {}", plan.name))?;
    let copy_identity = identity(&mut copy_client, &words)?;
    drop(copy_client);

    let watch = LockWaitWatch {
        inner: observer,
        log: cluster.log_file().to_path_buf(),
        state: Mutex::new(WatchState::default()),
        // As the copy's superuser, so it sees every session's statements.
        trace: crate::rehearse::lock_trace::LockTrace::start(&admin)?,
    };
    let apply_options = ApplyOptions {
        dry_run: false,
        backup_dir: None,
        ..options.apply.clone()
    };
    let run = runner.apply(&copy, &apply_options, &watch)?;
    let run_document = run.document();
    let (lock_waits, traced) = watch.into_waits();

    let scale = if copy_identity.rows_total > 0 {
        target_identity.rows_total as f64 / copy_identity.rows_total as f64
    } else {
        1.0
    };
    let impact = plan.lock_impact(runner.dag(), runner.registry());
    let stages: Vec<RehearsedStage> = run
        .stages
        .iter()
        .map(|stage| {
            let trace = traced.get(&stage.id).cloned().unwrap_or_default();
            let mut rehearsed = rehearsed_stage(stage, lock_waits.get(&stage.id), trace, scale);
            let budget = plan
                .stages
                .iter()
                .find(|planned| planned.id == stage.id)
                .and_then(|planned| planned.lock_budget.as_ref())
                .or(plan.lock_budget.as_ref());
            if let Some(budget) = budget {
                // A table the plan creates, not filled yet, is no one else's: its
                // locks are not held against the budget.
                let live: Vec<RehearsedLock> = rehearsed
                    .locks
                    .iter()
                    .filter(|lock| {
                        !planrun_plan::is_new_in(&impact, &stage.id, &lock.measured.table)
                    })
                    .cloned()
                    .collect();
                rehearsed.over_budget = over_budget(&live, budget);
            }
            rehearsed
        })
        .collect();

    let over = stages
        .iter()
        .any(|stage: &RehearsedStage| !stage.over_budget.is_empty());
    let outcome = match run.outcome {
        RunOutcome::Success | RunOutcome::NothingToDo if over => RunOutcome::OverBudget,
        outcome => outcome,
    };
    let kept = if options.keep {
        // As the applying role, so a session on the kept copy fires restored code
        // with production's privileges, not the copy's superuser's.
        let url = cluster.url_as(access.applying_role(), &database);
        let kept = cluster.keep();
        Some((url, kept))
    } else {
        drop(cluster);
        None
    };
    let report = RehearsalReport {
        envelope: Envelope::finished_now(
            &format::REHEARSAL,
            outcome.code("rehearse", false),
            started,
        ),
        plan: plan.name.clone(),
        plan_file: plan.path.display().to_string(),
        plan_checksum: runner.plan_checksum(),
        target: target.to_string(),
        target_source: target.source.to_string(),
        target_identity,
        warnings: roles.warnings(),
        copy: CopyInfo {
            url: copy.to_string(),
            identity: copy_identity,
            roles,
            pg_dump: pg_dump.display().to_string(),
            pg_restore: pg_restore.display().to_string(),
            dump_bytes,
            dump_ms,
            restore_ms,
            restore_jobs: options.jobs.max(1),
            kept: kept.as_ref().map(|(url, kept)| Kept {
                url: url.clone(),
                stop_command: kept.stop_command.clone(),
            }),
        },
        selection: Selection {
            include_optional: options.apply.include_optional,
            stages: options.apply.stages.clone(),
            until: options.apply.until.clone(),
        },
        estimate: Estimate {
            model: format!(
                "each stage's rehearsal time x {scale:.3} (rows of the tables the plan names on the target / on the copy); \
                 assumes the target's hardware, settings and load match this machine's"
            ),
            scale,
        },
        stages,
        run: run_document,
    };
    Ok(Rehearsal {
        report,
        kept: kept.map(|(_, kept)| kept),
    })
}

/// `plan` as it appears in a report's file name.
pub(crate) fn file_safe(plan: &str) -> String {
    plan.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `report` to `<dir>/<plan>-<YYYYmmdd_HHMMSS>.json`, a new file readable by
/// its owner alone (it holds captured production values and errors quoting rows),
/// returning the file. Should a report of the same second exist, the name takes the
/// next free second, so the newest report still sorts last.
pub fn write_report(
    report: &RehearsalReport,
    dir: &crate::PrivateDir,
) -> Result<PathBuf, RehearseError> {
    let text = serde_json::to_string_pretty(report).map_err(|error| RehearseError::Report {
        path: dir.path().display().to_string(),
        source: std::io::Error::other(error),
    })? + "\n";
    let now = Local::now();
    for second in 0..60 {
        let stamp = (now + chrono::Duration::seconds(second)).format("%Y%m%d_%H%M%S");
        let name = format!("{}-{stamp}.json", file_safe(&report.plan));
        let file = dir.path().join(&name);
        let mut out = match dir.create_new(&name) {
            Ok(out) => out,
            Err(crate::PrivateDirError::CreateFile { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                continue
            }
            Err(error) => return Err(error.into()),
        };
        return match std::io::Write::write_all(&mut out, text.as_bytes()) {
            Ok(()) => Ok(file),
            Err(source) => {
                dir.remove(&name);
                Err(RehearseError::Report {
                    path: file.display().to_string(),
                    source,
                })
            }
        };
    }
    Err(RehearseError::Report {
        path: dir.path().display().to_string(),
        source: std::io::Error::other("no free report name in the next minute"),
    })
}

/// The budget's breaches by `locks`, one line each.
fn over_budget(locks: &[RehearsedLock], budget: &planrun_plan::LockBudget) -> Vec<String> {
    let mut over = Vec::new();
    for lock in locks {
        let measured = &lock.measured;
        if let (Some(allowed), Some(held)) = (
            budget.strongest,
            planrun_plan::LockMode::parse(&measured.strongest),
        ) {
            if held > allowed && measured.blocked_writes_ms > 0 {
                over.push(format!(
                    "{}: {} is stronger than the budget's {}",
                    measured.table, held, allowed
                ));
            }
        }
        for (what, estimated, limit) in [
            (
                "reads",
                lock.estimated_blocked_reads_ms,
                &budget.blocks_reads,
            ),
            (
                "writes",
                lock.estimated_blocked_writes_ms,
                &budget.blocks_writes,
            ),
        ] {
            if let Some(limit) = limit.as_ref().filter(|limit| estimated > limit.millis()) {
                over.push(format!(
                    "{}: {what} blocked ~{estimated} ms on the target, over the budget's {limit}",
                    measured.table
                ));
            }
        }
    }
    over
}

fn rehearsed_stage(
    stage: &StageReport,
    waits: Option<&LockWaits>,
    trace: crate::rehearse::lock_trace::StageTrace,
    scale: f64,
) -> RehearsedStage {
    let scaled = |ms: u64| (ms as f64 * scale).round() as u64;
    let locks = trace
        .locks
        .into_iter()
        .map(|measured| RehearsedLock {
            estimated_blocked_reads_ms: scaled(measured.blocked_reads_ms),
            estimated_blocked_writes_ms: scaled(measured.blocked_writes_ms),
            measured,
        })
        .collect();
    let ran = matches!(
        stage.status,
        StageStatus::Applied | StageStatus::Failed | StageStatus::Skipped | StageStatus::Blocked
    );
    let passed = stage.verifications.iter().filter(|v| v.passed).count();
    RehearsedStage {
        id: stage.id.clone(),
        status: stage.status,
        duration_ms: stage.duration_ms,
        rows_affected: stage.rows_affected,
        rows_quarantined: stage.rows_quarantined,
        lock_waits: waits.map_or(0, |w| w.count),
        lock_wait_samples: waits.map(|w| w.samples.clone()).unwrap_or_default(),
        verifications_passed: passed,
        verifications_failed: stage.verifications.len() - passed,
        estimated_target_ms: ran.then(|| (stage.duration_ms as f64 * scale).round() as u64),
        over_budget: Vec::new(),
        locks,
        statements: trace.statements,
    }
}

/// Every lowercase word (`[A-Za-z0-9_]+`) of the plan's SQL: steps, SQL files,
/// preconditions, skip rules, captures, verifications, the setup file, and transform
/// params. A table "the plan touches" is one whose name is among them: simple, a
/// little generous, and blind only to tables a transform names in its code alone.
pub fn plan_words<'p>(
    stages: impl Iterator<Item = &'p Stage>,
    setup: Option<&(String, planrun_plan::Span, PathBuf)>,
) -> Result<BTreeSet<String>, EngineError> {
    let mut texts: Vec<String> = Vec::new();
    if let Some((_, _, resolved)) = setup {
        texts.push(read_sql_file(resolved)?);
    }
    for stage in stages {
        for step in &stage.steps {
            match &step.kind {
                StepKind::Sql { sql } => texts.push(sql.clone()),
                StepKind::SqlFile { resolved, .. } => texts.push(read_sql_file(resolved)?),
                StepKind::Transform { params, .. } => texts.push(params.to_string()),
            }
        }
        texts.extend(stage.preconditions.iter().map(|c| c.sql.clone()));
        texts.extend(stage.verify.iter().map(|c| c.sql.clone()));
        texts.extend(stage.skip_if.iter().map(|r| r.sql.clone()));
        texts.extend(stage.captures.iter().map(|c| c.sql.clone()));
    }
    Ok(texts
        .iter()
        .flat_map(|text| text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect())
}

/// Version, name, size and row counts, read in one read-only transaction, with
/// planrun's own search_path for that transaction.
fn identity(client: &mut Client, words: &BTreeSet<String>) -> Result<Identity, EngineError> {
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(EngineError::database(
            "cannot begin a read-only transaction",
        ))?;
    crate::db::trusted_sql::trust_for_transaction(&mut tx).map_err(EngineError::database(
        "cannot set planrun's own search_path",
    ))?;
    let row = tx
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
                    current_database()::text, pg_database_size(current_database())",
            &[],
        )
        .map_err(EngineError::database("cannot read the database's identity"))?;
    let mut identity = Identity {
        server_version: row.get(0),
        server_version_num: row.get(1),
        database: row.get(2),
        size_bytes: row.get(3),
        tables: Vec::new(),
        rows_total: 0,
    };
    // Partitions are counted through their parent; the ledger is planrun's own.
    let tables = tx
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'planrun') \
               AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2",
            &[],
        )
        .map_err(EngineError::database("cannot list the database's tables"))?;
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        if !words.contains(&table.to_ascii_lowercase()) {
            continue;
        }
        let rows: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM {}.{}", ident(&schema), ident(&table)),
                &[],
            )
            .map_err(EngineError::database(format!(
                "cannot count the rows of {schema}.{table}"
            )))?
            .get(0);
        identity.rows_total += rows;
        identity.tables.push(TableRows {
            schema,
            table,
            rows,
        });
    }
    let _ = tx.rollback();
    Ok(identity)
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn dump(pg_dump: &Path, target: &Target, file: &Path) -> Result<(), RehearseError> {
    let output = libpq_command(pg_dump, target)
        .arg("--format=custom")
        .arg("--file")
        .arg(file)
        .output()
        .map_err(|error| {
            RehearseError::Copy(format!(
                "cannot run {}: {error}; install the PostgreSQL client tools or set PG_BIN",
                pg_dump.display()
            ))
        })?;
    if !output.status.success() {
        return Err(RehearseError::Copy(format!(
            "{} failed: {}",
            pg_dump.display(),
            redact(String::from_utf8_lossy(&output.stderr).trim())
        )));
    }
    Ok(())
}

fn restore(
    pg_restore: &Path,
    cluster: &TempCluster,
    database: &str,
    file: &Path,
    jobs: usize,
) -> Result<(), RehearseError> {
    // With owners and privileges: the target's roles are already in the copy.
    let output = rehearsal_roles::copy_tool(pg_restore, cluster)
        .arg("--no-password")
        .arg(format!("--jobs={}", jobs.max(1)))
        // A conninfo string, so that a database name containing `=` stays a name.
        .arg(format!(
            "--dbname=dbname='{}'",
            database.replace('\\', "\\\\").replace('\'', "\\'")
        ))
        .arg(file)
        .output()
        .map_err(|error| {
            RehearseError::Copy(format!("cannot run {}: {error}", pg_restore.display()))
        })?;
    // A copy with errors (a missing extension, say) is not the target: rehearsing on
    // it would prove nothing, so any error stops here.
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        return Err(RehearseError::Copy(format!(
            "{} into the throwaway cluster failed:\n{}",
            pg_restore.display(),
            redact(&tail)
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct LockWaits {
    count: u64,
    samples: Vec<String>,
}

#[derive(Default)]
struct WatchState {
    /// Log length when the running stage started.
    offset: Option<u64>,
    waits: BTreeMap<String, LockWaits>,
}

/// Passes everything on to the caller's observer, and reads the copy's server log
/// between each stage's start and finish.
struct LockWaitWatch<'o> {
    inner: &'o dyn Observer,
    log: PathBuf,
    state: Mutex<WatchState>,
    trace: crate::rehearse::lock_trace::LockTrace,
}

impl LockWaitWatch<'_> {
    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Lock-wait lines written to the log since `offset`.
    fn waits_since(&self, offset: u64) -> LockWaits {
        let mut text = String::new();
        let read = std::fs::File::open(&self.log).and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            text = String::from_utf8_lossy(&bytes).into_owned();
            Ok(())
        });
        let mut waits = LockWaits::default();
        if read.is_err() {
            return waits;
        }
        for line in text.lines().filter(|line| line.contains(LOCK_WAIT_MARK)) {
            waits.count += 1;
            if waits.samples.len() < LOCK_WAIT_SAMPLES {
                waits.samples.push(line.trim().to_owned());
            }
        }
        waits
    }

    /// The lock waits the log showed, and the locks the trace saw, per stage.
    fn into_waits(
        self,
    ) -> (
        BTreeMap<String, LockWaits>,
        BTreeMap<String, crate::rehearse::lock_trace::StageTrace>,
    ) {
        let waits = self
            .state
            .into_inner()
            .map(|state| state.waits)
            .unwrap_or_default();
        (waits, self.trace.finish())
    }
}

impl Observer for LockWaitWatch<'_> {
    fn stage_started(&self, stage: &Stage) {
        self.trace.stage_started(&stage.id);
        let offset = self.log_len();
        if let Ok(mut state) = self.state.lock() {
            state.offset = Some(offset);
        }
        self.inner.stage_started(stage);
    }

    fn statement_finished(&self, statement: &str, elapsed: Duration) {
        self.trace.statement_finished(statement, elapsed);
        self.inner.statement_finished(statement, elapsed);
    }

    fn stage_finished(&self, report: &StageReport) {
        self.trace.stage_finished(&report.id);
        let offset = self
            .state
            .lock()
            .ok()
            .and_then(|mut state| state.offset.take());
        if let Some(offset) = offset {
            let waits = self.waits_since(offset);
            if let Ok(mut state) = self.state.lock() {
                state.waits.insert(report.id.clone(), waits);
            }
        }
        self.inner.stage_finished(report);
    }

    fn backup_taken(&self, file: &Path) {
        self.inner.backup_taken(file);
    }

    fn progress(&self) -> &dyn Progress {
        self.inner.progress()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `12.3 MB`, for messages.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The database name an apply to `target` will use (libpq's default is the user).
pub fn database_name(target: &Target) -> String {
    target.database().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MB");
    }
}
