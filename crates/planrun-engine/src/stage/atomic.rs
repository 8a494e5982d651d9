//! A stage that commits whole or not at all: `BEGIN`, timeouts, its locks
//! (`stage_locks.rs`), a batched attempt's leftovers removed (`abandoned.rs`), the gate
//! (`gate.rs`), the steps (`steps.rs`), deferred constraints and verification
//! (`checks.rs`), the ledger row in the same transaction (`stage_record.rs`) and
//! `COMMIT`. A stage with `transaction = false` runs the same pieces on the session,
//! each statement committing on its own.

use std::time::{Instant, SystemTime};

use postgres::{GenericClient, Transaction};

use crate::error::EngineError;
use crate::prepared::PreparedStage;
use crate::stage::abandoned::{may_skip, remove_abandoned_attempt, rolled_back};
use crate::stage::checks::{check_deferred_constraints, verify_stage};
use crate::stage::context::{RunContext, StageContext};
use crate::stage::gate::{gate, Gate};
use crate::stage::stage_failure::{fail_at, interrupted_before, plain_error};
use crate::stage::stage_locks::take_stage_locks;
use crate::stage::stage_record::{record, record_failure};
use crate::stage::steps::run_steps;
use planrun_report::{StageReport, StageStatus};

/// Runs `stage` whole; its report, or `Err` when planrun itself cannot go on.
pub(crate) fn run_atomic<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
) -> Result<StageReport, EngineError> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut stage_report = stage.report(StageStatus::Applied);
    let mut cx = StageContext::new(stage, run, &mut stage_report, stage.transaction);
    let committed = if stage.transaction {
        in_transaction(conn, &mut cx, (started, started_at))?
    } else {
        let body = stage_body(conn, &mut cx);
        let _ = conn.batch_execute("RESET lock_timeout; RESET statement_timeout");
        if body? {
            cx.report.duration_ms = started.elapsed().as_millis() as u64;
            record(conn, &cx, started_at)?;
            true
        } else {
            false
        }
    };
    cx.report.duration_ms = started.elapsed().as_millis() as u64;
    if !committed {
        rolled_back(cx.report);
    }
    if !committed && cx.report.status == StageStatus::Failed {
        record_failure(conn, &mut cx, started_at);
    }
    Ok(stage_report)
}

/// The stage in its own transaction, recorded and committed; whether it committed.
fn in_transaction<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (started, started_at): (Instant, SystemTime),
) -> Result<bool, EngineError> {
    commit_if_passed(
        conn,
        cx,
        started,
        |tx, cx| stage_body(tx, cx),
        |tx, cx| record(tx, cx, started_at),
    )
}

/// One transaction of a stage (applied, or reverted by `revert/`): `body` does the
/// work and says whether to commit; then, unless an interrupt came first, `record`
/// writes the ledger row and the transaction commits, else it rolls back. Whether it
/// committed; `Err` only when planrun itself cannot go on.
pub(crate) fn commit_if_passed<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    started: Instant,
    body: impl FnOnce(&mut Transaction<'_>, &mut StageContext<'_, '_>) -> Result<bool, EngineError>,
    record: impl FnOnce(&mut Transaction<'_>, &StageContext<'_, '_>) -> Result<(), EngineError>,
) -> Result<bool, EngineError> {
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(error) => {
            fail_at(cx.report, "BEGIN", &error);
            return Ok(false);
        }
    };
    let body = body(&mut tx, cx).map(|passed| passed && !interrupted_before(cx.report, "COMMIT"));
    match body {
        Ok(true) => {
            cx.run.observer.progress().phase("committing");
            cx.report.duration_ms = started.elapsed().as_millis() as u64;
            match record(&mut tx, cx).map(|()| tx.commit()) {
                Ok(Ok(())) => Ok(true),
                Ok(Err(error)) => {
                    // A lost connection, or a check only COMMIT makes: nothing of
                    // the stage committed.
                    fail_at(cx.report, "COMMIT", &error);
                    Ok(false)
                }
                Err(error) => {
                    cx.fail(plain_error(Some("ledger"), error.to_string()));
                    Ok(false)
                }
            }
        }
        Ok(false) => {
            let _ = tx.rollback();
            Ok(false)
        }
        Err(error) => {
            let _ = tx.rollback();
            Err(error)
        }
    }
}

/// The stage's work; `Ok(true)` to commit, `Ok(false)` to roll back (the report says
/// why), `Err` when planrun itself cannot go on.
fn stage_body<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
) -> Result<bool, EngineError> {
    set_timeouts(conn, cx.stage, cx.in_transaction)?;
    if cx.in_transaction && !take_stage_locks(conn, cx)? {
        return Ok(false);
    }
    if !remove_abandoned_attempt(conn, cx)? {
        return Ok(false);
    }
    match gate(conn, cx)? {
        Gate::Skip => return Ok(may_skip(cx.report, &cx.stage.id)),
        Gate::Stop => return Ok(false),
        Gate::Proceed => {}
    }
    if !run_steps(conn, cx, 0..cx.stage.steps_before_commit())? {
        return Ok(false);
    }
    if cx.in_transaction {
        cx.run
            .observer
            .progress()
            .phase("checking deferred constraints");
        if !check_deferred_constraints(conn, cx.report) {
            return Ok(false);
        }
    }
    Ok(verify_stage(conn, cx))
}

/// `SET [LOCAL] lock_timeout / statement_timeout` for the stage.
pub(crate) fn set_timeouts<C: GenericClient>(
    conn: &mut C,
    stage: &PreparedStage<'_>,
    in_transaction: bool,
) -> Result<(), EngineError> {
    let timeouts = &stage.timeouts;
    let scope = if in_transaction { "SET LOCAL" } else { "SET" };
    let mut settings = String::new();
    if let Some(timeout) = &timeouts.lock_timeout {
        settings.push_str(&format!(
            "{scope} lock_timeout = '{}';",
            timeout.as_setting()
        ));
    }
    if let Some(timeout) = &timeouts.statement_timeout {
        settings.push_str(&format!(
            "{scope} statement_timeout = '{}';",
            timeout.as_setting()
        ));
    }
    if settings.is_empty() {
        return Ok(());
    }
    conn.batch_execute(&settings)
        .map_err(EngineError::database(format!(
            "cannot set the timeouts of stage `{}`",
            stage.id
        )))
}
