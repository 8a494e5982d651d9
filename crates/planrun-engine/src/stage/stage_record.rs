//! What is written down of a stage: its report as it starts (id, title, checksum) and
//! its ledger row, applied, skipped or failed, or kept from an earlier run with its
//! drift accepted, each with the lock-analysis findings its `allow` accepts, so that
//! who accepted what stays known.

use std::time::SystemTime;

use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::error::EngineError;
use crate::ledger::{self, RecordedStage, StageRecord};
use crate::prepared::PreparedStage;
use crate::report::{StageReport, StageStatus};

impl Runner<'_> {
    pub(crate) fn stage_report(
        &self,
        stage: &PreparedStage<'_>,
        status: StageStatus,
    ) -> StageReport {
        let mut report = StageReport::new(&stage.id, stage.title.as_deref(), status);
        report.optional = stage.optional;
        report.transaction = stage.transaction;
        report.checksum = stage.checksum.clone();
        report
    }

    pub(crate) fn record_drift_accepted<C: GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        stage: &PreparedStage<'_>,
        recorded: &RecordedStage,
    ) -> Result<(), EngineError> {
        let captures = serde_json::to_value(&recorded.captures).unwrap_or_default();
        ledger::record_stage(
            conn,
            &StageRecord {
                run_id,
                plan_name: &self.plan().name,
                stage_id: &stage.id,
                status: &recorded.status,
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
        &self,
        conn: &mut C,
        run_id: i64,
        stage: &PreparedStage<'_>,
        stage_report: &mut StageReport,
        started_at: SystemTime,
    ) {
        if let Err(error) = self.record(conn, run_id, stage, stage_report, started_at) {
            stage_report.note = Some(format!(
                "the failure could not be recorded in the ledger: {error}"
            ));
        }
    }

    pub(crate) fn record<C: GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        stage: &PreparedStage<'_>,
        stage_report: &StageReport,
        started_at: SystemTime,
    ) -> Result<(), EngineError> {
        let status = match stage_report.status {
            StageStatus::Applied => "applied",
            StageStatus::Skipped => "skipped",
            StageStatus::Reset => "reset",
            _ => "failed",
        };
        ledger::record_stage(
            conn,
            &StageRecord {
                run_id,
                plan_name: &self.plan().name,
                stage_id: &stage.id,
                status,
                checksum: &stage.checksum,
                definition: &stage.definition,
                drift_accepted: false,
                skip_reason: match status {
                    "skipped" => stage_report.note.as_deref(),
                    "applied" => stage_report.recorded_note.as_deref(),
                    _ => None,
                },
                started_at,
                duration_ms: stage_report.duration_ms as i64,
                rows_affected: stage_report.rows_affected as i64,
                rows_quarantined: stage_report.rows_quarantined as i64,
                captures: serde_json::to_value(&stage_report.captures).unwrap_or_default(),
                verifications: serde_json::to_value(&stage_report.verifications)
                    .unwrap_or_default(),
                error: stage_report
                    .error
                    .as_ref()
                    .map(|e| serde_json::to_value(e).unwrap_or_default()),
                accepted_findings: stage.accepted_findings.clone(),
            },
        )
    }
}
