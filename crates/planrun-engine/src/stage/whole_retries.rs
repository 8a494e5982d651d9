//! Retrying a whole transaction of an online stage when it meets a lock the
//! application holds: the start (which installs the change capture), the cutover
//! (which drops columns and removes the capture) and each batch.
//!
//! [`with_lock_retries`](crate::stage::stage_locks::with_lock_retries) retries one statement
//! in a savepoint, keeping whatever the transaction already holds while it sleeps.
//! That is right before anything is held, but the cutover holds EXCLUSIVE on the
//! source by the time it drops a column: sleeping there kept the application's
//! writers waiting for as long as a report ran (70 s against a 30 s budget). So here
//! an attempt that times out on a lock rolls the whole transaction back, which
//! releases everything, the application runs during the pause, `between` brings the
//! work up to date (the cutover catches up again), and the transaction starts over.
//! It is the same schedule (the stage's `lock_retries`), each attempt's lock wait
//! bounded by `lock_timeout` capped at the stage's `lock_budget`; the sessions in
//! the way are named in every retry line.

use crate::error::EngineError;
use crate::stage::context::StageContext;
use crate::stage::stage_locks::is_lock_failure;
use planrun_report::{StageError, StageReport, StageStatus};

/// How one attempt at a transaction ended.
pub(crate) enum Attempt<T> {
    /// Committed (or ended for a reason a retry would not change): `T` says how.
    Done(T),
    /// Rolled back on a lock it could not have in time; worth another attempt. The
    /// failure is the stage's error should it be the last attempt.
    LockBusy(Box<StageError>),
}

/// Whether `stage_report` failed on a lock timeout or a deadlock.
pub(crate) fn failed_on_lock(stage_report: &StageReport) -> bool {
    stage_report.status == StageStatus::Failed
        && stage_report
            .error
            .as_ref()
            .and_then(|error| error.sqlstate.as_deref())
            .is_some_and(|code| ["55P03", "40P01"].contains(&code))
}

/// A database error of `waiting` as [`Attempt::LockBusy`] when it is a lock
/// failure; otherwise `None`.
pub(crate) fn lock_busy<T>(error: &postgres::Error, waiting: &str) -> Option<Attempt<T>> {
    is_lock_failure(error).then(|| {
        Attempt::LockBusy(Box::new(crate::stage::stage_failure::stage_error(
            error,
            Some(waiting.to_owned()),
            None,
            "",
            0,
        )))
    })
}

/// Runs `attempt` (a whole transaction) until it is done or the stage's
/// `lock_retries` run out; `None` when they ran out, a signal stopped the wait, or
/// `between` said to stop (the report says why). Each failed attempt's changes to the
/// report are undone, so the report tells of the attempt that counted. `state` is
/// what both closures work on beside the stage (the connection, and what they share).
pub(crate) fn retry_whole<S, T>(
    state: &mut S,
    cx: &mut StageContext<'_, '_>,
    waiting: &str,
    mut between: impl FnMut(&mut S, &mut StageContext<'_, '_>) -> Result<bool, EngineError>,
    mut attempt: impl FnMut(&mut S, &mut StageContext<'_, '_>) -> Result<Attempt<T>, EngineError>,
) -> Result<Option<T>, EngineError> {
    let retries = cx.stage.lock_retries.clone();
    let started = std::time::Instant::now();
    let mut number = 1;
    loop {
        let before = cx.report.clone();
        let mut failure = match attempt(state, cx)? {
            Attempt::Done(value) => return Ok(Some(value)),
            Attempt::LockBusy(failure) => failure,
        };
        if number >= retries.attempts {
            failure.message = format!(
                "{waiting}: none of {} attempts over {:.1} s had its locks in time; each was rolled back after one lock_timeout, so the application waited no longer than that: {}",
                retries.attempts,
                started.elapsed().as_secs_f64(),
                failure.message
            );
            crate::stage::stage_failure::explain_timeout(&mut failure, cx);
            cx.fail(*failure);
            return Ok(None);
        }
        *cx.report = before;
        let delay = retries.delay_after(number);
        let reason = failure.message.clone();
        cx.report_retry(waiting, (number, &retries), reason, delay);
        if !crate::db::interrupt::sleep(delay) {
            crate::stage::stage_failure::interrupted_before(cx.report, waiting);
            return Ok(None);
        }
        if !between(state, cx)? {
            return Ok(None);
        }
        number += 1;
    }
}
