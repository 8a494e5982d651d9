//! From the copy to the target: each rehearsed stage with its times and locks scaled
//! to the target, and what of them is over the stage's `lock_budget`.

use crate::rehearse::lock_trace::StageTrace;
use crate::rehearse::lock_waits::LockWaits;
use crate::rehearse::report::{RehearsedLock, RehearsedStage};
use crate::report::{StageReport, StageStatus};

/// The budget's breaches by `locks`, one line each.
pub(crate) fn over_budget(
    locks: &[RehearsedLock],
    budget: &planrun_plan::LockBudget,
) -> Vec<String> {
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

pub(crate) fn rehearsed_stage(
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
