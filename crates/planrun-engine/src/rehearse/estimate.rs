//! From the copy to the target: each rehearsed stage with its times and locks scaled
//! to the target, and what of them is over the stage's `lock_budget`.

use planrun_plan::{is_new_in, LockBudget, LockMode, Plan, StageLockImpact};

use crate::rehearse::lock_trace::StageTrace;
use crate::rehearse::lock_waits::{LockWaits, Observed};
use crate::rehearse::report::{Estimate, Identity, RehearsedLock, RehearsedRevert, RehearsedStage};
use planrun_report::{RunOutcome, StageReport, StageStatus};

/// Target rows / copy rows over the tables the plan names (1.0 when the copy has
/// none): what each time measured on the copy is multiplied by.
pub(crate) fn scale(target: &Identity, copy: &Identity) -> f64 {
    if copy.rows_total > 0 {
        target.rows_total as f64 / copy.rows_total as f64
    } else {
        1.0
    }
}

/// How the estimates were made, for the report.
pub(crate) fn model(scale: f64) -> Estimate {
    Estimate {
        model: format!(
            "each stage's rehearsal time x {scale:.3} (rows of the tables the plan names on the target / on the copy); \
             assumes the target's hardware, settings and load match this machine's"
        ),
        scale,
    }
}

/// The budget a stage's locks are held against: the stage's, else the plan's.
pub(crate) fn stage_budget<'p>(plan: &'p Plan, stage: &str) -> Option<&'p LockBudget> {
    match plan.stage(stage) {
        Some(planned) => plan.lock_budget_of(planned),
        None => plan.lock_budget.as_ref(),
    }
}

/// Each stage the apply on the copy reported, with what the watch observed of it,
/// scaled to the target and judged against its budget; `impact` (the plan's lock
/// analysis) says which tables the plan creates.
pub(crate) fn rehearsed_stages(
    reports: &[StageReport],
    plan: &Plan,
    impact: &[StageLockImpact],
    observed: &Observed,
    scale: f64,
) -> Vec<RehearsedStage> {
    reports
        .iter()
        .map(|stage| {
            let trace = observed.traces.get(&stage.id).cloned().unwrap_or_default();
            let waits = observed.waits.get(&stage.id);
            let mut rehearsed = rehearsed_stage(stage, waits, trace, scale);
            if let Some(budget) = stage_budget(plan, &stage.id) {
                // A table the plan creates, not filled yet, is no one else's: its
                // locks are not held against the budget.
                let live: Vec<RehearsedLock> = rehearsed
                    .locks
                    .iter()
                    .filter(|lock| !is_new_in(impact, &stage.id, &lock.measured.table))
                    .cloned()
                    .collect();
                rehearsed.over_budget = over_budget(&live, budget);
            }
            rehearsed
        })
        .collect()
}

/// The rehearsal's outcome: the apply's on the copy, unless it succeeded with a stage
/// over its budget, or (`--revert`) with a stage's revert not proved.
pub(crate) fn outcome(
    run: RunOutcome,
    stages: &[RehearsedStage],
    revert: Option<&RehearsedRevert>,
) -> RunOutcome {
    let over = stages.iter().any(|stage| !stage.over_budget.is_empty());
    let unproved = revert.is_some_and(|revert| revert.stages.iter().any(|stage| !stage.proved));
    match run {
        RunOutcome::Success | RunOutcome::NothingToDo if over => RunOutcome::OverBudget,
        RunOutcome::Success | RunOutcome::NothingToDo if unproved => RunOutcome::RevertUnproved,
        outcome => outcome,
    }
}

/// The budget's breaches by `locks`, one line each.
fn over_budget(locks: &[RehearsedLock], budget: &LockBudget) -> Vec<String> {
    let mut over = Vec::new();
    for lock in locks {
        let measured = &lock.measured;
        if let (Some(allowed), Some(held)) =
            (budget.strongest, LockMode::parse(&measured.strongest))
        {
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
    trace: StageTrace,
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
