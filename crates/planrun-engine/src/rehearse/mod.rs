//! `planrun rehearse`: the whole plan on a throwaway copy of the target, first.
//!
//! The target is only read: its identity and row counts in one read-only
//! transaction, then its roles (`pg_dumpall --roles-only`) and `pg_dump -F c`. The
//! roles, then the dump with its owners and privileges, are restored into a database
//! of the same name in a [`TempCluster`] on this machine, the plan is applied there
//! with [`Runner::apply`] as the applying role with its privileges on the target
//! (`roles.rs` says why and how), and the copy is removed (unless kept).
//! The result is a [`RehearsalReport`], written as JSON, which
//! `apply --require-rehearsal` checks with [`check_rehearsal`].

pub(crate) mod budget_estimate;
mod copy;
mod error;
mod estimate;
mod gate;
mod identity;
pub(crate) mod lock_trace;
mod lock_waits;
pub(crate) mod report;
mod report_file;
mod roles;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Local;
use planrun_contract::{format, Envelope};
use planrun_tempdb::{KeptCluster, TempCluster};

use crate::apply::run::{ApplyOptions, Observer, Runner};
use crate::db::connect::{Source, Target};
use crate::db::pg_tools::pg_tool;
use crate::rehearse::copy::{dump, dump_roles, restore, restore_roles};
use crate::rehearse::estimate::{over_budget, rehearsed_stage};
use crate::rehearse::identity::identity;
use crate::rehearse::lock_trace::LockTrace;
use crate::rehearse::lock_waits::{LockWaitWatch, WatchState};
use crate::rehearse::roles::{TargetAccess, COPY_SUPERUSER};
use crate::report::RunOutcome;

pub use crate::rehearse::error::RehearseError;
pub use crate::rehearse::gate::{
    check_rehearsal, now, refusals, EvidenceStage, EvidenceTarget, Refusal, RehearsalEvidence,
    RehearsalRequirement, DEFAULT_MAX_AGE,
};
pub use crate::rehearse::identity::plan_words;
pub use crate::rehearse::report::{
    readable_format, CopyInfo, CopyRoles, Estimate, Identity, Kept, MeasuredLock,
    MeasuredStatement, RehearsalReport, RehearsedLock, RehearsedStage, Selection, TableRows,
    FORMAT, LEGACY_FORMAT,
};
pub use crate::rehearse::report_file::{newest_rehearsal, write_report};

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
    dump_roles(&tool("pg_dumpall"), target, &roles_file)?;
    dump(&pg_dump, target, &dump_file)?;
    let dump_ms = millis(dumping.elapsed());
    let dump_bytes = std::fs::metadata(&dump_file).map_or(0, |m| m.len());

    let database = target_identity.database.clone();
    restore_roles(&tool("psql"), &cluster, &roles_file)?;
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
    let roles = roles::confine(&admin, &database, &access, cluster.os_user())?;
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
        trace: LockTrace::start(&admin)?,
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
