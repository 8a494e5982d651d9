//! Running a transform step: the transform from the registry, given its parameters,
//! in a savepoint retried whole when a lock it was not declared to need times out.
//! Outside a transaction its declared locks are taken in its own transaction. Its rows
//! read, written and quarantined go into the step's report.

use planrun_transform::{transform_params, TransformContext, TransformError};
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::context::RunState;
use crate::prepared::PreparedStage;
use crate::report::{StageError, StepReport};
use crate::stage::stage_failure::{plain_error, stage_error};
use crate::stage::stage_locks::{lock_tables, with_lock_retries};

impl Runner<'_> {
    pub(crate) fn run_transform<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        name: &str,
        params: &toml::Table,
        stage: &PreparedStage<'_>,
    ) -> Result<StepReport, Box<StageError>> {
        let Some(transform) = self.registry().get(name) else {
            return Err(Box::new(plain_error(
                Some(name),
                format!("transform `{name}` is not registered in this planrun"),
            )));
        };
        let retries = self.statement_retries(run, stage);
        let params = transform_params(params);
        // The transform runs in a savepoint: a lock it could not have in time (one no
        // declaration covers) rolls back its work alone, and it runs again.
        let result = with_lock_retries(
            conn,
            &retries,
            transform_database_error,
            |attempt, error, delay| {
                self.report_retry(run, stage, name, (attempt, &retries), error, delay)
            },
            |tx| {
                // In a stage outside a transaction, the transform's own transaction is
                // the only place its declared locks can be held.
                if !stage.transaction {
                    lock_tables(tx, &transform.locks(&params), stage.lock_budget)?;
                }
                let mut context = TransformContext {
                    transaction: tx,
                    params: &params,
                    stage_id: &stage.id,
                    run_id: run.run_id,
                    progress: run.observer.progress(),
                };
                transform.run(&mut context)
            },
        );
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
}

/// For [`with_lock_retries`] on a transform: its error when PostgreSQL's.
fn transform_database_error(error: &TransformError) -> Option<&postgres::Error> {
    match error {
        TransformError::Database(error) => Some(error),
        _ => None,
    }
}
