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
//! 3. catch-up passes (`mod.rs`): the keys of rows the application changed are
//!    transformed again, a pass per transaction, until the backlog is small;
//! 4. the checks that have a per-key form, over every key on one snapshot, outside
//!    the cutover's locks (`per_key.rs`);
//! 5. the cutover (`mod.rs`): under the stage's locks, the last backlog, the
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

use crate::error::EngineError;
use crate::ledger::Checkpoint;
use crate::online::batch_transaction::run_one_batch;
use crate::online::batched_start::start_or_resume;
use crate::online::follow_up;
use crate::online::health_wait::HealthWatch;
use crate::online::per_key::verify_outside_locks;
use crate::online::per_key::Outside::EveryKey;
use crate::online::throttle;
use crate::online::{catch_up, cut_over_retried, recheck_until_small, RedoTotals};
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

pub(crate) fn run_batched_stage<C: GenericClient>(
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
    let Some(transform) = run.prepared.registry.get(name) else {
        stage_report.status = StageStatus::Failed;
        stage_report.error = Some(plain_error(
            Some(name),
            format!("transform `{name}` is not registered"),
        ));
        return fail_batched(conn, run, stage, stage_report, started, started_at);
    };
    let work = Work {
        transform: transform.as_ref(),
        name,
        step_name: &step.name,
        params: transform_params(params),
    };
    let mut checkpoint =
        match start_or_resume(conn, run, stage, batched, &mut stage_report, started)? {
            Some(checkpoint) => checkpoint,
            None if matches!(
                stage_report.status,
                StageStatus::Skipped | StageStatus::Drifted
            ) =>
            {
                return Ok(stage_report)
            }
            None => return fail_batched(conn, run, stage, stage_report, started, started_at),
        };
    let mut totals = RedoTotals::default();
    let mut watch = HealthWatch::default();
    let mut cx = StageContext::new(stage, run, &mut stage_report, true);
    let completed = run_batches(conn, &mut cx, (batched, &work), &mut checkpoint, &mut watch)?
        && catch_up(
            conn,
            &mut cx,
            (batched, &work),
            &checkpoint,
            &mut watch,
            &mut totals,
        )?
        && before_cutover(
            conn,
            &mut cx,
            (batched, &work),
            (&checkpoint, &mut watch),
            &mut totals,
        )?;
    if !completed {
        return fail_batched(conn, run, stage, stage_report, started, started_at);
    }
    stage_report.duration_ms = started.elapsed().as_millis() as u64;
    let outcome = cut_over_retried(
        conn,
        &mut StageContext::new(stage, run, &mut stage_report, true),
        (batched, &work),
        &checkpoint,
        totals,
        started,
    )?;
    stage_report.duration_ms = started.elapsed().as_millis() as u64;
    if !outcome {
        return fail_batched(conn, run, stage, stage_report, started, started_at);
    }
    Ok(stage_report)
}

/// What runs between the catch-up and the cutover, outside its locks: the steps
/// made key by key in batches, the per-key checks of every key on a snapshot, then
/// catch-up passes and the checks of the keys changed since until few are left;
/// `false` when the stage stops.
fn before_cutover<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    (checkpoint, watch): (&Checkpoint, &mut HealthWatch),
    totals: &mut RedoTotals,
) -> Result<bool, EngineError> {
    if !follow_ups_batched(conn, cx, (batched, work), totals)? {
        return Ok(false);
    }
    match verify_outside_locks(conn, cx, (batched, work), totals, EveryKey)? {
        Some(keys) => totals.checked_outside_locks = keys,
        None => return Ok(false),
    }
    recheck_until_small(conn, cx, (batched, work), checkpoint, watch, totals)
}

