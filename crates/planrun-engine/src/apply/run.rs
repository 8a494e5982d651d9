//! Applying a plan, as an orchestration that reads top to bottom: connect, take the
//! plan's lock, decide every stage (`decide.rs`), refuse drift (`drift.rs`) and
//! unaccepted ledger history (`history.rs`) before a run id is taken, then stage by
//! stage in DAG order: done already? else a clean session and the stage, whole
//! (`stage/atomic.rs`) or batched (`online/`); at the end, the summary (`summary.rs`).
//!
//! Also `Runner`, the public facade every command enters through, holding the
//! prepared plan (`prepared.rs`).

use std::collections::BTreeMap;

use planrun_plan::{Dag, Plan, Stage};
use planrun_transform::Registry;
use postgres::GenericClient;

use crate::db::connect::Target;
use crate::db::interrupt;
use crate::db::lock;
use crate::db::watch::BlockerWatch;
use crate::decide::{decide, Decision, Disposition};
use crate::error::EngineError;
use crate::ledger::{self, NewRun, RecordedStage, ResultStatus};
use crate::observer::Observer;
use crate::online::batched::run_batched_stage;
use crate::online::half_done::say_what_remains;
use crate::online::reset;
use crate::options::{ApplyOptions, ResetOptions};
use crate::prepared::{PreparedPlan, PreparedStage};
use crate::stage::after_commit::{retry_pending, validate_after_commit};
use crate::stage::atomic::run_atomic;
use crate::stage::context::RunContext;
use crate::stage::stage_record::record_drift_accepted;
use planrun_report::{Command, ResetReport, RunOutcome, RunReport, StageReport, StageStatus};

/// A plan ready to run: validated, ordered, with its registry; the public entry
/// points of every command.
pub struct Runner<'a> {
    prepared: PreparedPlan<'a>,
}

