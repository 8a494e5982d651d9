//! Stages with a `mode = "batched"` transform step: for tables too big for one
//! transaction. The stage runs as a sequence of transactions:
//!
//! 1. start: timeouts, skip rules, preconditions, captures, backup, the steps before
//!    the batched one, and a checkpoint row holding the captures;
//! 2. one transaction per batch: the transform processes the next `batch_size` source
//!    rows in key order and the checkpoint moves to the batch's last key, committed
//!    together, so a crash loses at most the batch in flight and never doubles one;
//! 3. finish: under the stage's locks taken again, the captures read again (so the
//!    verification compares with the source as it is now, and a row changed behind
//!    the checkpoint fails the stage rather than being lost), the steps after the
//!    batched one (e.g. dropping legacy columns), the verification, the ledger row,
//!    and the checkpoint's removal, committed together.
//!
//! A re-run finds the checkpoint and resumes after its last key; the preconditions,
//! which held when the stage started, are not asked again of a half-migrated table,
//! but the captures are read again, so that source rows repaired after a failed batch
//! are counted as they now are.

use std::time::{Duration, Instant, SystemTime};

use planrun_plan::StepKind;
use planrun_transform::{
    batch_settings, transform_params, BatchSettings, TransformContext, TransformError,
};
use postgres::GenericClient;

use crate::error::EngineError;
use crate::ledger::{self, Checkpoint};
use crate::report::{StageReport, StageStatus, StepReport};
use crate::run::{
    check_deferred_constraints, fail_at, plain_error, stage_error, Gate, RunState, Runner,
};

/// The batched step of a stage: its position and settings.
pub(crate) struct BatchedStep {
    pub position: usize,
    pub settings: BatchSettings,
}

/// The stage's batched step, if it has one; an error when the stage cannot be batched.
pub(crate) fn batched_step(
    runner: &Runner<'_>,
    index: usize,
) -> Result<Option<BatchedStep>, EngineError> {
    let stage = &runner.plan().stages[index];
    let mut found: Option<BatchedStep> = None;
    for (position, step) in stage.steps.iter().enumerate() {
        let StepKind::Transform { params, .. } = &step.kind else {
            continue;
        };
        let Some(settings) =
            batch_settings(params).map_err(|reason| invalid(&stage.id, &reason))?
        else {
            continue;
        };
        if found.is_some() {
            return Err(invalid(&stage.id, "a stage may have only one batched step"));
        }
        if !stage.transaction {
            return Err(invalid(
                &stage.id,
                "a batched step needs transaction = true: each batch is a transaction",
            ));
        }
        found = Some(BatchedStep { position, settings });
    }
    Ok(found)
}

fn invalid(stage: &str, reason: &str) -> EngineError {
    EngineError::Selection(format!("stage `{stage}` cannot run batched: {reason}"))
}

