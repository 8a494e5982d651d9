//! What is written down of a stage: its report as it starts (id, title, checksum) and
//! its ledger row, applied, skipped or failed, or kept from an earlier run with its
//! drift accepted, each with the lock-analysis findings its `allow` accepts, so that
//! who accepted what stays known.

use std::time::SystemTime;

use postgres::GenericClient;

use crate::error::EngineError;
use crate::ledger::{self, RecordedStage, ResultStatus, StageRecord};
use crate::prepared::PreparedStage;
use crate::stage::context::{RunContext, StageContext};
use planrun_report::{StageReport, StageStatus};

impl PreparedStage<'_> {
    /// The stage's report as it starts, with `status`.
    pub(crate) fn report(&self, status: StageStatus) -> StageReport {
        let mut report = StageReport::new(&self.id, self.title.as_deref(), status);
        report.optional = self.optional;
        report.transaction = self.transaction;
        report.checksum = self.checksum.clone();
        report
    }
}

/// Records again the stage an earlier run applied, its drift accepted.
pub(crate) fn record_drift_accepted<C: GenericClient>(
    conn: &mut C,
    run: &RunContext<'_>,
    stage: &PreparedStage<'_>,
    recorded: &RecordedStage,
) -> Result<(), EngineError> {
    let captures = serde_json::to_value(&recorded.captures).unwrap_or_default();
    ledger::record_stage(
        conn,
        &StageRecord {
            run_id: run.run_id,
            plan_name: run.plan_name(),
            stage_id: &stage.id,
            status: recorded.status,
            checksum: &stage.checksum,
            definition: &stage.definition,
            drift_accepted: true,
            skip_reason: recorded.skip_reason.as_deref(),
            started_at: SystemTime::now(),
            duration_ms: 0,
            rows_affected: 0,
            rows_quarantined: 0,
            captures,
            verifications: serde_json::json!([]),
            error: None,
            accepted_findings: stage.accepted_findings.clone(),
        },
    )
}

/// Records a failed stage outside its rolled-back transaction, so `status` shows
/// it. Best effort: when the connection itself is what failed, the report says so
/// instead of hiding the stage's own error behind the ledger's.
pub(crate) fn record_failure<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    started_at: SystemTime,
) {
    if let Err(error) = record(conn, cx, started_at) {
        cx.report.note = Some(format!(
            "the failure could not be recorded in the ledger: {error}"
        ));
    }
}

/// The stage's ledger row, as its report says it ended: a stage applied with steps
/// still to run after its commit is recorded `validation_pending`.
pub(crate) fn record<C: GenericClient>(
    conn: &mut C,
    cx: &StageContext<'_, '_>,
    started_at: SystemTime,
) -> Result<(), EngineError> {
    let status = match cx.report.status {
        StageStatus::Applied if cx.stage.has_after_commit() => ResultStatus::ValidationPending,
        StageStatus::Applied => ResultStatus::Applied,
        StageStatus::Skipped => ResultStatus::Skipped,
        StageStatus::Reset => ResultStatus::Reset,
        StageStatus::Reverted => ResultStatus::Reverted,
        _ => ResultStatus::Failed,
    };
    record_as(conn, cx, started_at, status)
}

/// The stage's ledger row with `status`.
pub(crate) fn record_as<C: GenericClient>(
    conn: &mut C,
    cx: &StageContext<'_, '_>,
    started_at: SystemTime,
    status: ResultStatus,
) -> Result<(), EngineError> {
    let (stage, stage_report) = (cx.stage, &*cx.report);
    ledger::record_stage(
        conn,
        &StageRecord {
            run_id: cx.run.run_id,
            plan_name: cx.run.plan_name(),
            stage_id: &stage.id,
            status,
            checksum: &stage.checksum,
            definition: &stage.definition,
            drift_accepted: false,
            skip_reason: match status {
                ResultStatus::Skipped => stage_report.note.as_deref(),
                ResultStatus::Applied | ResultStatus::ValidationPending => {
                    stage_report.recorded_note.as_deref()
                }
                _ => None,
            },
            started_at,
            duration_ms: stage_report.duration_ms as i64,
            rows_affected: stage_report.rows_affected as i64,
            rows_quarantined: stage_report.rows_quarantined as i64,
            captures: serde_json::to_value(&stage_report.captures).unwrap_or_default(),
            verifications: serde_json::to_value(&stage_report.verifications).unwrap_or_default(),
            error: stage_report
                .error
                .as_ref()
                .map(|e| serde_json::to_value(e).unwrap_or_default()),
            accepted_findings: stage.accepted_findings.clone(),
        },
    )
}