impl<'a> Runner<'a> {
    /// Prepares `plan` (already loaded with [`Plan::load_checked`]).
    pub fn new(plan: &'a Plan, registry: &'a Registry) -> Result<Runner<'a>, EngineError> {
        Ok(Runner {
            prepared: PreparedPlan::new(plan, registry)?,
        })
    }

    /// The plan checksum (see [`PreparedPlan::plan_checksum`]).
    pub fn plan_checksum(&self) -> String {
        self.prepared.plan_checksum()
    }

    pub fn stage_checksum(&self, id: &str) -> Option<&str> {
        self.prepared.stage(id).map(|stage| stage.checksum.as_str())
    }

    /// The session of a command that changes the database (`apply`, `reset`): never
    /// one a pooler shares with other clients.
    pub(crate) fn connect(
        &self,
        target: &Target,
        command: &str,
    ) -> Result<crate::db::connect::OwnSession, EngineError> {
        let mut client =
            target.connect_own_session(&format!("planrun {command} {}", self.plan().name))?;
        self.run_setup(&mut *client)?;
        Ok(client)
    }

    /// The plan's `setup_sql_file`, on `conn` (a read-only command runs it inside its
    /// rolled-back transaction, so even its temporary objects leave no trace).
    pub(crate) fn run_setup<C: GenericClient>(&self, conn: &mut C) -> Result<(), EngineError> {
        if let Some(setup) = &self.prepared.setup_sql {
            conn.batch_execute(setup)
                .map_err(EngineError::database("the plan's setup_sql_file failed"))?;
        }
        Ok(())
    }

    pub(crate) fn plan(&self) -> &'a Plan {
        self.prepared.plan
    }

    pub(crate) fn dag(&self) -> &Dag {
        &self.prepared.dag
    }

    pub(crate) fn registry(&self) -> &'a Registry {
        self.prepared.registry
    }

    pub(crate) fn prepared(&self) -> &PreparedPlan<'a> {
        &self.prepared
    }

    /// Runs the plan against `target`.
    pub fn apply(
        &self,
        target: &Target,
        options: &ApplyOptions,
        observer: &dyn Observer,
    ) -> Result<RunReport, EngineError> {
        let selection = self.selection(options)?;
        if options.dry_run {
            let blocking: Vec<&str> = selection
                .iter()
                .filter(|(stage, selected, _)| *selected && !stage.transaction)
                .map(|(stage, _, _)| stage.id())
                .collect();
            if !blocking.is_empty() {
                return Err(EngineError::NotDryRunnable(format!(
                    "cannot dry-run: stage{} {} run{} outside a transaction (transaction = false) and could not be rolled back; \
                     leave {} out with --until or --stage, or use `planrun rehearse`",
                    if blocking.len() == 1 { "" } else { "s" },
                    blocking.join(", "),
                    if blocking.len() == 1 { "s" } else { "" },
                    if blocking.len() == 1 { "it" } else { "them" },
                )));
            }
        }
        let mut client = self.connect(target, "apply")?;
        // A signal cancels what runs on this connection (see `interrupt`).
        let _cancel_on_signal = interrupt::watch_connection(&client, target);
        lock::acquire(&mut client, &self.plan().name, options.lock_wait)?;
        let result = if options.dry_run {
            let mut outer = client.transaction().map_err(EngineError::database(
                "cannot begin the dry-run transaction",
            ))?;
            let report = self.apply_stages(&mut outer, target, options, &selection, observer);
            let _ = outer.rollback();
            report
        } else {
            self.apply_stages(&mut *client, target, options, &selection, observer)
        };
        lock::release(&mut client, &self.plan().name);
        interrupt::acknowledge();
        result
    }

    /// Abandons the half-done batched stage `stage_id` (`online/reset.rs`).
    pub fn reset(
        &self,
        target: &Target,
        stage_id: &str,
        options: &ResetOptions,
    ) -> Result<ResetReport, EngineError> {
        let stage = reset::resettable(&self.prepared, stage_id)?;
        let mut client = self.connect(target, "reset")?;
        reset::reset(&mut client, (&self.prepared, target), stage, options)
    }

    fn apply_stages<C: GenericClient>(
        &self,
        conn: &mut C,
        target: &Target,
        options: &ApplyOptions,
        selection: &[(&PreparedStage<'_>, bool, Option<String>)],
        observer: &dyn Observer,
    ) -> Result<RunReport, EngineError> {
        ledger::ensure(conn)?;
        let mut done = ledger::done_results(conn, &self.plan().name)?;
        if options.dry_run && !options.hold_locks {
            self.refuse_held_locks(selection, &done)?;
        }
        let mut report = RunReport::new(
            Command::Apply,
            &self.plan().name,
            target,
            &target.source,
            options.dry_run,
        );

        // Drift is decided up front: nothing runs while an applied stage has changed.
        // A refused run (drift, history) is decided before a run id is taken: it ran
        // nothing and leaves no row in the ledger, as `plan` leaves none.
        let no_checkpoints = BTreeMap::new();
        let decisions = decide(selection, &done, &no_checkpoints);
        if !options.allow_drift && decisions.iter().any(|d| d.disposition.is_drifted()) {
            return Ok(self.refuse_drift(report, &decisions));
        }
        if let Some(refusal) = self.refuse_history(&done, options, selection, &report)? {
            return Ok(refusal);
        }

        let run_id = ledger::start_run(
            conn,
            &NewRun {
                plan_name: &self.plan().name,
                plan_checksum: &self.plan_checksum(),
                command: if options.dry_run {
                    "apply --dry-run"
                } else {
                    "apply"
                },
                target: &target.to_string(),
            },
        )?;
        // A dry run's row rolls back with everything else: it has no run id to show.
        report.run_id = (!options.dry_run).then_some(run_id);
        self.settle_history(conn, run_id, &mut done, options, selection, &mut report)?;

        let mut run = RunContext::new(&self.prepared, target, options.into(), observer, run_id);
        run.captures = ledger::recorded_captures(&done);
        let decisions = decide(selection, &done, &no_checkpoints);
        // The blocker watch (a second connection) serves a stage that takes locks: a
        // run with every stage done already (a fleet's no-op apply) opens none.
        let runs_a_stage = decisions
            .iter()
            .any(|d| matches!(d.disposition, Disposition::Run | Disposition::Resume(_)));
        if !options.dry_run && runs_a_stage {
            if let Ok(row) = conn.query_one("SELECT pg_catalog.pg_backend_pid()", &[]) {
                run.watch = BlockerWatch::start(target, &self.plan().name, row.get(0));
            }
        }
        let committed = self.run_stages(conn, &mut run, &decisions, &mut report)?;
        if report.outcome == RunOutcome::NothingToDo && !committed.is_empty() {
            report.outcome = RunOutcome::Success;
        }
        report.exit_code = report.outcome.exit_code();
        report.backup_file = run.backup_file;
        self.summarise(&mut report, &committed, options);
        ledger::finish_run_reported(conn, run_id, &mut report);
        Ok(report)
    }

    /// Runs the stages `decisions` say run, in order, until one stops the run, each
    /// noted in `report` with the outcome so far; the ids of the stages that committed.
    fn run_stages<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunContext<'_>,
        decisions: &[Decision<'_, '_, '_>],
        report: &mut RunReport,
    ) -> Result<Vec<String>, EngineError> {
        let mut stopped = false;
        let mut committed: Vec<String> = Vec::new();
        for Decision { stage, disposition } in decisions {
            if let Disposition::NotSelected { why, applied, .. } = disposition {
                report
                    .stages
                    .push(not_selected(stage, why, applied.is_some()));
                continue;
            }
            if !stopped && interrupt::requested().is_some() {
                report.outcome = RunOutcome::Interrupted;
                stopped = true;
            }
            if stopped {
                report.stages.push(stage.report(StageStatus::NotRun));
                continue;
            }
            if let Disposition::Applied(recorded) = disposition {
                if recorded.status == ResultStatus::ValidationPending {
                    let stage_report = retry_pending(conn, run, stage, recorded)?;
                    run.observer.stage_finished(&stage_report);
                    let status = stage_report.status;
                    report.stages.push(stage_report);
                    stopped = stops_run(report, stage, status);
                    continue;
                }
            }
            if let Disposition::Applied(recorded) | Disposition::Drifted(recorded) = disposition {
                let drift_accepted = disposition.is_drifted();
                let stage_report =
                    self.already_applied(conn, run, stage, recorded, drift_accepted)?;
                if drift_accepted {
                    committed.push(stage.id.clone());
                }
                run.observer.stage_finished(&stage_report);
                report.stages.push(stage_report);
                continue;
            }
            run.observer.stage_started(stage);
            let stage_report = match self.run_stage(conn, run, stage) {
                Ok(stage_report) => stage_report,
                Err(error) => {
                    // Best effort: the connection may be what failed.
                    let outcome = match interrupt::requested() {
                        Some(_) => RunOutcome::Interrupted.ledger_label(),
                        None => "aborted",
                    };
                    let _ =
                        ledger::finish_run(conn, run.run_id, outcome, run.backup_file.as_deref());
                    return Err(error);
                }
            };
            run.observer.stage_finished(&stage_report);
            let status = stage_report.status;
            report.stages.push(stage_report);
            if matches!(
                status,
                StageStatus::Applied | StageStatus::Skipped | StageStatus::ValidationPending
            ) {
                committed.push(stage.id.clone());
            }
            stopped = stops_run(report, stage, status);
        }
        Ok(committed)
    }

    fn already_applied<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunContext<'_>,
        stage: &PreparedStage<'_>,
        recorded: &RecordedStage,
        drift_accepted: bool,
    ) -> Result<StageReport, EngineError> {
        let mut stage_report = stage.report(StageStatus::AlreadyApplied);
        if drift_accepted {
            stage_report.status = StageStatus::DriftAccepted;
            (stage_report.drift, stage_report.drift_diff) = self.drift(stage, &recorded.definition);
            record_drift_accepted(conn, run, stage, recorded)?;
        }
        stage_report.note = Some(format!(
            "{} in run {} at {}",
            recorded.status, recorded.run_id, recorded.finished_at
        ));
        Ok(stage_report)
    }

    fn run_stage<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunContext<'_>,
        stage: &PreparedStage<'_>,
    ) -> Result<StageReport, EngineError> {
        if let Some(watch) = &run.watch {
            // Blockers seen during an earlier stage are not this stage's.
            watch.take();
        }
        run.lock_retries.clear();
        // Each stage starts from a clean session, as psql starts each file: a `SET`
        // (not `SET LOCAL`) of an earlier stage's SQL does not carry over; planrun's
        // own session settings are set again.
        conn.batch_execute("RESET ALL")
            .and_then(|()| crate::db::connect::watch_for_vanished_client(conn))
            .map_err(EngineError::database(format!(
                "cannot reset the session before stage `{}`",
                stage.id
            )))?;
        let mut stage_report = match &stage.batched {
            Some(batched) => run_batched_stage(conn, run, stage, batched)?,
            None => run_atomic(conn, run, stage)?,
        };
        say_what_remains(conn, self.plan(), stage, &mut stage_report)?;
        validate_after_commit(conn, run, stage, &mut stage_report)?;
        stage_report.lock_retries = std::mem::take(&mut run.lock_retries);
        Ok(stage_report)
    }
}

