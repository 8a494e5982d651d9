//! Applying a plan: validate, connect, lock, then stage by stage in DAG order — done
//! already? drift? skip rules, preconditions (fail closed), captures, backup before
//! the first change, steps, verification as the gate before commit, ledger row in
//! the same transaction. Also the read-only `plan` preview and `verify`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use planrun_plan::{Check, Dag, Plan, SkipRule, Stage, StepKind};
use planrun_transform::{
    transform_params, NoProgress, Progress, Registry, TransformContext, TransformError,
};
use postgres::error::ErrorPosition;
use postgres::{Client, GenericClient, SimpleQueryMessage};

use crate::backup;
use crate::batched::batched_step;
use crate::captures;
use crate::checksum::{self, Definition, StageDefinition};
use crate::connect::{error_chain, redact, Target};
use crate::error::EngineError;
use crate::interrupt;
use crate::ledger::{self, NewRun, RecordedStage, StageRecord};
use crate::lock;
use crate::report::{
    CheckResult, RunOutcome, RunReport, SqlDiff, StageError, StageReport, StageStatus, StepReport,
};
use crate::sql::position_to_line_column;
use crate::stage_locks::{lock_tables, with_lock_retries, LockRetry};
use crate::watch::BlockerWatch;

/// How `apply` runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Everything in one transaction, rolled back at the end.
    pub dry_run: bool,
    pub include_optional: bool,
    /// `--stage`: run these (and what they depend on) only.
    pub stages: Vec<String>,
    /// `--until`: stop after this stage.
    pub until: Option<String>,
    pub allow_drift: bool,
    /// Where to write the backup; `None` for `--no-backup`.
    pub backup_dir: Option<PathBuf>,
    /// How long to wait for another apply's lock.
    pub lock_wait: Duration,
    /// Ledger history the user accepted: missing stages, renames, order.
    pub history: crate::history::HistoryAcceptance,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            dry_run: false,
            include_optional: false,
            stages: Vec::new(),
            until: None,
            allow_drift: false,
            backup_dir: None,
            lock_wait: Duration::from_secs(5),
            history: Default::default(),
        }
    }
}

/// Hears about a run while it happens (the CLI prints stage lines and progress bars).
pub trait Observer {
    fn stage_started(&self, _stage: &Stage) {}
    fn stage_finished(&self, _report: &StageReport) {}
    /// A statement of a SQL step ran for `_elapsed` and succeeded; the next one has not
    /// started (the rehearsal's lock trace reads the locks it took).
    fn statement_finished(&self, _statement: &str, _elapsed: std::time::Duration) {}
    fn backup_taken(&self, _file: &std::path::Path) {}
    /// Something the user should know that does not stop the run.
    fn warning(&self, _text: &str) {}
    /// What the run is doing now, when it is not obvious (waiting, catching up).
    fn note(&self, _text: &str) {}
    /// A lock attempt of `stage` timed out; it is tried again after `retry.retry_in_ms`.
    fn lock_retry(&self, _stage: &str, _retry: &LockRetry) {}
    fn progress(&self) -> &dyn Progress {
        &NoProgress
    }
}

/// An observer that hears nothing.
pub struct Silent;
impl Observer for Silent {}

/// What the checks before a stage decided.
pub(crate) enum Gate {
    /// A skip rule holds: record the stage as skipped.
    Skip,
    /// A precondition or capture failed: roll back and stop.
    Stop,
    Proceed,
}

/// What one `apply` carries from stage to stage.
pub(crate) struct RunState<'r> {
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
    pub(crate) lock_retries: std::sync::Mutex<Vec<LockRetry>>,
}

impl<'r> RunState<'r> {
    pub(crate) fn new(
        target: &'r Target,
        options: &'r ApplyOptions,
        observer: &'r dyn Observer,
        run_id: i64,
    ) -> RunState<'r> {
        RunState {
            target,
            options,
            observer,
            run_id,
            captures: BTreeMap::new(),
            changed_anything: false,
            backup_file: None,
            watch: None,
            lock_retries: Default::default(),
        }
    }
}

/// A plan ready to run: validated, ordered, with its registry.
pub struct Runner<'a> {
    plan: &'a Plan,
    registry: &'a Registry,
    dag: Dag,
    definitions: Vec<StageDefinition>,
    checksums: Vec<String>,
    /// The definitions and checksums a planrun before token fingerprints recorded for
    /// the same stages.
    legacy_definitions: Vec<StageDefinition>,
    legacy_checksums: Vec<String>,
    /// Per stage, the lock-analysis findings its `allow` accepts, with their reasons:
    /// recorded in the ledger with each result, so that who accepted what stays known.
    accepted_findings: Vec<serde_json::Value>,
    setup_sql: Option<String>,
}