impl Runner<'_> {
    pub(crate) fn run_batched_stage<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
        batched: &BatchedStep,
    ) -> Result<StageReport, EngineError> {
        let stage = &self.plan().stages[index];
        let plan = &self.plan().name;
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut stage_report = self.stage_report(index, StageStatus::Applied);
        let checksum = self
            .stage_checksum(&stage.id)
            .unwrap_or_default()
            .to_owned();

        let existing = ledger::checkpoints(conn, plan)?.remove(&stage.id);
        let mut checkpoint = match existing {
            Some(checkpoint) if !self.matches_recorded(index, &checkpoint.checksum) => {
                stage_report.status = StageStatus::Drifted;
                stage_report.note = Some(format!(
                    "half done (run {}, {} batches, after key {}) and its definition has changed since; \
                     restore the definition to finish it",
                    checkpoint.run_id,
                    checkpoint.batches,
                    checkpoint.last_key.map_or("-".into(), |key| key.to_string())
                ));
                return Ok(stage_report);
            }
            Some(checkpoint) => {
                // Captures are read again: the rows not yet migrated may have been
                // repaired since the stage started (the usual reason for a resume).
                let mut tx = conn
                    .transaction()
                    .map_err(EngineError::database("cannot begin a transaction"))?;
                self.set_timeouts(&mut tx, index, true)?;
                let captured = self.take_captures(&mut tx, run, index, &mut stage_report);
                let _ = tx.rollback();
                if !captured {
                    return self.fail_batched(conn, run, index, stage_report, started, started_at);
                }
                stage_report.note = Some(format!(
                    "resumed after key {} ({} batches committed by run {}); preconditions held when it started",
                    checkpoint.last_key.map_or("-".into(), |key| key.to_string()),
                    checkpoint.batches,
                    checkpoint.run_id
                ));
                run.changed_anything = true;
                checkpoint
            }
            None => {
                let mut tx = conn.transaction().map_err(EngineError::database(format!(
                    "cannot begin the transaction of stage `{}`",
                    stage.id
                )))?;
                self.set_timeouts(&mut tx, index, true)?;
                let gate = if self.take_stage_locks(&mut tx, run, index, &mut stage_report)? {
                    self.gate(&mut tx, run, index, &mut stage_report)?
                } else {
                    Gate::Stop
                };
                let proceed = match gate {
                    Gate::Skip => {
                        stage_report.duration_ms = started.elapsed().as_millis() as u64;
                        self.record(&mut tx, run.run_id, index, &stage_report, started_at)?;
                        tx.commit()
                            .map_err(EngineError::database("cannot commit the skipped stage"))?;
                        return Ok(stage_report);
                    }
                    Gate::Stop => false,
                    Gate::Proceed => self.run_steps(
                        &mut tx,
                        run,
                        index,
                        0..batched.position,
                        &mut stage_report,
                        true,
                    )?,
                };
                if !proceed {
                    let _ = tx.rollback();
                    return self.fail_batched(conn, run, index, stage_report, started, started_at);
                }
                let checkpoint = Checkpoint {
                    stage_id: stage.id.clone(),
                    run_id: run.run_id,
                    checksum: checksum.clone(),
                    total_rows: self
                        .batch_total(&mut tx, run, index, batched)?
                        .map(|n| n as i64),
                    captures: stage_report.captures.clone(),
                    ..Checkpoint::default()
                };
                ledger::start_checkpoint(&mut tx, plan, &checkpoint)?;
                tx.commit().map_err(EngineError::database(format!(
                    "cannot commit the start of stage `{}`",
                    stage.id
                )))?;
                checkpoint
            }
        };

        let progress = run.observer.progress();
        progress.start(checkpoint.total_rows.map(|n| n as u64));
        progress.advance(checkpoint.rows_read as u64);
        let step = &stage.steps[batched.position];
        let StepKind::Transform { name, params, .. } = &step.kind else {
            unreachable!("batched_step only returns transform steps");
        };
        let Some(transform) = self.registry().get(name) else {
            stage_report.status = StageStatus::Failed;
            stage_report.error = Some(plain_error(
                Some(name),
                format!("transform `{name}` is not registered"),
            ));
            progress.finish();
            return self.fail_batched(conn, run, index, stage_report, started, started_at);
        };
        let params = transform_params(params);
        let step_started = Instant::now();
        let mut notes = Vec::new();
        loop {
            let mut tx = conn
                .transaction()
                .map_err(EngineError::database("cannot begin a batch"))?;
            self.set_timeouts(&mut tx, index, true)?;
            let outcome = {
                let mut context = TransformContext {
                    transaction: &mut tx,
                    params: &params,
                    stage_id: &stage.id,
                    run_id: run.run_id,
                    progress: &planrun_transform::NoProgress,
                };
                transform.run_batch(
                    &mut context,
                    checkpoint.last_key,
                    batched.settings.batch_size,
                )
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    let _ = tx.rollback();
                    progress.finish();
                    stage_report.status = StageStatus::Failed;
                    let mut failure = match error {
                        TransformError::Database(error) => {
                            stage_error(&error, Some(name.clone()), None, "", 0)
                        }
                        other => plain_error(Some(name), other.to_string()),
                    };
                    crate::run::explain_timeout(&mut failure, run, stage, &self.plan().timeouts);
                    failure.message.push_str(&format!(
                        " ({} batches committed before this one; a re-run resumes after key {})",
                        checkpoint.batches,
                        checkpoint
                            .last_key
                            .map_or("-".into(), |key| key.to_string())
                    ));
                    stage_report.error = Some(failure);
                    return self.fail_batched(conn, run, index, stage_report, started, started_at);
                }
            };
            let Some(last_key) = outcome.last_key else {
                let _ = tx.rollback();
                break;
            };
            checkpoint.last_key = Some(last_key);
            checkpoint.batches += 1;
            checkpoint.rows_read += outcome.report.rows_read as i64;
            checkpoint.rows_written += outcome.report.rows_written as i64;
            checkpoint.rows_quarantined += outcome.report.rows_quarantined as i64;
            ledger::advance_checkpoint(&mut tx, plan, &checkpoint)?;
            tx.commit()
                .map_err(EngineError::database("cannot commit a batch"))?;
            progress.advance(outcome.report.rows_read);
            notes = outcome.report.notes;
            if batched.settings.pause > Duration::ZERO {
                std::thread::sleep(batched.settings.pause);
            }
        }
        progress.finish();
        notes.retain(|note| !note.contains(" read, "));
        notes.push(format!(
            "batched: {} batches of up to {} rows, last key {}",
            checkpoint.batches,
            batched.settings.batch_size,
            checkpoint
                .last_key
                .map_or("-".into(), |key| key.to_string())
        ));
        stage_report.steps.push(StepReport {
            name: step.name.clone(),
            kind: "transform".into(),
            duration_ms: step_started.elapsed().as_millis() as u64,
            rows_affected: checkpoint.rows_written as u64,
            rows_read: Some(checkpoint.rows_read as u64),
            rows_quarantined: Some(checkpoint.rows_quarantined as u64),
            notes,
        });
        stage_report.rows_affected += checkpoint.rows_written as u64;
        stage_report.rows_quarantined += checkpoint.rows_quarantined as u64;

        let mut tx = conn.transaction().map_err(EngineError::database(format!(
            "cannot begin the final transaction of stage `{}`",
            stage.id
        )))?;
        self.set_timeouts(&mut tx, index, true)?;
        let rest = batched.position + 1..stage.steps.len();
        stage_report.locks.clear();
        // The captures are read again under the stage's locks, so that the
        // verification compares the result with the source as it is at the end, not
        // as it was when the first batch started: a row the application changed
        // behind the checkpoint then fails the stage instead of being lost.
        let passed = self.take_stage_locks(&mut tx, run, index, &mut stage_report)?
            && self.take_captures(&mut tx, run, index, &mut stage_report)
            && self.verify_after_step(&mut tx, run, stage, &step.name, &mut stage_report)
            && self.run_steps(&mut tx, run, index, rest, &mut stage_report, true)?
            && check_deferred_constraints(&mut tx, &mut stage_report)
            && self.verify_stage(&mut tx, run, index, &mut stage_report);
        if !passed {
            let _ = tx.rollback();
            return self.fail_batched(conn, run, index, stage_report, started, started_at);
        }
        stage_report.duration_ms = started.elapsed().as_millis() as u64;
        self.record(&mut tx, run.run_id, index, &stage_report, started_at)?;
        ledger::finish_checkpoint(&mut tx, plan, &stage.id)?;
        if let Err(error) = tx.commit() {
            fail_at(&mut stage_report, "COMMIT", &error);
            return self.fail_batched(conn, run, index, stage_report, started, started_at);
        }
        Ok(stage_report)
    }

    fn batch_total<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        index: usize,
        batched: &BatchedStep,
    ) -> Result<Option<u64>, EngineError> {
        let stage = &self.plan().stages[index];
        let StepKind::Transform { name, params, .. } = &stage.steps[batched.position].kind else {
            return Ok(None);
        };
        let Some(transform) = self.registry().get(name) else {
            return Ok(None);
        };
        let params = transform_params(params);
        let mut savepoint = conn
            .transaction()
            .map_err(EngineError::database("cannot begin a savepoint"))?;
        let total = {
            let mut context = TransformContext {
                transaction: &mut savepoint,
                params: &params,
                stage_id: &stage.id,
                run_id: run.run_id,
                progress: &planrun_transform::NoProgress,
            };
            transform.batch_total(&mut context).ok().flatten()
        };
        let _ = savepoint.rollback();
        Ok(total)
    }

    /// Records a failed batched stage outside its rolled-back transaction.
    fn fail_batched<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        index: usize,
        mut stage_report: StageReport,
        started: Instant,
        started_at: SystemTime,
    ) -> Result<StageReport, EngineError> {
        stage_report.duration_ms = started.elapsed().as_millis() as u64;
        if stage_report.status == StageStatus::Failed {
            self.record_failure(conn, run.run_id, index, &mut stage_report, started_at);
        }
        Ok(stage_report)
    }
}