/// The report of a stage the options leave out (why), already applied if an earlier
/// run `applied` it.
fn not_selected(stage: &PreparedStage<'_>, why: &Option<String>, applied: bool) -> StageReport {
    let mut stage_report = stage.report(StageStatus::NotSelected);
    stage_report.note = why.clone();
    if applied {
        stage_report.status = StageStatus::AlreadyApplied;
    }
    stage_report
}

/// What a stage that ran with `status` makes of the run's outcome; whether the run
/// stops after it.
fn stops_run(report: &mut RunReport, stage: &Stage, status: StageStatus) -> bool {
    match status {
        StageStatus::Applied | StageStatus::Skipped => {
            if report.outcome == RunOutcome::NothingToDo {
                report.outcome = RunOutcome::Success;
            }
            false
        }
        // Committed, its key NOT VALID: the stages after it may run (the key checks
        // every new write; only the rows it held before are unproved), and the run
        // says so in its exit code.
        StageStatus::ValidationPending => {
            if matches!(
                report.outcome,
                RunOutcome::NothingToDo | RunOutcome::Success
            ) {
                report.outcome = RunOutcome::ValidationPending;
            }
            false
        }
        StageStatus::Blocked => {
            report.outcome = RunOutcome::PreconditionFailed;
            true
        }
        StageStatus::Interrupted => {
            report.outcome = RunOutcome::Interrupted;
            true
        }
        StageStatus::Drifted => {
            report.outcome = RunOutcome::Drift;
            report.summary.push(format!(
                "stopped at `{}`: a half-done batched stage changed since it started; \
                 restore its definition and run `planrun apply` again to finish it",
                stage.id
            ));
            true
        }
        _ => true,
    }
}