/// The steps after the batched one made key by key, in batches before the cutover
/// (`follow_up.rs`); `false` when one failed.
fn follow_ups_batched<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    totals: &mut RedoTotals,
) -> Result<bool, EngineError> {
    totals.follow_ups = follow_up::positions(cx.stage, batched, work, cx.run.prepared.registry);
    let size = batched.settings.batch_size;
    match follow_up::run_batches(conn, cx, &totals.follow_ups, size)? {
        Some(before) => {
            totals.before_cutover = before;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The batches, in key order, each committed with the checkpoint; `false` when
/// the stage stops (the report says why).
fn run_batches<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    checkpoint: &mut Checkpoint,
    watch: &mut HealthWatch,
) -> Result<bool, EngineError> {
    let progress = cx.run.observer.progress();
    progress.start(checkpoint.total_rows.map(|n| n as u64));
    progress.advance(checkpoint.rows_read as u64);
    let mut batches = Batches {
        size: batched.settings.batch_size,
        waited: Duration::ZERO,
        notes: Vec::new(),
        started: Instant::now(),
    };
    loop {
        match next_batch(conn, cx, (batched, work), checkpoint, watch, &mut batches)? {
            Next::Committed => {}
            Next::NoRowsLeft => break,
            Next::Stopped => {
                progress.finish();
                return Ok(false);
            }
        }
    }
    progress.finish();
    cx.report
        .steps
        .push(batches.step_report((batched, work), checkpoint, watch));
    cx.report.rows_affected += checkpoint.rows_written as u64;
    cx.report.rows_quarantined += checkpoint.rows_quarantined as u64;
    Ok(true)
}

/// The batches so far: the next one's size, the time waited for the server's
/// health, the last batch's notes, and when the first began.
struct Batches {
    size: u64,
    waited: Duration,
    notes: Vec<String>,
    started: Instant,
}

/// What the next batch came to.
enum Next {
    Committed,
    NoRowsLeft,
    /// A signal, a failure, or the attempts ran out: the report says which.
    Stopped,
}

/// The next batch: the server's health waited for, the batch run and committed
/// (tried again on the stage's schedule while a row it needs is locked), then the
/// next size chosen and the plan's pause.
fn next_batch<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    (batched, work): (&BatchedStep, &Work<'_>),
    checkpoint: &mut Checkpoint,
    watch: &mut HealthWatch,
    batches: &mut Batches,
) -> Result<Next, EngineError> {
    let next = format!(
        "batch {} ({} batches committed; a re-run resumes after key {})",
        checkpoint.batches + 1,
        checkpoint.batches,
        checkpoint
            .last_key
            .map_or("-".into(), |key| key.to_string())
    );
    if crate::stage::stage_failure::interrupted_before(cx.report, &next) {
        return Ok(Next::Stopped);
    }
    let settings = &batched.settings;
    match wait_for_health(conn, cx.run, cx.stage, settings, watch, cx.report)? {
        Some(time) => batches.waited += time,
        None => return Ok(Next::Stopped),
    }
    // The batch size follows the attempt that committed: an attempt rolled back on
    // a lock, and the pause before the next, say nothing of how long a batch takes.
    let mut batch_started = Instant::now();
    let size = batches.size;
    let batch = retry_whole(
        conn,
        cx,
        &next,
        |_, _| Ok(true),
        |conn, cx| {
            batch_started = Instant::now();
            run_one_batch(conn, cx.run, cx.stage, work, checkpoint, size)
        },
    )?;
    let outcome = match batch {
        Some(Ok(Some(outcome))) => outcome,
        Some(Ok(None)) => return Ok(Next::NoRowsLeft),
        Some(Err(error)) => {
            cx.report.status = StageStatus::Failed;
            let mut failure = transform_failure(error, work.name, checkpoint);
            crate::stage::stage_failure::explain_timeout(&mut failure, cx);
            cx.report.error = Some(failure);
            return Ok(Next::Stopped);
        }
        None => return Ok(Next::Stopped),
    };
    cx.run.observer.progress().advance(outcome.report.rows_read);
    batches.notes = outcome.report.notes;
    batches.size = throttle::next_batch_size(size, batch_started.elapsed(), settings.target);
    if settings.pause > Duration::ZERO {
        // A signal ends the pause; the check before the next batch stops.
        crate::db::interrupt::sleep(settings.pause);
    }
    Ok(Next::Committed)
}

impl Batches {
    /// The batched step's report line, once no row is left.
    fn step_report(
        self,
        (batched, work): (&BatchedStep, &Work<'_>),
        checkpoint: &Checkpoint,
        watch: &HealthWatch,
    ) -> StepReport {
        let mut notes = self.notes;
        notes.retain(|note| !note.contains(" read, "));
        notes.push(format!(
            "batched: {} batches (first size {}, last {}), last key {}",
            checkpoint.batches,
            batched.settings.batch_size,
            self.size,
            checkpoint
                .last_key
                .map_or("-".into(), |key| key.to_string())
        ));
        if self.waited > Duration::ZERO {
            notes.push(format!(
                "waited {:.1} s in all for the server's health",
                self.waited.as_secs_f64()
            ));
        }
        notes.extend(watch.note());
        StepReport {
            name: work.step_name.to_owned(),
            kind: "transform".into(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            rows_affected: checkpoint.rows_written as u64,
            rows_read: Some(checkpoint.rows_read as u64),
            rows_quarantined: Some(checkpoint.rows_quarantined as u64),
            notes,
        }
    }
}

/// Waits while the server is unhealthy (`throttle.rs`), saying why
/// (`health_wait.rs`); the time waited, or `None` when a signal interrupted the
/// wait.
pub(crate) fn wait_for_health<C: GenericClient>(
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
