//! Stages with a `mode = "batched"` transform step: for tables too big for one
//! transaction, while the application keeps writing. The stage runs as a sequence of
//! transactions:
//!
//! 1. start (`batched_start.rs`): timeouts, skip rules, preconditions, captures,
//!    backup, the steps before the batched one, a checkpoint row holding the
//!    captures, and the change capture on the transform's source tables
//!    (`change_capture.rs`), committed together;
//! 2. one transaction per batch (`batch_transaction.rs`): the transform processes
//!    the next source rows in key order and the checkpoint moves to the batch's last
//!    key, committed together, so a crash loses at most the batch in flight and
//!    never doubles one; between batches planrun waits while the server is
//!    unhealthy (`throttle.rs`) and adapts the batch size to `batch_target`;
//! 3. catch-up passes (`online.rs`): the keys of rows the application changed are
//!    transformed again, a pass per transaction, until the backlog is small;
//! 4. the cutover (`online.rs`): under the stage's locks, the last backlog, the
//!    steps after the batched one (e.g. dropping legacy columns), captures read again
//!    and the verification of the data as it is then, the ledger row, the checkpoint's
//!    and the capture's removal, committed together. Writers wait only for this one.
//!
//! A re-run finds the checkpoint and resumes after its last key; the capture kept
//! recording meanwhile, so nothing the application did while planrun was away is
//! lost. Where one of these transactions meets a lock the application holds, it
//! rolls back whole and is tried again on the stage's schedule (`whole_retries.rs`).
//! The preconditions, which held when the stage started, are not asked again
//! of a half-migrated table. `planrun reset` abandons a half-done stage (`reset.rs`).

use std::time::{Duration, Instant, SystemTime};

use planrun_plan::StepKind;
use planrun_transform::{transform_params, BatchSettings, Transform, TransformError};
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::error::EngineError;
use crate::ledger::Checkpoint;
use crate::online::health_wait::HealthWatch;
use crate::online::throttle;
use crate::prepared::BatchedStep;
use crate::prepared::PreparedStage;
use crate::stage::context::RunContext;
use crate::stage::context::StageContext;
use crate::stage::stage_failure::{plain_error, stage_error};
use crate::stage::stage_record::record_failure;
use crate::stage::whole_retries::retry_whole;
use planrun_report::{StageReport, StageStatus, StepReport};

/// The batched transform and what it is given.
pub(crate) struct Work<'w> {
    pub transform: &'w dyn Transform,
    pub name: &'w str,
    pub step_name: &'w str,
    /// The step's params without the engine's own keys.
    pub params: toml::Table,
}

/// A transform error as the stage's error, with where a re-run resumes.
pub(crate) fn transform_failure(
    error: TransformError,
    name: &str,
    checkpoint: &Checkpoint,
) -> planrun_report::StageError {
    let mut failure = match error {
        TransformError::Database(error) => stage_error(&error, Some(name.to_owned()), None, "", 0),
        other => plain_error(Some(name), other.to_string()),
    };
    failure.message.push_str(&format!(
        " ({} batches committed before this one; a re-run resumes after key {})",
        checkpoint.batches,
        checkpoint
            .last_key
            .map_or("-".into(), |key| key.to_string())
    ));
    failure
}

