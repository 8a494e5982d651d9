//! One target's full single-database apply (`Runner::apply`: its own plan lock,
//! ledger, backup, budgets and checks), and what the fleet keeps of its report.

use std::path::Path;
use std::time::{Duration, Instant};

use planrun_engine::{
    ApplyOptions, EngineError, RunOutcome, RunReport, Runner, Silent, StageStatus, TargetRun,
};

use crate::resolve::ResolvedTarget;

/// How one attempt at a target ended.
pub(crate) enum Attempt {
    Done(Box<TargetRun>),
    /// Another process holds the target's plan lock: look again later.
    LockedElsewhere,
}

/// Applies the plan to `resolved`, not waiting for its plan lock: a target another
/// planrun holds is [`Attempt::LockedElsewhere`], for the queue to revisit.
pub(crate) fn apply_target(
    runner: &Runner<'_>,
    resolved: &ResolvedTarget,
    options: &ApplyOptions,
) -> Attempt {
    let started = Instant::now();
    let target = match &resolved.target {
        Ok(target) => target,
        Err(reason) => {
            return Attempt::Done(Box::new(error_run(resolved, reason.clone(), started)))
        }
    };
    let mut options = options.clone();
    options.lock_wait = Duration::ZERO;
    // Two targets may have databases of the same name; their backups must not meet.
    options.backup_dir = options
        .backup_dir
        .as_deref()
        .map(|dir: &Path| dir.join(&resolved.name));
    match runner.apply(target, &options, &Silent) {
        Ok(report) => Attempt::Done(Box::new(from_report(resolved, report, started))),
        Err(EngineError::Locked { .. }) => Attempt::LockedElsewhere,
        Err(EngineError::Interrupted(message)) => {
            let mut run = error_run(resolved, message, started);
            run.state = "interrupted".into();
            Attempt::Done(Box::new(run))
        }
        Err(error) => Attempt::Done(Box::new(error_run(resolved, error.to_string(), started))),
    }
}

/// A target that was never started (its wave did not come, or the rollout halted).
pub(crate) fn not_started(resolved: &ResolvedTarget) -> TargetRun {
    let mut run = error_run(resolved, String::new(), Instant::now());
    run.state = "not_started".into();
    run.message = None;
    run
}

/// The worst standby's replay lag (ms) on `resolved`'s server now, from its
/// `pg_stat_replication` (the same reading as the online stages' throttle);
/// `Ok(None)` when no standby reports one.
pub(crate) fn replica_lag(resolved: &ResolvedTarget) -> Result<Option<u64>, String> {
    let target = resolved.target.as_ref().map_err(Clone::clone)?;
    let mut client = target
        .connect("planrun apply --fleet: replica lag")
        .map_err(|error| error.to_string())?;
    let row = client
        .query_one(
            "SELECT (max(extract(epoch FROM replay_lag)) * 1000)::float8 \
             FROM pg_catalog.pg_stat_replication",
            &[],
        )
        .map_err(|error| format!("cannot read pg_stat_replication: {error}"))?;
    Ok(row.get::<_, Option<f64>>(0).map(|lag| lag.max(0.0) as u64))
}

/// A target `--require-rehearsal` refused: untouched.
pub(crate) fn refused(resolved: &ResolvedTarget, why: &str) -> TargetRun {
    let mut run = error_run(resolved, why.to_owned(), Instant::now());
    run.state = "refused".into();
    run.exit_code = Some(planrun_engine::exit_codes::REHEARSAL_REQUIRED);
    run
}

fn error_run(resolved: &ResolvedTarget, message: String, started: Instant) -> TargetRun {
    TargetRun {
        name: resolved.name.clone(),
        host: resolved.host.clone(),
        state: "error".into(),
        outcome: None,
        exit_code: None,
        run_id: None,
        duration_ms: started.elapsed().as_millis() as u64,
        revisits: 0,
        message: Some(planrun_engine::redact(&message)),
        stage_durations_ms: Default::default(),
        longest_lock_wait_ms: 0,
        replica_lag_ms: None,
        gate_checks: Vec::new(),
        report: None,
    }
}

fn from_report(resolved: &ResolvedTarget, report: RunReport, started: Instant) -> TargetRun {
    let state = match report.outcome {
        RunOutcome::Success if report.dry_run => "would_apply",
        RunOutcome::Success => "applied",
        RunOutcome::NothingToDo => "nothing_to_do",
        RunOutcome::Drift => "drifted",
        RunOutcome::Interrupted => "interrupted",
        _ => "failed",
    };
    let ran = report
        .stages
        .iter()
        .filter(|stage| matches!(stage.status, StageStatus::Applied | StageStatus::Skipped));
    TargetRun {
        name: resolved.name.clone(),
        host: resolved.host.clone(),
        state: state.into(),
        outcome: Some(report.outcome_code().as_str().to_owned()),
        exit_code: Some(report.exit_code),
        run_id: report.run_id,
        duration_ms: started.elapsed().as_millis() as u64,
        revisits: 0,
        message: what_stopped(&report),
        stage_durations_ms: ran
            .map(|stage| (stage.id.clone(), stage.duration_ms))
            .collect(),
        longest_lock_wait_ms: report
            .stages
            .iter()
            .flat_map(|stage| stage.locks.iter().map(|lock| lock.waited_ms))
            .max()
            .unwrap_or(0),
        replica_lag_ms: None,
        gate_checks: Vec::new(),
        report: Some(Box::new(report)),
    }
}

/// The stage that stopped the run, in one line.
fn what_stopped(report: &RunReport) -> Option<String> {
    let stage = report.stages.iter().find(|stage| {
        matches!(
            stage.status,
            StageStatus::Failed
                | StageStatus::Drifted
                | StageStatus::Blocked
                | StageStatus::Interrupted
        )
    })?;
    let why = if let Some(error) = &stage.error {
        error.message.clone()
    } else if let Some(check) = stage
        .verifications
        .iter()
        .chain(&stage.preconditions)
        .find(|check| !check.passed)
    {
        format!(
            "check `{}` expected {}, got {}",
            check.name, check.expected, check.actual
        )
    } else if !stage.drift.is_empty() {
        format!("changed since applied: {}", stage.drift.join("; "))
    } else {
        stage.status.label().to_owned()
    };
    Some(format!("stage `{}`: {}", stage.id, why))
}