impl<'a> Runner<'a> {
    /// Prepares `plan` (already loaded with [`Plan::load_checked`]).
    pub fn new(plan: &'a Plan, registry: &'a Registry) -> Result<Runner<'a>, EngineError> {
        let dag = Dag::build(plan)
            .map_err(|_| EngineError::Selection("the plan has a dependency cycle".into()))?;
        let definitions = plan
            .stages
            .iter()
            .map(|stage| checksum::definition(stage, registry))
            .collect::<Result<Vec<_>, _>>()?;
        let checksums = definitions
            .iter()
            .map(|definition| checksum::checksum(&definition.entries))
            .collect();
        let legacy_definitions: Vec<StageDefinition> =
            definitions.iter().map(StageDefinition::legacy).collect();
        let legacy_checksums = legacy_definitions
            .iter()
            .map(|definition| checksum::checksum(&definition.entries))
            .collect();
        let setup_sql = match &plan.setup_sql_file {
            Some((_, _, resolved)) => Some(checksum::read_sql_file(resolved)?),
            None => None,
        };
        let accepted_findings = accepted_findings(plan, &dag, registry);
        let runner = Runner {
            plan,
            registry,
            dag,
            definitions,
            checksums,
            legacy_definitions,
            legacy_checksums,
            accepted_findings,
            setup_sql,
        };
        for index in 0..plan.stages.len() {
            batched_step(&runner, index)?;
        }
        Ok(runner)
    }

    /// The plan checksum: its stages' checksums in order.
    pub fn plan_checksum(&self) -> String {
        let mut all: Definition = Definition::new();
        for (stage, checksum) in self.plan.stages.iter().zip(&self.checksums) {
            all.insert(stage.id.clone(), checksum.clone());
        }
        if let Some(setup) = &self.setup_sql {
            all.insert("(setup)".into(), setup.clone());
        }
        checksum::checksum(&all)
    }

    /// Whether `recorded`, a checksum the ledger holds for stage `index`, is this
    /// stage's definition: today's, or the same definition as an older planrun
    /// fingerprinted it (so an upgrade shows no drift).
    pub(crate) fn matches_recorded(&self, index: usize, recorded: &str) -> bool {
        recorded == self.checksums[index] || recorded == self.legacy_checksums[index]
    }

    pub fn stage_checksum(&self, id: &str) -> Option<&str> {
        self.plan
            .stage_position(id)
            .map(|index| self.checksums[index].as_str())
    }

    /// The ids of the stages `options` select, in run order (whether or not they have
    /// run before).
    pub fn selected_stages(&self, options: &ApplyOptions) -> Result<Vec<&str>, EngineError> {
        Ok(self
            .selection(options)?
            .into_iter()
            .filter(|(_, selected, _)| *selected)
            .map(|(index, _, _)| self.plan.stages[index].id.as_str())
            .collect())
    }

    /// Stage indexes in order, each with whether it is selected.
    pub(crate) fn selection(
        &self,
        options: &ApplyOptions,
    ) -> Result<Vec<(usize, bool, Option<String>)>, EngineError> {
        let mut named: BTreeSet<usize> = BTreeSet::new();
        for id in options.stages.iter().chain(&options.until) {
            if self.plan.stage_position(id).is_none() {
                let ids: Vec<&str> = self.plan.stages.iter().map(|s| s.id.as_str()).collect();
                return Err(EngineError::Selection(format!(
                    "no stage `{id}` in plan {}; stages: {}",
                    self.plan.name,
                    ids.join(", ")
                )));
            }
        }
        for id in &options.stages {
            let index = self.plan.stage_position(id).expect("checked above");
            named.insert(index);
            named.extend(self.dag.ancestors(index));
        }
        let until_position = options.until.as_ref().map(|id| {
            let index = self.plan.stage_position(id).expect("checked above");
            self.dag
                .order()
                .iter()
                .position(|&i| i == index)
                .expect("every stage is ordered")
        });
        Ok(self
            .dag
            .order()
            .iter()
            .enumerate()
            .map(|(position, &index)| {
                let stage = &self.plan.stages[index];
                let (selected, why) = if until_position.is_some_and(|until| position > until) {
                    (
                        false,
                        Some(format!(
                            "after --until {}",
                            options.until.as_deref().unwrap_or("")
                        )),
                    )
                } else if !options.stages.is_empty() {
                    if named.contains(&index) {
                        (true, None)
                    } else {
                        (false, Some("not named by --stage".into()))
                    }
                } else if stage.optional && !options.include_optional {
                    (
                        false,
                        Some("optional: run with --include-optional or --stage".into()),
                    )
                } else {
                    (true, None)
                };
                (index, selected, why)
            })
            .collect())
    }

    pub(crate) fn connect(&self, target: &Target, command: &str) -> Result<Client, EngineError> {
        let mut client = target.connect(&format!("planrun {command} {}", self.plan.name))?;
        self.run_setup(&mut client)?;
        Ok(client)
    }

    /// The plan's `setup_sql_file`, on `conn` (a read-only command runs it inside its
    /// rolled-back transaction, so even its temporary objects leave no trace).
    pub(crate) fn run_setup<C: GenericClient>(&self, conn: &mut C) -> Result<(), EngineError> {
        if let Some(setup) = &self.setup_sql {
            conn.batch_execute(setup)
                .map_err(EngineError::database("the plan's setup_sql_file failed"))?;
        }
        Ok(())
    }

    pub(crate) fn plan(&self) -> &Plan {
        self.plan
    }

    pub(crate) fn dag(&self) -> &Dag {
        &self.dag
    }

    pub(crate) fn registry(&self) -> &Registry {
        self.registry
    }

    /// Stage `index`'s definition, SQL fingerprinted by tokens.
    pub(crate) fn definition(&self, index: usize) -> &StageDefinition {
        &self.definitions[index]
    }

    /// How stage `index` differs from `recorded` (its ledger definition), for the
    /// report: one line per changed entry, and line diffs of the changed SQL. The
    /// current definition is taken in the form `recorded` was written in, so a ledger
    /// row from before token fingerprints (`sha256:` entries) lists only what changed.
    pub(crate) fn drift(
        &self,
        index: usize,
        recorded: &StageDefinition,
    ) -> (Vec<String>, Vec<SqlDiff>) {
        let legacy = recorded
            .entries
            .values()
            .any(|value| value.contains("sha256:"))
            && !recorded
                .entries
                .values()
                .any(|value| value.contains("tokens:"));
        let current = if legacy {
            &self.legacy_definitions[index]
        } else {
            &self.definitions[index]
        };
        (
            checksum::differences(recorded, current),
            checksum::sql_diffs(recorded, current),
        )
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
                .filter(|(index, selected, _)| *selected && !self.plan.stages[*index].transaction)
                .map(|(index, _, _)| self.plan.stages[*index].id.as_str())
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
        lock::acquire(&mut client, &self.plan.name, options.lock_wait)?;
        let result = if options.dry_run {
            let mut outer = client.transaction().map_err(EngineError::database(
                "cannot begin the dry-run transaction",
            ))?;
            let report = self.apply_stages(&mut outer, target, options, &selection, observer);
            let _ = outer.rollback();
            report
        } else {
            self.apply_stages(&mut client, target, options, &selection, observer)
        };
        lock::release(&mut client, &self.plan.name);
        interrupt::acknowledge();
        result
    }

    fn apply_stages<C: GenericClient>(
        &self,
        conn: &mut C,
        target: &Target,
        options: &ApplyOptions,
        selection: &[(usize, bool, Option<String>)],
        observer: &dyn Observer,
    ) -> Result<RunReport, EngineError> {
        ledger::ensure(conn)?;
        let mut done = ledger::done_results(conn, &self.plan.name)?;
        let mut report = RunReport::new(
            "apply",
            &self.plan.name,
            target.to_string(),
            options.dry_run,
        );

        // Drift is decided up front: nothing runs while an applied stage has changed.
        let mut drifted = Vec::new();
        for &(index, _, _) in selection {
            let stage = &self.plan.stages[index];
            if let Some(recorded) = done.get(&stage.id) {
                if !self.matches_recorded(index, &recorded.checksum) {
                    drifted.push(index);
                }
            }
        }
        // A refused run (drift, history) is decided before a run id is taken: it ran
        // nothing and leaves no row in the ledger, as `plan` leaves none.
        if !drifted.is_empty() && !options.allow_drift {
            for &(index, selected, ref why) in selection {
                let stage = &self.plan.stages[index];
                let mut stage_report = self.stage_report(index, StageStatus::NotRun);
                if drifted.contains(&index) {
                    stage_report.status = StageStatus::Drifted;
                    (stage_report.drift, stage_report.drift_diff) =
                        self.drift(index, &done[&stage.id].definition);
                } else if !selected {
                    stage_report.status = StageStatus::NotSelected;
                    stage_report.note = why.clone();
                } else if done.contains_key(&stage.id) {
                    stage_report.status = StageStatus::AlreadyApplied;
                }
                report.stages.push(stage_report);
            }
            let ids: Vec<&str> = drifted
                .iter()
                .map(|&i| self.plan.stages[i].id.as_str())
                .collect();
            report.outcome = RunOutcome::Drift;
            report.summary.push(format!(
                "nothing ran, nothing recorded: applied stage{} {} changed since {} ran",
                if ids.len() == 1 { "" } else { "s" },
                ids.join(", "),
                if ids.len() == 1 { "it" } else { "they" },
            ));
            report.summary.push(
                "next: restore the stage definitions that ran, or accept the change with `planrun apply --allow-drift`".into(),
            );
            report.exit_code = report.outcome.exit_code();
            return Ok(report);
        }
        if let Some(refusal) = self.refuse_history(&done, options, selection, &report)? {
            return Ok(refusal);
        }

        let run_id = ledger::start_run(
            conn,
            &NewRun {
                plan_name: &self.plan.name,
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

        let mut run = RunState {
            target,
            options,
            observer,
            run_id,
            captures: done
                .values()
                .flat_map(|recorded| recorded.captures.clone())
                .collect(),
            changed_anything: false,
            backup_file: None,
            watch: None,
            lock_retries: Default::default(),
        };
        if !options.dry_run {
            if let Ok(row) = conn.query_one("SELECT pg_catalog.pg_backend_pid()", &[]) {
                run.watch = BlockerWatch::start(target, &self.plan.name, row.get(0));
            }
        }
        let mut stopped = false;
        let mut committed: Vec<String> = Vec::new();
        for &(index, selected, ref why) in selection {
            let stage = &self.plan.stages[index];
            if !selected {
                let mut stage_report = self.stage_report(index, StageStatus::NotSelected);
                stage_report.note = why.clone();
                if done.contains_key(&stage.id) {
                    stage_report.status = StageStatus::AlreadyApplied;
                }
                report.stages.push(stage_report);
                continue;
            }
            if !stopped && interrupt::requested().is_some() {
                report.outcome = RunOutcome::Interrupted;
                stopped = true;
            }
            if stopped {
                report
                    .stages
                    .push(self.stage_report(index, StageStatus::NotRun));
                continue;
            }
            if let Some(recorded) = done.get(&stage.id) {
                let mut stage_report = self.stage_report(index, StageStatus::AlreadyApplied);
                if drifted.contains(&index) {
                    stage_report.status = StageStatus::DriftAccepted;
                    (stage_report.drift, stage_report.drift_diff) =
                        self.drift(index, &recorded.definition);
                    self.record_drift_accepted(conn, run_id, index, recorded)?;
                    committed.push(stage.id.clone());
                }
                stage_report.note = Some(format!(
                    "{} in run {} at {}",
                    recorded.status, recorded.run_id, recorded.finished_at
                ));
                observer.stage_finished(&stage_report);
                report.stages.push(stage_report);
                continue;
            }
            observer.stage_started(stage);
            let stage_report = match self.run_stage(conn, &mut run, index) {
                Ok(stage_report) => stage_report,
                Err(error) => {
                    // Best effort: the connection may be what failed.
                    let outcome = match interrupt::requested() {
                        Some(_) => RunOutcome::Interrupted.ledger_label(),
                        None => "aborted",
                    };
                    let _ = ledger::finish_run(conn, run_id, outcome, run.backup_file.as_deref());
                    return Err(error);
                }
            };
            observer.stage_finished(&stage_report);
            let status = stage_report.status;
            report.stages.push(stage_report);
            match status {
                StageStatus::Applied | StageStatus::Skipped => {
                    committed.push(stage.id.clone());
                    if report.outcome == RunOutcome::NothingToDo {
                        report.outcome = RunOutcome::Success;
                    }
                }
                StageStatus::Blocked => {
                    report.outcome = RunOutcome::PreconditionFailed;
                    stopped = true;
                }
                StageStatus::Interrupted => {
                    report.outcome = RunOutcome::Interrupted;
                    stopped = true;
                }
                StageStatus::Drifted => {
                    report.outcome = RunOutcome::Drift;
                    report.summary.push(format!(
                        "stopped at `{}`: a half-done batched stage changed since it started; \
                         restore its definition and run `planrun apply` again to finish it",
                        stage.id
                    ));
                    stopped = true;
                }
                _ => {
                    stopped = true;
                }
            }
        }
        if report.outcome == RunOutcome::NothingToDo && !committed.is_empty() {
            report.outcome = RunOutcome::Success;
        }
        report.exit_code = report.outcome.exit_code();
        report.backup_file = run.backup_file;
        self.summarise(&mut report, &committed, options);
        if let Err(error) = ledger::finish_run(
            conn,
            run_id,
            report.outcome.ledger_label(),
            report.backup_file.as_deref(),
        ) {
            report.summary.push(format!(
                "the run's outcome could not be recorded in the ledger: {error}"
            ));
        }
        Ok(report)
    }

    fn summarise(&self, report: &mut RunReport, committed: &[String], options: &ApplyOptions) {
        let verb = if options.dry_run {
            "would commit (dry run, rolled back)"
        } else {
            "committed"
        };
        if !committed.is_empty() {
            report
                .summary
                .push(format!("{verb}: {}", committed.join(", ")));
        }
        if report.outcome == RunOutcome::Interrupted {
            self.summarise_interruption(report);
            return;
        }
        let failed = report
            .stages
            .iter()
            .find(|stage| matches!(stage.status, StageStatus::Failed | StageStatus::Blocked));
        if let Some(failed) = failed {
            let not_run: Vec<&str> = report
                .stages
                .iter()
                .filter(|stage| stage.status == StageStatus::NotRun)
                .map(|stage| stage.id.as_str())
                .collect();
            report.summary.push(format!(
                "not committed: {}{}",
                failed.id,
                if not_run.is_empty() {
                    String::new()
                } else {
                    format!("; not run: {}", not_run.join(", "))
                }
            ));
            let next = match failed.status {
                StageStatus::Blocked => format!(
                    "next: make the failed precondition of `{}` hold (see above), then run `planrun apply {}` again",
                    failed.id,
                    self.plan.path.display()
                ),
                _ => format!(
                    "next: fix the cause above, check with `planrun plan {}`, then run `planrun apply {}` again; committed stages will not run twice",
                    self.plan.path.display(),
                    self.plan.path.display()
                ),
            };
            report.summary.push(next);
            report.outcome = match (report.outcome, failed.status) {
                (RunOutcome::PreconditionFailed, _) | (_, StageStatus::Blocked) => {
                    RunOutcome::PreconditionFailed
                }
                _ if failed.verifications.iter().any(|v| !v.passed) && failed.error.is_none() => {
                    RunOutcome::VerificationFailed
                }
                _ => RunOutcome::StepFailed,
            };
            report.exit_code = report.outcome.exit_code();
        } else if report.outcome == RunOutcome::NothingToDo {
            report
                .summary
                .push("nothing to do: every selected stage is already applied".into());
        }
    }

    /// What an interrupted run leaves: the stage rolled back, those not run, the
    /// backup, and how to go on.
    fn summarise_interruption(&self, report: &mut RunReport) {
        let signal = interrupt::requested().map_or("a signal", |interrupted| interrupted.name());
        let ids = |status: StageStatus| -> Vec<&str> {
            report
                .stages
                .iter()
                .filter(|stage| stage.status == status)
                .map(|stage| stage.id.as_str())
                .collect()
        };
        let mut line = format!("interrupted by {signal}");
        for (label, stages) in [
            ("rolled back", ids(StageStatus::Interrupted)),
            ("not run", ids(StageStatus::NotRun)),
        ] {
            if !stages.is_empty() {
                line.push_str(&format!("; {label}: {}", stages.join(", ")));
            }
        }
        let next = format!(
            "next: run `planrun apply {}` again to continue; committed stages will not run twice{}",
            self.plan.path.display(),
            report
                .backup_file
                .as_ref()
                .map(|file| format!(" (the backup taken before the first change: {file})"))
                .unwrap_or_default()
        );
        report.summary.push(line);
        report.summary.push(next);
    }

    pub(crate) fn stage_report(&self, index: usize, status: StageStatus) -> StageReport {
        let stage = &self.plan.stages[index];
        let mut report = StageReport::new(&stage.id, stage.title.as_deref(), status);
        report.optional = stage.optional;
        report.transaction = stage.transaction;
        report.checksum = self.checksums[index].clone();
        report
    }

    fn record_drift_accepted<C: GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        index: usize,
        recorded: &RecordedStage,
    ) -> Result<(), EngineError> {
        let stage = &self.plan.stages[index];
        let captures = serde_json::to_value(&recorded.captures).unwrap_or_default();
        ledger::record_stage(
            conn,
            &StageRecord {
                run_id,
                plan_name: &self.plan.name,
                stage_id: &stage.id,
                status: &recorded.status,
                checksum: &self.checksums[index],
                definition: &self.definitions[index],
                drift_accepted: true,
                skip_reason: recorded.skip_reason.as_deref(),
                started_at: SystemTime::now(),
                duration_ms: 0,
                rows_affected: 0,
                rows_quarantined: 0,
                captures,
                verifications: serde_json::json!([]),
                error: None,
                accepted_findings: self.accepted_findings[index].clone(),
            },
        )
    }

    fn run_stage<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
    ) -> Result<StageReport, EngineError> {
        if let Some(watch) = &run.watch {
            // Blockers seen during an earlier stage are not this stage's.
            watch.take();
        }
        if let Ok(mut retries) = run.lock_retries.lock() {
            retries.clear();
        }
        // Each stage starts from a clean session, as psql starts each file: a `SET`
        // (not `SET LOCAL`) of an earlier stage's SQL does not carry over; planrun's
        // own session settings are set again.
        conn.batch_execute("RESET ALL")
            .and_then(|()| crate::connect::watch_for_vanished_client(conn))
            .map_err(EngineError::database(format!(
                "cannot reset the session before stage `{}`",
                self.plan.stages[index].id
            )))?;
        let mut stage_report = self.run_stage_transactions(conn, run, index)?;
        if let Some(interrupted) = interrupt::requested() {
            // Whatever failed, the signal is why: the cancelled statement, or the
            // check before the next step or the commit.
            if stage_report.status == StageStatus::Failed {
                stage_report.status = StageStatus::Interrupted;
                stage_report.note = Some(format!(
                    "interrupted by {}; everything the stage did was rolled back",
                    interrupted.name()
                ));
            }
        }
        if let Ok(mut retries) = run.lock_retries.lock() {
            stage_report.lock_retries = std::mem::take(&mut *retries);
        }
        Ok(stage_report)
    }

    fn run_stage_transactions<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
    ) -> Result<StageReport, EngineError> {
        if let Some(batched) = batched_step(self, index)? {
            return self.run_batched_stage(conn, run, index, &batched);
        }
        let stage = &self.plan.stages[index];
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut stage_report = self.stage_report(index, StageStatus::Applied);

        let committed = if stage.transaction {
            let mut tx = match conn.transaction() {
                Ok(tx) => tx,
                Err(error) => {
                    fail_at(&mut stage_report, "BEGIN", &error);
                    return Ok(stage_report);
                }
            };
            let body = self
                .stage_body(&mut tx, run, index, &mut stage_report, true)
                .map(|passed| passed && !interrupted_before(&mut stage_report, "COMMIT"));
            match body {
                Ok(true) => {
                    run.observer.progress().phase("committing");
                    stage_report.duration_ms = started.elapsed().as_millis() as u64;
                    let recorded =
                        self.record(&mut tx, run.run_id, index, &stage_report, started_at);
                    match recorded.map(|()| tx.commit()) {
                        Ok(Ok(())) => true,
                        Ok(Err(error)) => {
                            // A lost connection, or a check only COMMIT makes:
                            // nothing of the stage committed.
                            fail_at(&mut stage_report, "COMMIT", &error);
                            false
                        }
                        Err(error) => {
                            stage_report.status = StageStatus::Failed;
                            stage_report.error =
                                Some(plain_error(Some("ledger"), error.to_string()));
                            false
                        }
                    }
                }
                Ok(false) => {
                    let _ = tx.rollback();
                    false
                }
                Err(error) => {
                    let _ = tx.rollback();
                    return Err(error);
                }
            }
        } else {
            let body = self.stage_body(conn, run, index, &mut stage_report, false);
            let _ = conn.batch_execute("RESET lock_timeout; RESET statement_timeout");
            if body? {
                stage_report.duration_ms = started.elapsed().as_millis() as u64;
                self.record(conn, run.run_id, index, &stage_report, started_at)?;
                true
            } else {
                false
            }
        };
        stage_report.duration_ms = started.elapsed().as_millis() as u64;
        if !committed && stage_report.status == StageStatus::Failed {
            self.record_failure(conn, run.run_id, index, &mut stage_report, started_at);
        }
        Ok(stage_report)
    }

    /// Records a failed stage outside its rolled-back transaction, so `status` shows
    /// it. Best effort: when the connection itself is what failed, the report says so
    /// instead of hiding the stage's own error behind the ledger's.
    pub(crate) fn record_failure<C: GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        index: usize,
        stage_report: &mut StageReport,
        started_at: SystemTime,
    ) {
        if let Err(error) = self.record(conn, run_id, index, stage_report, started_at) {
            stage_report.note = Some(format!(
                "the failure could not be recorded in the ledger: {error}"
            ));
        }
    }

    pub(crate) fn record<C: GenericClient>(
        &self,
        conn: &mut C,
        run_id: i64,
        index: usize,
        stage_report: &StageReport,
        started_at: SystemTime,
    ) -> Result<(), EngineError> {
        let stage = &self.plan.stages[index];
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
                plan_name: &self.plan.name,
                stage_id: &stage.id,
                status,
                checksum: &self.checksums[index],
                definition: &self.definitions[index],
                drift_accepted: false,
                skip_reason: stage_report.note.as_deref().filter(|_| status == "skipped"),
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
                accepted_findings: self.accepted_findings[index].clone(),
            },
        )
    }

    /// The stage's work; `Ok(true)` to commit, `Ok(false)` to roll back (the report
    /// says why), `Err` when planrun itself cannot go on.
    fn stage_body<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
        stage_report: &mut StageReport,
        in_transaction: bool,
    ) -> Result<bool, EngineError> {
        self.set_timeouts(conn, index, in_transaction)?;
        if in_transaction && !self.take_stage_locks(conn, run, index, stage_report)? {
            return Ok(false);
        }
        match self.gate(conn, run, index, stage_report)? {
            Gate::Skip => return Ok(true),
            Gate::Stop => return Ok(false),
            Gate::Proceed => {}
        }
        let steps = 0..self.plan.stages[index].steps.len();
        if !self.run_steps(conn, run, index, steps, stage_report, in_transaction)? {
            return Ok(false);
        }
        if in_transaction {
            run.observer
                .progress()
                .phase("checking deferred constraints");
            if !check_deferred_constraints(conn, stage_report) {
                return Ok(false);
            }
        }
        Ok(self.verify_stage(conn, run, index, stage_report))
    }

    /// `SET [LOCAL] lock_timeout / statement_timeout` for the stage.
    pub(crate) fn set_timeouts<C: GenericClient>(
        &self,
        conn: &mut C,
        index: usize,
        in_transaction: bool,
    ) -> Result<(), EngineError> {
        let stage = &self.plan.stages[index];
        let timeouts = stage.timeouts.or(&self.plan.timeouts);
        let scope = if in_transaction { "SET LOCAL" } else { "SET" };
        let mut settings = String::new();
        if let Some(timeout) = &timeouts.lock_timeout {
            settings.push_str(&format!(
                "{scope} lock_timeout = '{}';",
                timeout.as_setting()
            ));
        }
        if let Some(timeout) = &timeouts.statement_timeout {
            settings.push_str(&format!(
                "{scope} statement_timeout = '{}';",
                timeout.as_setting()
            ));
        }
        if settings.is_empty() {
            return Ok(());
        }
        conn.batch_execute(&settings)
            .map_err(EngineError::database(format!(
                "cannot set the timeouts of stage `{}`",
                stage.id
            )))
    }

    /// Skip rules, preconditions (fail closed), captures, and the backup before the
    /// run's first change.
    pub(crate) fn gate<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
        stage_report: &mut StageReport,
    ) -> Result<Gate, EngineError> {
        let stage = &self.plan.stages[index];
        for rule in &stage.skip_if {
            let result = skip_rule_now(conn, rule, &run.captures);
            let holds = result.passed;
            stage_report.skip_rules.push(result);
            if holds {
                stage_report.status = StageStatus::Skipped;
                stage_report.note = Some(rule.reason.clone());
                return Ok(Gate::Skip);
            }
        }

        for check in &stage.preconditions {
            let result = check_now(conn, check, &run.captures);
            let passed = result.passed;
            stage_report.preconditions.push(result);
            if !passed {
                stage_report.status = StageStatus::Blocked;
                return Ok(Gate::Stop);
            }
        }

        if !self.take_captures(conn, run, index, stage_report) {
            return Ok(Gate::Stop);
        }

        if !run.changed_anything && !run.options.dry_run {
            if let Some(dir) = &run.options.backup_dir {
                let stage = &self.plan.stages[index];
                let lock_wait = stage.timeouts.or(&self.plan.timeouts).lock_timeout;
                run.observer
                    .progress()
                    .phase("writing the backup (pg_dump)");
                let file = backup::take(run.target, dir, &self.plan.name, lock_wait.as_ref())?;
                run.observer.backup_taken(&file);
                let file = file.display().to_string();
                // Recorded now, outside the stage's transaction: whatever happens
                // next, the ledger says where the backup is.
                if let Err(error) = run
                    .target
                    .connect("planrun ledger")
                    .and_then(|mut side| ledger::record_backup(&mut side, run.run_id, &file))
                {
                    run.observer.warning(&format!(
                        "the backup {file} could not be recorded in the ledger yet ({error}); the run's end records it"
                    ));
                }
                run.backup_file = Some(file);
            }
        }
        run.changed_anything = true;
        Ok(Gate::Proceed)
    }

    /// Reads the stage's captures; `false` (and the stage marked failed) when one fails.
    pub(crate) fn take_captures<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
        stage_report: &mut StageReport,
    ) -> bool {
        let stage = &self.plan.stages[index];
        let values = captures::read(conn, &stage.captures, &run.captures);
        let kept = self.keep_captures(values, run, stage_report);
        stage_report.computed.clear();
        for capture in stage.captures.iter().filter(|c| c.expr.is_some()) {
            let name = capture.label();
            let value = stage_report.captures.get(&name).cloned().flatten();
            stage_report.computed.push((name, value));
        }
        kept
    }

    fn keep_captures(
        &self,
        values: Result<captures::Values, Box<StageError>>,
        run: &mut RunState<'_>,
        stage_report: &mut StageReport,
    ) -> bool {
        match values {
            Ok(values) => {
                for (name, value) in values {
                    run.captures.insert(name.clone(), value.clone());
                    stage_report.captures.insert(name, value);
                }
                true
            }
            Err(failure) => {
                stage_report.status = StageStatus::Failed;
                stage_report.error = Some(*failure);
                false
            }
        }
    }

    /// Runs the stage's steps in `range`; `Ok(false)` when one failed (the report
    /// says where).
    pub(crate) fn run_steps<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        index: usize,
        range: std::ops::Range<usize>,
        stage_report: &mut StageReport,
        in_transaction: bool,
    ) -> Result<bool, EngineError> {
        let stage = &self.plan.stages[index];
        for position in range {
            let step = &stage.steps[position];
            if interrupted_before(stage_report, &format!("step `{}`", step.name)) {
                return Ok(false);
            }
            let step_started = Instant::now();
            run.observer
                .progress()
                .phase(&format!("running {}", step.name));
            // The SQL read once, when the stage's checksum was computed: what runs is
            // what the ledger records.
            let sql = self.definitions[index]
                .step_sql(position, &step.name)
                .unwrap_or_default();
            let (kind, result) = match &step.kind {
                StepKind::Sql { .. } => (
                    "sql",
                    self.run_sql(conn, run, stage, sql, None, in_transaction, &step.name),
                ),
                StepKind::SqlFile { path, .. } => {
                    let file = Some(path.as_str());
                    (
                        "sql_file",
                        self.run_sql(conn, run, stage, sql, file, in_transaction, &step.name),
                    )
                }
                StepKind::Transform { name, params, .. } => (
                    "transform",
                    self.run_transform(conn, run, name, params, stage),
                ),
            };
            match result {
                Ok(mut step_report) => {
                    step_report.kind = kind.into();
                    step_report.duration_ms = step_started.elapsed().as_millis() as u64;
                    stage_report.rows_affected += step_report.rows_affected;
                    stage_report.rows_quarantined += step_report.rows_quarantined.unwrap_or(0);
                    stage_report.steps.push(step_report);
                }
                Err(mut error) => {
                    explain_timeout(&mut error, run, stage, &self.plan.timeouts);
                    stage_report.status = StageStatus::Failed;
                    stage_report.error = Some(*error);
                    return Ok(false);
                }
            }
            if !self.verify_after_step(conn, run, stage, &step.name, stage_report) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs every verification; `false` (and the stage marked failed) unless all pass.
    pub(crate) fn verify_stage<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        index: usize,
        stage_report: &mut StageReport,
    ) -> bool {
        let checks = self.plan.stages[index]
            .verify
            .iter()
            .filter(|check| check.after_step.is_none());
        self.run_checks(conn, run, checks, stage_report)
    }

    /// Runs the verifications placed right after step `step` (`after_step`); `false`
    /// (and the stage marked failed) unless all pass.
    pub(crate) fn verify_after_step<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        stage: &Stage,
        step: &str,
        stage_report: &mut StageReport,
    ) -> bool {
        let checks = stage.verify.iter().filter(|check| {
            check
                .after_step
                .as_ref()
                .is_some_and(|(after, _)| after == step)
        });
        self.run_checks(conn, run, checks, stage_report)
    }

    /// Runs `checks` as verifications; `false` (and the stage marked failed) unless
    /// all pass.
    fn run_checks<'c, C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        checks: impl Iterator<Item = &'c Check>,
        stage_report: &mut StageReport,
    ) -> bool {
        let checks: Vec<&Check> = checks.collect();
        if !checks.is_empty() {
            run.observer.progress().phase(&format!(
                "running {} check{}",
                checks.len(),
                if checks.len() == 1 { "" } else { "s" }
            ));
        }
        let mut all_passed = true;
        for check in checks {
            let result = check_now(conn, check, &run.captures);
            all_passed &= result.passed;
            stage_report.verifications.push(result);
        }
        if !all_passed {
            stage_report.status = StageStatus::Failed;
        }
        all_passed
    }

    fn run_transform<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        name: &str,
        params: &toml::Table,
        stage: &Stage,
    ) -> Result<StepReport, Box<StageError>> {
        let Some(transform) = self.registry.get(name) else {
            return Err(Box::new(plain_error(
                Some(name),
                format!("transform `{name}` is not registered in this planrun"),
            )));
        };
        let retries = self.lock_retries(stage);
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
                    lock_tables(tx, &transform.locks(&params))?;
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

/// Adds to a lock or statement timeout which sessions blocked the stage and which
/// timeout fired, from the blocker watch.
pub(crate) fn explain_timeout(
    error: &mut StageError,
    run: &RunState<'_>,
    stage: &Stage,
    plan_timeouts: &planrun_plan::Timeouts,
) {
    let timeout = match error.sqlstate.as_deref() {
        Some("55P03") => "lock_timeout",
        // Also what planrun's own cancel on SIGINT/SIGTERM reports.
        Some("57014") if interrupt::requested().is_none() => "statement_timeout",
        _ => return,
    };
    if let Some(watch) = &run.watch {
        error.blocked_by = watch.take();
    }
    let timeouts = stage.timeouts.or(plan_timeouts);
    let setting = match timeout {
        "lock_timeout" => timeouts.lock_timeout,
        _ => timeouts.statement_timeout,
    };
    let mut hint = format!(
        "stage `{}` ran with {timeout} = {}",
        stage.id,
        setting.map_or_else(|| "the server default".to_owned(), |d| d.to_string())
    );
    match error.blocked_by.as_slice() {
        [] => {}
        blockers => {
            let names: Vec<String> = blockers.iter().map(ToString::to_string).collect();
            error
                .message
                .push_str(&format!("; blocked by {}", names.join("; ")));
            hint.push_str(
                "; wait for the blocking session to finish, or end it, then run apply again",
            );
        }
    }
    error.hint = Some(match error.hint.take() {
        Some(existing) => format!("{existing}; {hint}"),
        None => hint,
    });
}

/// Checks now the constraints the steps deferred (`DEFERRABLE INITIALLY DEFERRED`, or
/// `SET CONSTRAINTS ... DEFERRED`), so that a violation fails the stage with its
/// SQLSTATE and constraint before verification, rather than at `COMMIT`; `false` (and
/// the stage marked failed) when one is violated.
pub(crate) fn check_deferred_constraints<C: GenericClient>(
    conn: &mut C,
    stage_report: &mut StageReport,
) -> bool {
    match conn.batch_execute("SET CONSTRAINTS ALL IMMEDIATE") {
        Ok(()) => true,
        Err(error) => {
            fail_at(stage_report, "deferred constraints", &error);
            false
        }
    }
}

/// Marks the stage failed at `point` (a step name, or `BEGIN` / `COMMIT`) with the
/// database's error.
/// Marks the stage failed (it rolls back) when a signal asked planrun to stop.
pub(crate) fn interrupted_before(stage_report: &mut StageReport, point: &str) -> bool {
    let Some(interrupted) = interrupt::requested() else {
        return false;
    };
    if stage_report.status != StageStatus::Failed {
        stage_report.status = StageStatus::Failed;
        stage_report.error = Some(plain_error(
            None,
            format!("interrupted by {} before {point}", interrupted.name()),
        ));
    }
    true
}

pub(crate) fn fail_at(stage_report: &mut StageReport, point: &str, error: &postgres::Error) {
    stage_report.status = StageStatus::Failed;
    stage_report.error = Some(stage_error(error, Some(point.to_owned()), None, "", 0));
}

pub(crate) fn plain_error(step: Option<&str>, message: String) -> StageError {
    StageError {
        step: step.map(str::to_owned),
        file: None,
        line: None,
        column: None,
        sqlstate: None,
        message: redact(&message),
        detail: None,
        hint: None,
        statement: None,
        blocked_by: Vec::new(),
    }
}

/// A PostgreSQL error as the report shows it: SQLSTATE, message, detail, hint and the
/// line and column of the failing statement in its SQL text.
pub(crate) fn stage_error(
    error: &postgres::Error,
    step: Option<String>,
    file: Option<&str>,
    sql: &str,
    offset: usize,
) -> StageError {
    let Some(db) = error.as_db_error() else {
        if error.is_closed() {
            return plain_error(
                step.as_deref(),
                "the server closed the connection during this step: the session was \
                 terminated (pg_terminate_backend, a restart) or the server or network went away"
                    .into(),
            );
        }
        return plain_error(step.as_deref(), error_chain(error));
    };
    let (line, column) = match db.position() {
        Some(ErrorPosition::Original(position)) if !sql.is_empty() => {
            let (line, column) = position_to_line_column(sql, offset, *position);
            (Some(line), Some(column))
        }
        // No position: the line where the failing statement starts.
        _ if !sql.is_empty() => (Some(crate::sql::statement_line(sql, offset)), None),
        _ => (None, None),
    };
    let statement = line.and_then(|line| crate::sql::line_at(sql, line));
    StageError {
        step,
        file: file.map(str::to_owned),
        line,
        column,
        sqlstate: Some(db.code().code().to_owned()),
        message: redact(db.message()),
        detail: db.detail().map(redact),
        hint: db.hint().map(str::to_owned),
        statement,
        blocked_by: Vec::new(),
    }
}

/// Rows of a query as text values, as PostgreSQL sends them.
pub(crate) fn query_rows<C: GenericClient>(
    conn: &mut C,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, postgres::Error> {
    let messages = conn.simple_query(sql)?;
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// Runs a check's query inside a savepoint, so a failing query does not abort the
/// stage's transaction, and compares its rows with the expectation.
fn evaluate_query<C: GenericClient>(
    conn: &mut C,
    name: &str,
    sql: &str,
    expect: &planrun_plan::Expectation,
    message: Option<&str>,
    captures: &BTreeMap<String, Option<String>>,
) -> CheckResult {
    let rows = match conn.transaction() {
        Ok(mut savepoint) => {
            let rows = query_rows(&mut savepoint, sql);
            if rows.is_ok() {
                let _ = savepoint.commit();
            } else {
                let _ = savepoint.rollback();
            }
            rows
        }
        Err(error) => Err(error),
    };
    match rows {
        Ok(rows) => {
            let lookup = |name: &str| captures.get(name).cloned();
            CheckResult::from_outcome(name, expect.evaluate(&rows, &lookup), message)
        }
        Err(error) => {
            let text = error
                .as_db_error()
                .map(|db| format!("{} (SQLSTATE {})", db.message(), db.code().code()))
                .unwrap_or_else(|| error_chain(&error));
            CheckResult::error(name, expect.to_string(), redact(&text))
        }
    }
}

pub(crate) fn check_now<C: GenericClient>(
    conn: &mut C,
    check: &Check,
    captures: &BTreeMap<String, Option<String>>,
) -> CheckResult {
    evaluate_query(
        conn,
        &check.name,
        &check.sql,
        &check.expect,
        check.message.as_deref(),
        captures,
    )
}

pub(crate) fn skip_rule_now<C: GenericClient>(
    conn: &mut C,
    rule: &SkipRule,
    captures: &BTreeMap<String, Option<String>>,
) -> CheckResult {
    let mut result = evaluate_query(conn, &rule.reason, &rule.sql, &rule.expect, None, captures);
    // A skip rule that errors does not skip: the stage's own checks decide.
    if result.problem.is_some() {
        result.passed = false;
    }
    result
}

/// Per stage (in plan order), the findings of the lock analysis that its `allow`
/// accepts: `[{rule, reason, relation, place}]`.
fn accepted_findings(plan: &Plan, dag: &Dag, registry: &Registry) -> Vec<serde_json::Value> {
    let impact = plan.lock_impact(dag, registry);
    plan.stages
        .iter()
        .map(|stage| {
            let accepted: Vec<serde_json::Value> = impact
                .iter()
                .filter(|planned| planned.stage == stage.id)
                .flat_map(|planned| &planned.findings)
                .filter_map(|finding| {
                    let reason = finding.allowed.as_ref()?;
                    Some(serde_json::json!({
                        "rule": finding.rule.id(),
                        "reason": reason,
                        "relation": finding.relation,
                        "place": finding.place,
                    }))
                })
                .collect();
            serde_json::Value::Array(accepted)
        })
        .collect()
}
