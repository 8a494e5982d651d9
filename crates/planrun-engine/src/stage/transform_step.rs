//! Running a transform step: the transform from the registry, given its parameters,
//! in a savepoint retried whole when a lock it was not declared to need times out.
//! Outside a transaction its declared locks are taken in its own transaction. Its rows
//! read, written and quarantined go into the step's report.

use planrun_transform::{transform_params, TransformContext, TransformError};
use postgres::GenericClient;

use crate::stage::context::StageContext;
use crate::stage::stage_failure::{plain_error, stage_error};
use crate::stage::stage_locks::lock_tables;
use planrun_report::{StageError, StepReport};

/// Runs the transform `name` with `params` as a step of the stage, in a savepoint.
pub(crate) fn run_transform<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    name: &str,
    params: &toml::Table,
) -> Result<StepReport, Box<StageError>> {
    let Some(transform) = cx.run.prepared.registry.get(name) else {
        return Err(Box::new(plain_error(
            Some(name),
            format!("transform `{name}` is not registered in this planrun"),
        )));
    };
    let retries = cx.statement_retries();
    let (stage, run_id, observer) = (cx.stage, cx.run.run_id, cx.run.observer);
    let params = transform_params(params);
    // The transform runs in a savepoint: a lock it could not have in time (one no
    // declaration covers) rolls back its work alone, and it runs again.
    let (result, _) =
        cx.with_lock_retries(conn, (name, &retries), transform_database_error, |tx| {
            // In a stage outside a transaction, the transform's own transaction is
            // the only place its declared locks can be held.
            if !stage.transaction {
                lock_tables(tx, &transform.locks(&params), stage.lock_budget)?;
            }
            let mut context = TransformContext {
                transaction: tx,
                params: &params,
                stage_id: &stage.id,
                run_id,
                progress: observer.progress(),
            };
            transform.run(&mut context)
        });
    match result {
        Ok(outcome) => Ok(StepReport {
            name: name.to_owned(),
            kind: String::new(),
            duration_ms: 0,
            rows_affected: outcome.rows_written,
            rows_read: Some(outcome.rows_read),
            rows_quarantined: Some(outcome.rows_quarantined),
            notes: outcome.notes,
        }),
        Err(TransformError::Database(error)) => Err(Box::new(stage_error(
            &error,
            Some(name.to_owned()),
            None,
            "",
            0,
        ))),
        Err(error) => Err(Box::new(plain_error(Some(name), error.to_string()))),
    }
}

/// For [`StageContext::with_lock_retries`] on a transform: its error when PostgreSQL's.
fn transform_database_error(error: &TransformError) -> Option<&postgres::Error> {
    match error {
        TransformError::Database(error) => Some(error),
        _ => None,
    }
}
