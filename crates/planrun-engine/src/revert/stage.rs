//! One stage reverted whole or not at all, from the same pieces as a forward stage
//! (`stage/`): `BEGIN`, the stage's timeouts and locks (with their retries), the
//! revert's preconditions (a declared loss warns, any other failure refuses), its
//! captures, the backup before the run's first change, its steps, deferred
//! constraints, its verifications as the gate, then the ledger row `reverted` in the
//! same transaction and `COMMIT`. Interrupted or failed, it rolls back and the stage
//! stays applied: a revert never leaves a stage half undone.

use std::time::{Instant, SystemTime};

use postgres::GenericClient;

use crate::error::EngineError;
use crate::ledger::{self, ResultStatus, StageRecord};
use crate::prepared::PreparedStage;
use crate::revert::preflight::{refusal, rows_named};
use crate::stage::atomic::{commit_if_passed, set_timeouts};
use crate::stage::checks::{check_deferred_constraints, check_now, verify_stage};
use crate::stage::context::{RunContext, StageContext};
use crate::stage::gate::{take_backup, take_captures};
use crate::stage::stage_locks::take_stage_locks;
use crate::stage::steps::run_steps;
use planrun_report::{RevertRefusal, StageReport, StageStatus};

/// What the revert's preconditions found as the stages ran, under their locks.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Losses the plan declares: the revert went on.
    pub(crate) losses: Vec<RevertRefusal>,
    /// A precondition that failed in its stage's own transaction (the preflight had
    /// not seen it fail), with its rows: the revert stopped there.
    pub(crate) refusals: Vec<RevertRefusal>,
}

/// Reverts `forward` by running `view`, its revert view; its report (status
/// `reverted` when it committed), with what its checks found added to `findings`.
pub(crate) fn revert_stage<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    (forward, view): (&PreparedStage<'_>, &PreparedStage<'_>),
    findings: &mut Findings,
) -> Result<StageReport, EngineError> {
    let (started, started_at) = (Instant::now(), SystemTime::now());
    conn.batch_execute("RESET ALL")
        .and_then(|()| crate::db::connect::watch_for_vanished_client(conn))
        .map_err(EngineError::database(format!(
            "cannot reset the session before reverting stage `{}`",
            forward.id
        )))?;
    let mut report = forward.report(StageStatus::Reverted);
    let mut cx = StageContext::new(view, run, &mut report, true);
    let committed = in_transaction(conn, &mut cx, (forward, findings), started)?;
    cx.report.duration_ms = started.elapsed().as_millis() as u64;
    if !committed && cx.report.status == StageStatus::Failed {
        if let Err(error) = record(conn, &cx, forward, started_at) {
            cx.report.note = Some(format!(
                "the failed revert could not be recorded in the ledger: {error}"
            ));
        }
    }
    Ok(report)
}

/// The revert in its own transaction, recorded and committed; whether it committed.
fn in_transaction<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (forward, findings): (&PreparedStage<'_>, &mut Findings),
    started: Instant,
) -> Result<bool, EngineError> {
    let started_at = SystemTime::now();
    commit_if_passed(
        conn,
        cx,
        started,
        |tx, cx| revert_body(tx, cx, forward, findings),
        |tx, cx| record(tx, cx, forward, started_at),
    )
}

/// The revert's work; `Ok(true)` to commit, `Ok(false)` to roll back (the report says
/// why), `Err` when planrun itself cannot go on.
fn revert_body<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    forward: &PreparedStage<'_>,
    findings: &mut Findings,
) -> Result<bool, EngineError> {
    set_timeouts(conn, cx.stage, true)?;
    if !take_stage_locks(conn, cx)? {
        return Ok(false);
    }
    if !preconditions_hold(conn, cx, forward, findings) || !take_captures(conn, cx) {
        return Ok(false);
    }
    if !cx.run.changed_anything && !cx.run.options.dry_run {
        if let Some(dir) = cx.run.options.backup_dir {
            take_backup(cx.run, dir, cx.stage)?;
        }
    }
    cx.run.changed_anything = true;
    if !run_steps(conn, cx, 0..cx.stage.steps.len())? {
        return Ok(false);
    }
    cx.run
        .observer
        .progress()
        .phase("checking deferred constraints");
    if !check_deferred_constraints(conn, cx.report) {
        return Ok(false);
    }
    Ok(verify_stage(conn, cx))
}