impl Runner<'_> {
    pub(crate) fn run_batched_stage<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunContext<'_>,
        stage: &PreparedStage<'_>,
        batched: &BatchedStep,
    ) -> Result<StageReport, EngineError> {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut stage_report = stage.report(StageStatus::Applied);
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
            return self.fail_batched(conn, run, stage, stage_report, started, started_at);
        };
        let work = Work {
            transform: transform.as_ref(),
            name,
            step_name: &step.name,
            params: transform_params(params),
        };
        let mut checkpoint =
            match self.start_or_resume(conn, run, stage, batched, &mut stage_report, started)? {
                Some(checkpoint) => checkpoint,
                None if matches!(
                    stage_report.status,
                    StageStatus::Skipped | StageStatus::Drifted
                ) =>
                {
                    return Ok(stage_report)
                }
                None => {
                    return self.fail_batched(conn, run, stage, stage_report, started, started_at)
                }
            };
        let mut totals = crate::online::RedoTotals::default();
        let mut watch = HealthWatch::default();
        let mut cx = StageContext::new(stage, run, &mut stage_report, true);
        let completed =
            self.run_batches(conn, &mut cx, (batched, &work), &mut checkpoint, &mut watch)?
                && self.catch_up(
                    conn,
                    &mut cx,
                    (batched, &work),
                    &checkpoint,
                    &mut watch,
                    &mut totals,
                )?;
        if !completed {
            return self.fail_batched(conn, run, stage, stage_report, started, started_at);
        }
        stage_report.duration_ms = started.elapsed().as_millis() as u64;
        let outcome = self.cut_over_retried(
            conn,
            &mut StageContext::new(stage, run, &mut stage_report, true),
            (batched, &work),
            &checkpoint,
            totals,
            started,
        )?;
        stage_report.duration_ms = started.elapsed().as_millis() as u64;
        if !outcome {
            return self.fail_batched(conn, run, stage, stage_report, started, started_at);
        }
        Ok(stage_report)
    }

    /// The batches, in key order, each committed with the checkpoint; `false` when
    /// the stage stops (the report says why).
    fn run_batches<C: GenericClient>(
        &self,
        conn: &mut C,
        cx: &mut StageContext<'_, '_>,
        (batched, work): (&BatchedStep, &Work<'_>),
        checkpoint: &mut Checkpoint,
        watch: &mut HealthWatch,
    ) -> Result<bool, EngineError> {
        let (stage, run, stage_report) = (cx.stage, &mut *cx.run, &mut *cx.report);
        let progress = run.observer.progress();
        progress.start(checkpoint.total_rows.map(|n| n as u64));
        progress.advance(checkpoint.rows_read as u64);
        let step_started = Instant::now();
        let mut notes = Vec::new();
        let mut size = batched.settings.batch_size;
        let mut waited = Duration::ZERO;
        loop {
            let resume_at = checkpoint
                .last_key
                .map_or("-".into(), |key| key.to_string());
            let next = format!(
                "batch {} ({} batches committed; a re-run resumes after key {resume_at})",
                checkpoint.batches + 1,
                checkpoint.batches
            );
            if crate::stage::stage_failure::interrupted_before(stage_report, &next) {
                progress.finish();
                return Ok(false);
            }
            match self.wait_for_health(conn, run, stage, &batched.settings, watch, stage_report)? {
                Some(time) => waited += time,
                None => {
                    progress.finish();
                    return Ok(false);
                }
            }
            let batch_started = Instant::now();
            let batch = retry_whole(
                conn,
                &mut StageContext::new(stage, run, stage_report, true),
                &next,
                |_, _| Ok(true),
                |conn, cx| {
                    let run = &mut *cx.run;
                    self.run_one_batch(conn, run, stage, work, checkpoint, size)
                },
            )?;
            let outcome = match batch {
                Some(Ok(Some(outcome))) => outcome,
                Some(Ok(None)) => break,
                Some(Err(error)) => {
                    progress.finish();
                    stage_report.status = StageStatus::Failed;
                    let mut failure = transform_failure(error, work.name, checkpoint);
                    crate::stage::stage_failure::explain_timeout(
                        &mut failure,
                        &StageContext::new(stage, run, stage_report, true),
                    );
                    stage_report.error = Some(failure);
                    return Ok(false);
                }
                // The attempts ran out or a signal came: the report says which.
                None => {
                    progress.finish();
                    return Ok(false);
                }
            };
            progress.advance(outcome.report.rows_read);
            notes = outcome.report.notes;
            size =
                throttle::next_batch_size(size, batch_started.elapsed(), batched.settings.target);
            if batched.settings.pause > Duration::ZERO {
                // A signal ends the pause; the check before the next batch stops.
                crate::db::interrupt::sleep(batched.settings.pause);
            }
        }
        progress.finish();
        notes.retain(|note| !note.contains(" read, "));
        notes.push(format!(
            "batched: {} batches (first size {}, last {size}), last key {}",
            checkpoint.batches,
            batched.settings.batch_size,
            checkpoint
                .last_key
                .map_or("-".into(), |key| key.to_string())
        ));
        if waited > Duration::ZERO {
            notes.push(format!(
                "waited {:.1} s in all for the server's health",
                waited.as_secs_f64()
            ));
        }
        notes.extend(watch.note());
        stage_report.steps.push(StepReport {
            name: work.step_name.to_owned(),
            kind: "transform".into(),
            duration_ms: step_started.elapsed().as_millis() as u64,
            rows_affected: checkpoint.rows_written as u64,
            rows_read: Some(checkpoint.rows_read as u64),
            rows_quarantined: Some(checkpoint.rows_quarantined as u64),
            notes,
        });
        stage_report.rows_affected += checkpoint.rows_written as u64;
        stage_report.rows_quarantined += checkpoint.rows_quarantined as u64;
        Ok(true)
    }

    /// Waits while the server is unhealthy (`throttle.rs`), saying why
    /// (`health_wait.rs`); the time waited, or `None` when a signal interrupted the
    /// wait.
    pub(crate) fn wait_for_health<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunContext<'_>,
        stage: &PreparedStage<'_>,
        settings: &BatchSettings,
        watch: &mut HealthWatch,
        stage_report: &mut StageReport,
    ) -> Result<Option<Duration>, EngineError> {
        let stage = &stage.stage.id;
        let waited = watch
            .wait_until_healthy(conn, settings, |line| {
                run.observer.note(&format!("{stage}: {line}"));
            })
            .map_err(EngineError::database("cannot check the server's health"))?;
        if waited.is_none() {
            crate::stage::stage_failure::interrupted_before(stage_report, "the next batch");
        }
        Ok(waited)
    }

    /// Records a failed batched stage outside its rolled-back transaction.
    fn fail_batched<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunContext<'_>,
        stage: &PreparedStage<'_>,
        mut stage_report: StageReport,
        started: Instant,
        started_at: SystemTime,
    ) -> Result<StageReport, EngineError> {
        stage_report.duration_ms = started.elapsed().as_millis() as u64;
        if stage_report.status == StageStatus::Failed {
            record_failure(
                conn,
                &mut StageContext::new(stage, run, &mut stage_report, true),
                started_at,
            );
        }
        Ok(stage_report)
    }
}
