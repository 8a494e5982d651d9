//! One batch of a batched stage: its transaction, in which the transform processes
//! the next source rows in key order and the checkpoint moves to the batch's last
//! key, committed together. A batch that meets a row the application has locked
//! rolls back after one `lock_timeout` and is tried again on the stage's schedule
//! (`whole_retries.rs`), as the atomic split would wait the row out.

use planrun_transform::{BatchOutcome, TransformContext, TransformError};
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::error::EngineError;
use crate::ledger::change_capture;
use crate::ledger::{self, Checkpoint};
use crate::online::batched::{transform_failure, Work};
use crate::prepared::PreparedStage;
use crate::stage::atomic::set_timeouts;
use crate::stage::context::RunContext;
use crate::stage::stage_locks::is_lock_failure;
use crate::stage::whole_retries::Attempt;

/// What a batch's transaction came to: the batch committed (`Some`), no row was
/// left (`None`), or the transform failed otherwise than on a lock.
pub(crate) type BatchResult = Result<Option<BatchOutcome>, TransformError>;

impl Runner<'_> {
    /// Runs and commits the batch of at most `size` rows after the checkpoint's last
    /// key, moving `checkpoint` on; `LockBusy` when it rolled back on a lock.
    pub(crate) fn run_one_batch<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunContext<'_>,
        stage: &PreparedStage<'_>,
        work: &Work<'_>,
        checkpoint: &mut Checkpoint,
        size: u64,
    ) -> Result<Attempt<BatchResult>, EngineError> {
        let mut tx = conn
            .transaction()
            .map_err(EngineError::database("cannot begin a batch"))?;
        set_timeouts(&mut tx, stage, true)?;
        change_capture::own_writes(&mut tx)
            .map_err(EngineError::database("cannot begin a batch"))?;
        let outcome = work.transform.run_batch(
            &mut TransformContext {
                transaction: &mut tx,
                params: &work.params,
                stage_id: &stage.id,
                run_id: run.run_id,
                progress: &planrun_transform::NoProgress,
            },
            checkpoint.last_key,
            size,
        );
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let _ = tx.rollback();
                let on_lock = matches!(&error, TransformError::Database(db) if is_lock_failure(db));
                if on_lock {
                    let failure = transform_failure(error, work.name, checkpoint);
                    return Ok(Attempt::LockBusy(Box::new(failure)));
                }
                return Ok(Attempt::Done(Err(error)));
            }
        };
        let Some(last_key) = outcome.last_key else {
            let _ = tx.rollback();
            return Ok(Attempt::Done(Ok(None)));
        };
        let mut moved = checkpoint.clone();
        moved.last_key = Some(last_key);
        moved.batches += 1;
        moved.rows_read += outcome.report.rows_read as i64;
        moved.rows_written += outcome.report.rows_written as i64;
        moved.rows_quarantined += outcome.report.rows_quarantined as i64;
        ledger::advance_checkpoint(&mut tx, &self.plan().name, &moved)?;
        tx.commit()
            .map_err(EngineError::database("cannot commit a batch"))?;
        *checkpoint = moved;
        Ok(Attempt::Done(Ok(Some(outcome))))
    }
}
