//! The contexts a stage runs in: the run context every stage of one `apply` shares
//! (target, options, observer, run id, captures so far, backup, blocker watch, the
//! prepared plan), and the stage context each piece of a stage (timeouts, locks,
//! gate, steps, checks, record, failure) is given as `(conn, &mut cx)`: the prepared
//! stage, the run context, the stage's report and whether it runs in a transaction.
//! Retrying on a lock and reporting each retry is a method of the stage context, so
//! every piece retries the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use planrun_plan::LockRetries;
use postgres::{GenericClient, Transaction};

use crate::db::connect::Target;
use crate::db::watch::BlockerWatch;
use crate::observer::Observer;
use crate::options::ApplyOptions;
use crate::prepared::{PreparedPlan, PreparedStage};
use crate::stage::stage_locks::with_lock_retries;
use planrun_report::LockRetry;
use planrun_report::{StageError, StageReport, StageStatus};

/// What one `apply` carries from stage to stage.
pub(crate) struct RunContext<'r> {
    pub(crate) prepared: &'r PreparedPlan<'r>,
    pub(crate) target: &'r Target,
    pub(crate) options: &'r ApplyOptions,
    pub(crate) observer: &'r dyn Observer,
    pub(crate) run_id: i64,
    /// Captured values so far: this run's and those recorded by done stages.
    pub(crate) captures: BTreeMap<String, Option<String>>,
    /// Set once the backup is taken (or a stage has changed something).
    pub(crate) changed_anything: bool,
    pub(crate) backup_file: Option<String>,
    /// Names the sessions that block a stage; `None` if it could not connect.
    pub(crate) watch: Option<BlockerWatch>,
    /// The current stage's lock attempts that were retried.
    pub(crate) lock_retries: Vec<LockRetry>,
    /// Set while the caller retries the whole transaction on a lock failure (the
    /// cutover): a statement then gets one attempt, since retrying it in a
    /// savepoint would sleep holding the transaction's locks.
    pub(crate) retried_whole: bool,
}

impl<'r> RunContext<'r> {
    pub(crate) fn new(
        prepared: &'r PreparedPlan<'r>,
        target: &'r Target,
        options: &'r ApplyOptions,
        observer: &'r dyn Observer,
        run_id: i64,
    ) -> RunContext<'r> {
        RunContext {
            prepared,
            target,
            options,
            observer,
            run_id,
            captures: BTreeMap::new(),
            changed_anything: false,
            backup_file: None,
            watch: None,
            lock_retries: Vec::new(),
            retried_whole: false,
        }
    }

    /// The plan's name, as the ledger keys its rows.
    pub(crate) fn plan_name(&self) -> &'r str {
        &self.prepared.plan.name
    }
}

/// One stage as its pieces see it.
pub(crate) struct StageContext<'c, 'r> {
    pub(crate) stage: &'c PreparedStage<'c>,
    pub(crate) run: &'c mut RunContext<'r>,
    pub(crate) report: &'c mut StageReport,
    pub(crate) in_transaction: bool,
}

impl<'c, 'r> StageContext<'c, 'r> {
    pub(crate) fn new(
        stage: &'c PreparedStage<'c>,
        run: &'c mut RunContext<'r>,
        report: &'c mut StageReport,
        in_transaction: bool,
    ) -> StageContext<'c, 'r> {
        StageContext {
            stage,
            run,
            report,
            in_transaction,
        }
    }

    /// Marks the stage failed with `error`.
    pub(crate) fn fail(&mut self, error: StageError) {
        self.report.status = StageStatus::Failed;
        self.report.error = Some(error);
    }

    /// The schedule for one statement (or transform step) of the stage: the stage's,
    /// or a single attempt while the whole transaction is retried instead.
    pub(crate) fn statement_retries(&self) -> LockRetries {
        let retries = self.stage.lock_retries.clone();
        if self.run.retried_whole {
            LockRetries {
                attempts: 1,
                ..retries
            }
        } else {
            retries
        }
    }

    /// Runs `attempt` in a savepoint of `conn` on the `retries` schedule (see
    /// [`with_lock_retries`]), each retry of `waiting` told to the observer and kept
    /// for the report; `attempts` counts the attempts made.
    pub(crate) fn with_lock_retries<C, T, E>(
        &mut self,
        conn: &mut C,
        (waiting, retries): (&str, &LockRetries),
        lock_failure: impl Fn(&E) -> Option<&postgres::Error>,
        attempt: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
    ) -> (Result<T, E>, u32)
    where
        C: GenericClient,
        E: From<postgres::Error>,
    {
        let mut attempts = 1;
        let result = with_lock_retries(
            conn,
            retries,
            lock_failure,
            |number, error, delay| {
                attempts = number + 1;
                let reason = error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned());
                self.report_retry(waiting, (number, retries), reason, delay);
            },
            attempt,
        );
        (result, attempts)
    }

    /// Tells the observer, and keeps for the report, that `waiting` will try again
    /// after `delay`.
    pub(crate) fn report_retry(
        &mut self,
        waiting: &str,
        (attempt, retries): (u32, &LockRetries),
        reason: String,
        delay: Duration,
    ) {
        let retry = LockRetry {
            waiting: waiting.to_owned(),
            attempt,
            attempts: retries.attempts,
            reason,
            blocked_by: self
                .run
                .watch
                .as_ref()
                .map(|w| w.take())
                .unwrap_or_default(),
            retry_in_ms: delay.as_millis() as u64,
        };
        self.run.observer.lock_retry(&self.stage.id, &retry);
        self.run.lock_retries.push(retry);
    }
}
