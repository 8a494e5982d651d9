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
mod dump_diff;
mod error;
mod estimate;
mod gate;
mod identity;
pub(crate) mod lock_trace;
mod lock_waits;
pub(crate) mod report;
mod report_file;
mod revert_proof;
mod roles;
mod writes;

use chrono::Local;
use planrun_contract::{format, Envelope};
use planrun_report::Command;
use planrun_tempdb::KeptCluster;

use crate::apply::run::Runner;
use crate::db::connect::Target;
use crate::observer::Observer;
use crate::options::ApplyOptions;
use crate::rehearse::copy::Copy;
use crate::rehearse::identity::identity;
use crate::rehearse::lock_waits::LockWaitWatch;
use crate::rehearse::revert_proof::ProofWatch;
use crate::rehearse::roles::TargetAccess;

pub use crate::rehearse::error::RehearseError;
pub use crate::rehearse::gate::{
    check_rehearsal, check_revert_rehearsal, now, refusals, EvidenceRevert, EvidenceRevertStage,
    EvidenceStage, EvidenceTarget, Refusal, RehearsalEvidence, RehearsalRequirement,
    DEFAULT_MAX_AGE,
};
pub use crate::rehearse::identity::plan_words;
pub use crate::rehearse::report::{
    bytes, readable_format, CopyInfo, CopyRoles, Estimate, Identity, Kept, MeasuredLock,
    MeasuredStatement, RehearsalReport, RehearsedLock, RehearsedRevert, RehearsedStage,
    RevertProof, Selection, TableRows, FORMAT, LEGACY_FORMAT,
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
    /// After the apply, revert every stage on the copy and prove it
    /// (`revert_proof.rs`): the report's `revert` section.
    pub revert: bool,
}

impl Default for RehearseOptions {
    fn default() -> Self {
        RehearseOptions {
            apply: ApplyOptions::default(),
            jobs: default_jobs(),
            keep: false,
            revert: false,
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
    let connection = format!("planrun rehearse {}", plan.name);
    let mut source = target.connect(&connection)?;
    let target_identity = identity(&mut source, &words)?;
    let access = TargetAccess::read(&mut source)?;
    drop(source);
    let copy = Copy::make(target, &target_identity, &access, options.jobs, note)?;
    let copy_identity = identity(&mut copy.target.connect(&connection)?, &words)?;

    let watch = LockWaitWatch::start(observer, copy.server_log(), &copy.admin)?;
    let apply_options = ApplyOptions {
        dry_run: false,
        backup_dir: None,
        ..options.apply.clone()
    };
    let proof = options
        .revert
        .then(|| ProofWatch::new(&watch, plan, &copy.target));
    let run = match &proof {
        Some(proof) => runner.apply(&copy.target, &apply_options, proof)?,
        None => runner.apply(&copy.target, &apply_options, &watch)?,
    };
    let applied = proof.map(ProofWatch::finish);
    let observed = watch.finish();
    let revert = applied.map(|applied| applied.prove(runner, &copy.target));

    let scale = estimate::scale(&target_identity, &copy_identity);
    let impact = plan.lock_impact(runner.dag(), runner.registry());
    let stages = estimate::rehearsed_stages(&run.stages, plan, &impact, &observed, scale);
    let outcome = estimate::outcome(run.outcome, &stages, revert.as_ref());
    let warnings = copy.roles.warnings();
    let (copy, kept) = copy.finish(options.keep, copy_identity);
    let report = RehearsalReport {
        envelope: Envelope::finished_now(
            &format::REHEARSAL,
            outcome.code(Command::Rehearse, false),
            started,
        ),
        plan: plan.name.clone(),
        plan_file: plan.path.display().to_string(),
        plan_checksum: runner.plan_checksum(),
        target: target.to_string(),
        target_source: target.source.to_string(),
        target_identity,
        warnings,
        copy,
        selection: Selection {
            include_optional: options.apply.include_optional,
            stages: options.apply.stages.clone(),
            until: options.apply.until.clone(),
        },
        estimate: estimate::model(scale),
        stages,
        run: run.document(),
        revert,
    };
    Ok(Rehearsal { report, kept })
}

/// The database name an apply to `target` will use (libpq's default is the user).
pub fn database_name(target: &Target) -> String {
    target.database().to_owned()
}