/// The revert's preconditions, under the stage's locks; `false` (the stage
/// `BLOCKED`, the refusal naming the rows, as the preflight's does) when one fails
/// that is not a declared loss.
fn preconditions_hold<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    forward: &PreparedStage<'_>,
    findings: &mut Findings,
) -> bool {
    let stage = cx.stage;
    for check in &stage.preconditions {
        let result = check_now(conn, check, &cx.run.captures);
        let declared = stage
            .revert
            .loss
            .as_ref()
            .filter(|_| check.loss && result.problem.is_none());
        let passed = result.passed;
        if let (false, Some(loss)) = (passed, declared) {
            let mut loss = refusal(forward, &result, Some(&loss.reason));
            loss.rows = rows_named(conn, &check.sql);
            findings.losses.push(loss);
        }
        if !passed && declared.is_none() {
            let mut refused = refusal(forward, &result, None);
            if result.problem.is_none() {
                refused.rows = rows_named(conn, &check.sql);
            }
            findings.refusals.push(refused);
        }
        cx.report.preconditions.push(result);
        if !passed && declared.is_none() {
            cx.report.status = StageStatus::Blocked;
            return false;
        }
    }
    true
}

/// The stage's ledger row: `reverted`, or `failed` for a revert that rolled back.
/// Written with the forward stage's checksum and definition, so that a stage
/// applied again later is compared with what it applies, not with its revert.
fn record<C: GenericClient>(
    conn: &mut C,
    cx: &StageContext<'_, '_>,
    forward: &PreparedStage<'_>,
    started_at: SystemTime,
) -> Result<(), EngineError> {
    let stage_report = &*cx.report;
    let status = match stage_report.status {
        StageStatus::Reverted => ResultStatus::Reverted,
        _ => ResultStatus::Failed,
    };
    ledger::record_stage(
        conn,
        &StageRecord {
            run_id: cx.run.run_id,
            plan_name: cx.run.plan_name(),
            stage_id: &forward.id,
            status,
            checksum: &forward.checksum,
            definition: &forward.definition,
            drift_accepted: false,
            skip_reason: stage_report.note.as_deref(),
            started_at,
            duration_ms: stage_report.duration_ms as i64,
            rows_affected: stage_report.rows_affected as i64,
            rows_quarantined: 0,
            captures: serde_json::to_value(&stage_report.captures).unwrap_or_default(),
            verifications: serde_json::to_value(&stage_report.verifications).unwrap_or_default(),
            error: stage_report
                .error
                .as_ref()
                .map(|e| serde_json::to_value(e).unwrap_or_default()),
            accepted_findings: forward.accepted_findings.clone(),
        },
    )
}

/// Records `forward`, which the ledger has as skipped (a skip rule held, nothing was
/// changed), as reverted without running anything, so that a later `apply` decides
/// it again.
pub(crate) fn revert_skipped<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    forward: &PreparedStage<'_>,
) -> Result<StageReport, EngineError> {
    let mut report = forward.report(StageStatus::Reverted);
    report.note = Some("skipped when applied: nothing to undo".into());
    let cx = StageContext::new(forward, run, &mut report, true);
    let mut tx = conn
        .transaction()
        .map_err(EngineError::database("cannot begin recording a revert"))?;
    record(&mut tx, &cx, forward, SystemTime::now())?;
    tx.commit().map_err(EngineError::database(
        "cannot commit the revert's ledger row",
    ))?;
    Ok(report)
}
