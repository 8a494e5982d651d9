//! The read-only commands: `planrun plan` (what apply would do now), `planrun verify`
//! (run applied stages' checks again) and `planrun status` (the ledger's view). None
//! of them writes: they work inside a transaction that is rolled back, and read the
//! ledger only if it exists.

use std::collections::{BTreeMap, BTreeSet};

use planrun_report::{
    CheckResult, CheckStatus, Command, RunOutcome, RunReport, StageReport, StageStatus,
    StageStatusLine, StatusReport,
};

use crate::apply::run::Runner;
use crate::apply::selection::is_selected;
use crate::db::connect::Target;
use crate::decide::{decide, Decision, Disposition};
use crate::error::EngineError;
use crate::inspect::supersede::{self, StageChanges};
use crate::ledger::{self, Checkpoint, RecordedStage, ResultStatus};
use crate::online::moving_tables::judge_failure;
use crate::options::ApplyOptions;
use crate::prepared::PreparedStage;
use crate::stage::checks::{check_now, skip_rule_now};

impl Runner<'_> {
    fn read_only_session(
        &self,
        target: &Target,
        command: &str,
    ) -> Result<postgres::Client, EngineError> {
        target.connect(&format!("planrun {command} {}", self.plan().name))
    }

    /// What `apply` with `options` would do now, stage by stage. Writes nothing.
    pub fn preview(
        &self,
        target: &Target,
        options: &ApplyOptions,
    ) -> Result<RunReport, EngineError> {
        let selection = self.selection(options)?;
        let mut client = self.read_only_session(target, "plan")?;
        let mut tx = client.transaction().map_err(EngineError::database(
            "cannot begin a read-only transaction",
        ))?;
        self.run_setup(&mut tx)?;
        let done = ledger::done_results(&mut tx, &self.plan().name)?;
        let checkpoints = ledger::checkpoints(&mut tx, &self.plan().name)?;
        let backlog = backlogs(&mut tx, &self.plan().name, &checkpoints)?;
        let mut preview = Preview {
            report: RunReport::new(
                Command::Plan,
                &self.plan().name,
                target,
                &target.source,
                false,
            ),
            captures: ledger::recorded_captures(&done),
            pending: BTreeSet::new(),
            would_change: false,
        };
        for decision in decide(&selection, &done, &checkpoints) {
            let stage_report = self.preview_stage(&mut tx, &mut preview, &decision, &backlog);
            preview.report.stages.push(stage_report);
        }
        let _ = tx.rollback();
        let history = self
            .history(&done, &|stage| is_selected(&selection, stage))
            .lines();
        Ok(self.finish_preview(preview, target, options, history))
    }

    /// What `plan` says of one stage: its decision, and for one that would run, its
    /// skip rules and preconditions judged now.
    fn preview_stage(
        &self,
        tx: &mut postgres::Transaction<'_>,
        preview: &mut Preview,
        Decision { stage, disposition }: &Decision<'_, '_, '_>,
        backlog: &BTreeMap<String, i64>,
    ) -> StageReport {
        let mut stage_report = stage.report(StageStatus::WouldRun);
        match disposition {
            Disposition::Drifted(recorded)
            | Disposition::NotSelected {
                applied: Some(recorded),
                drifted: true,
                ..
            } => {
                stage_report.status = StageStatus::Drifted;
                (stage_report.drift, stage_report.drift_diff) =
                    self.drift(stage, &recorded.definition);
                preview.report.outcome = RunOutcome::Drift;
            }
            Disposition::Applied(recorded)
            | Disposition::NotSelected {
                applied: Some(recorded),
                ..
            } => {
                stage_report.status = StageStatus::AlreadyApplied;
                stage_report.note = Some(format!(
                    "{} in run {} at {}",
                    recorded.status, recorded.run_id, recorded.finished_at
                ));
                if recorded.status == ResultStatus::ValidationPending {
                    stage_report.status = StageStatus::ValidationPending;
                    stage_report.note = Some(format!(
                        "committed in run {} at {}; {PENDING_NOTE}",
                        recorded.run_id, recorded.finished_at
                    ));
                    preview.would_change = true;
                }
            }
            Disposition::NotSelected { why, .. } => {
                stage_report.status = StageStatus::NotSelected;
                stage_report.note = why.clone();
            }
            Disposition::Resume(checkpoint) => {
                stage_report.note = Some(partial_note(
                    checkpoint,
                    backlog.get(&stage.id).copied().unwrap_or(0),
                ));
                preview.pending.insert(stage.id.clone());
                preview.would_change = true;
            }
            Disposition::Run => judge_now(tx, preview, stage, &mut stage_report),
        }
        if matches!(
            stage_report.status,
            StageStatus::WouldRun | StageStatus::Waiting
        ) && stage.steps_before_commit() < stage.steps.len()
        {
            let after = after_commit_note(stage, &self.plan().variables);
            stage_report.note = Some(match stage_report.note.take() {
                Some(note) => format!("{note}; {after}"),
                None => after,
            });
        }
        stage_report
    }

    /// The lines that end `plan`'s report: the backup, the outcome, the ledger
    /// `history` apply would refuse.
    fn finish_preview(
        &self,
        preview: Preview,
        target: &Target,
        options: &ApplyOptions,
        history: Vec<String>,
    ) -> RunReport {
        let mut report = preview.report;
        if preview.would_change {
            match &options.backup_dir {
                Some(dir) => report.summary.push(format!(
                    "a backup would be taken first: pg_dump -F c into {}",
                    crate::db::backup::backup_path(dir, &self.plan().name, target.database())
                        .display()
                )),
                None => report
                    .summary
                    .push("no backup would be taken (--no-backup)".into()),
            }
            if report.outcome == RunOutcome::NothingToDo {
                report.outcome = RunOutcome::Success;
            }
        } else if report.outcome == RunOutcome::NothingToDo {
            report
                .summary
                .push("nothing to do: every selected stage is already applied".into());
        }
        report.history = history;
        if !report.history.is_empty() {
            report
                .summary
                .push("apply refuses to run until the ledger history above is accepted".into());
        }
        report
            .summary
            .push("nothing was written: this was a preview".into());
        report.exit_code = report.outcome.exit_code();
        report
    }

    /// Runs the verification of every applied stage now, with the captures recorded
    /// when it ran, except the checks that stages applied later superseded: they
    /// changed on purpose what those checks read (`supersede.rs`). Writes nothing.
    pub fn verify(&self, target: &Target) -> Result<RunReport, EngineError> {
        let mut client = self.read_only_session(target, "verify")?;
        let mut tx = client.transaction().map_err(EngineError::database(
            "cannot begin a read-only transaction",
        ))?;
        self.run_setup(&mut tx)?;
        let done = ledger::done_results(&mut tx, &self.plan().name)?;
        let captures = ledger::recorded_captures(&done);
        // Applied stages in the order they were recorded, each with its place in the
        // plan's order and what it changes.
        let mut applied: Vec<(i64, usize, &PreparedStage<'_>, StageChanges)> = self
            .prepared()
            .in_order()
            .enumerate()
            .filter_map(|(position, stage)| {
                let recorded = done.get(&stage.id).filter(|r| r.status.is_committed())?;
                let changes = StageChanges::of(stage, &stage.definition, self.registry());
                Some((recorded.result_id, position, stage, changes))
            })
            .collect();
        applied.sort_by_key(|(result_id, _, _, _)| *result_id);
        let mut report = RunReport::new(
            Command::Verify,
            &self.plan().name,
            target,
            &target.source,
            false,
        );
        let mut tally = Tally::default();
        for (position, stage) in self.prepared().in_order().enumerate() {
            let mut stage_report = stage.report(StageStatus::Verified);
            match done.get(&stage.id) {
                Some(recorded) if recorded.status.is_committed() => {
                    // Later: recorded after it, or placed after it in the plan (a
                    // stage recorded again with its drift accepted did not run again).
                    let later: Vec<(&str, &StageChanges)> = applied
                        .iter()
                        .filter(|(result_id, later_position, _, _)| {
                            *result_id > recorded.result_id || *later_position > position
                        })
                        .map(|(_, _, later, changes)| (later.id(), changes))
                        .collect();
                    for check in &stage.verify {
                        let reads = supersede::reads(check);
                        let by = supersede::superseded_by(reads.as_ref(), &later);
                        let result = if by.is_empty() {
                            let now = check_now(&mut tx, check, &captures);
                            judge_failure(&mut tx, check, reads.as_ref(), recorded, now)
                        } else {
                            CheckResult::superseded(&check.name, check.expect.to_string(), by)
                        };
                        stage_report.verifications.push(result);
                    }
                    tally.count(&mut stage_report, &later);
                    if recorded.status == ResultStatus::ValidationPending {
                        stage_report.status = StageStatus::ValidationPending;
                        stage_report.note = Some(PENDING_NOTE.into());
                    }
                }
                Some(recorded) => {
                    stage_report.status = StageStatus::Skipped;
                    stage_report.note = recorded.skip_reason.clone();
                }
                None => {
                    stage_report.status = StageStatus::NotRun;
                    stage_report.note = Some("not applied yet".into());
                }
            }
            report.stages.push(stage_report);
        }
        let _ = tx.rollback();
        tally.summarise(&mut report);
        Ok(report)
    }
}

/// What `plan` says of a stage with `after_commit` steps: they run after its commit,
/// on the session when one of them cannot run in a transaction block.
fn after_commit_note(
    stage: &PreparedStage<'_>,
    variables: &std::collections::BTreeMap<String, String>,
) -> String {
    let steps = crate::stage::after_commit::after_commit_steps(stage);
    if crate::stage::after_commit::needs_session(stage, variables) {
        format!("after its commit: {steps}, on the session (CREATE INDEX CONCURRENTLY, outside a transaction block)")
    } else {
        format!("after its commit: {steps}, in a transaction of its own")
    }
}

/// What `verify`, `plan` and `status` say of a stage recorded `validation_pending`.
pub(crate) const PENDING_NOTE: &str =
    "committed with its key NOT VALID (every new write is checked); \
     the validation after the commit has not passed yet: `planrun apply` retries only it";

/// What `verify` found across the stages it re-checked.
#[derive(Default)]
struct Tally {
    failed: bool,
    superseded_checks: usize,
    not_recheckable: usize,
}

impl Tally {
    /// Counts the re-checked stage of `stage_report`, and says in it which of its
    /// checks the `later` stages superseded.
    fn count(&mut self, stage_report: &mut StageReport, later: &[(&str, &StageChanges)]) {
        let checks = &stage_report.verifications;
        self.not_recheckable += checks
            .iter()
            .filter(|check| check.status == CheckStatus::NotRecheckable)
            .count();
        let superseded: Vec<&CheckResult> = checks
            .iter()
            .filter(|check| !check.superseded_by.is_empty())
            .collect();
        self.superseded_checks += superseded.len();
        if checks.iter().any(CheckResult::failed) {
            stage_report.status = StageStatus::Failed;
            self.failed = true;
        } else if !superseded.is_empty() && superseded.len() == checks.len() {
            stage_report.status = StageStatus::Superseded;
        }
        if superseded.is_empty() {
            return;
        }
        let stages: Vec<&str> = later
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| {
                superseded
                    .iter()
                    .any(|check| check.superseded_by.iter().any(|by| by.stage == *id))
            })
            .collect();
        let which = if superseded.len() == checks.len() {
            "every check".to_owned()
        } else {
            format!("{} of {} checks", superseded.len(), checks.len())
        };
        stage_report.note = Some(format!(
            "{which} superseded by {}, applied later, which changed what they read",
            stages.join(", ")
        ));
    }

    /// `verify`'s outcome and the lines that end its report.
    fn summarise(&self, report: &mut RunReport) {
        let (superseded_checks, not_recheckable) = (self.superseded_checks, self.not_recheckable);
        if self.failed {
            report.outcome = RunOutcome::VerificationFailed;
            report
                .summary
                .push("some applied stages no longer pass their verification (see above)".into());
        } else {
            report.outcome = RunOutcome::Success;
            report.summary.push(if superseded_checks == 0 {
                "every applied stage passes its verification".into()
            } else {
                "every check that still applies passes".into()
            });
        }
        if superseded_checks > 0 {
            report.summary.push(format!(
                "{superseded_checks} checks not run: stages applied after theirs changed on purpose what they read (superseded, above)"
            ));
        }
        if not_recheckable > 0 {
            report.summary.push(format!(
                "{not_recheckable} checks not re-checkable now: they compare with values captured when their stage committed, and rows of the tables they read were written since (above)"
            ));
        }
        report.exit_code = report.outcome.exit_code();
    }
}

/// "batch 12 committed, 120000 of 1000000 rows read, resumes after key 120000".
fn partial_note(checkpoint: &Checkpoint, changes: i64) -> String {
    let total = checkpoint
        .total_rows
        .map_or_else(String::new, |total| format!(" of {total}"));
    format!(
        "batched, half done: {} batches committed, {}{total} rows read, {} quarantined, {changes} changes by the application to redo; `planrun apply` resumes after key {} (`planrun reset {}` abandons it)",
        checkpoint.batches,
        checkpoint.rows_read,
        checkpoint.rows_quarantined,
        checkpoint.last_key.map_or("-".into(), |key| key.to_string()),
        checkpoint.stage_id
    )
}

/// The changes recorded by each half-done stage's capture and not redone yet.
fn backlogs<C: postgres::GenericClient>(
    conn: &mut C,
    plan: &str,
    checkpoints: &BTreeMap<String, Checkpoint>,
) -> Result<BTreeMap<String, i64>, EngineError> {
    checkpoints
        .keys()
        .map(|stage| {
            crate::ledger::change_capture::pending(conn, plan, stage)
                .map(|count| (stage.clone(), count))
                .map_err(EngineError::database("cannot count the captured changes"))
        })
        .collect()
}

/// What `plan` has found so far, carried from stage to stage.
struct Preview {
    report: RunReport,
    /// The captures recorded by done stages, and the names this run's would set.
    captures: BTreeMap<String, Option<String>>,
    /// The stages that would run (or are blocked): what a later stage waits for.
    pending: BTreeSet<String>,
    would_change: bool,
}

/// A stage that would run: waiting for stages that would run before it, or its skip
/// rules and preconditions judged on the database as it is now.
fn judge_now(
    tx: &mut postgres::Transaction<'_>,
    preview: &mut Preview,
    stage: &PreparedStage<'_>,
    stage_report: &mut StageReport,
) {
    let waiting_for: Vec<&str> = stage
        .depends_on
        .iter()
        .map(|(dep, _)| dep.as_str())
        .filter(|dep| preview.pending.contains(*dep))
        .collect();
    for (name, _) in stage.captures.iter().flat_map(|capture| &capture.names) {
        preview.captures.entry(name.clone()).or_insert(None);
    }
    if !waiting_for.is_empty() {
        waiting(stage, stage_report, &waiting_for);
        preview.pending.insert(stage.id.clone());
        preview.would_change = true;
        return;
    }
    for rule in &stage.skip_if {
        stage_report
            .skip_rules
            .push(skip_rule_now(tx, rule, &preview.captures));
    }
    for check in &stage.preconditions {
        stage_report
            .preconditions
            .push(check_now(tx, check, &preview.captures));
    }
    if let Some(rule) = stage
        .skip_if
        .iter()
        .zip(&stage_report.skip_rules)
        .find(|(_, r)| r.passed)
    {
        stage_report.status = StageStatus::WouldSkip;
        stage_report.note = Some(rule.0.reason.clone());
    } else if stage_report.preconditions.iter().any(CheckResult::failed) {
        stage_report.status = StageStatus::Blocked;
        preview.pending.insert(stage.id.clone());
        if preview.report.outcome == RunOutcome::NothingToDo {
            preview.report.outcome = RunOutcome::PreconditionFailed;
        }
    } else {
        preview.pending.insert(stage.id.clone());
        preview.would_change = true;
    }
}

/// A stage waiting for `waiting_for`: what its skip rules and preconditions read is
/// what those stages will have changed, so judged now they would fail for the wrong
/// reason; they are evaluated then.
fn waiting(stage: &PreparedStage<'_>, stage_report: &mut StageReport, waiting_for: &[&str]) {
    let after: Vec<String> = waiting_for.iter().map(|id| (*id).to_owned()).collect();
    stage_report.skip_rules = stage
        .skip_if
        .iter()
        .map(|rule| {
            CheckResult::evaluated_after(&rule.reason, rule.expect.to_string(), after.clone())
        })
        .collect();
    stage_report.preconditions = stage
        .preconditions
        .iter()
        .map(|check| {
            CheckResult::evaluated_after(&check.name, check.expect.to_string(), after.clone())
        })
        .collect();
    stage_report.status = StageStatus::Waiting;
    stage_report.note = Some(format!(
        "runs after {}; its skip rules and preconditions are evaluated then",
        waiting_for.join(", ")
    ));
}

/// Reads the ledger for `runner`'s plan.
pub fn status(runner: &Runner<'_>, target: &Target) -> Result<StatusReport, EngineError> {
    let mut client = target.connect(&format!("planrun status {}", runner.plan().name))?;
    let ledger_exists = ledger::exists(&mut client)?;
    let latest = ledger::latest_results(&mut client, &runner.plan().name)?;
    let done = ledger::done_results(&mut client, &runner.plan().name)?;
    let recent_runs = ledger::recent_runs(&mut client, &runner.plan().name, 5)?;
    let checkpoints = ledger::checkpoints(&mut client, &runner.plan().name)?;
    let backlog = backlogs(&mut client, &runner.plan().name, &checkpoints)?;
    let stages = runner
        .prepared()
        .in_order()
        .map(|stage| status_line(stage, &latest, &done, &checkpoints, &backlog))
        .collect();
    Ok(StatusReport {
        plan: runner.plan().name.clone(),
        target: target.to_string(),
        target_source: target.source.to_string(),
        ledger_exists,
        stages,
        recent_runs,
        history: runner.history(&done, &|stage| !stage.optional).lines(),
    })
}

/// One stage's line in `status`: its latest result, drift, and a half-done attempt.
fn status_line(
    stage: &PreparedStage<'_>,
    latest: &BTreeMap<String, RecordedStage>,
    done: &BTreeMap<String, RecordedStage>,
    checkpoints: &BTreeMap<String, Checkpoint>,
    backlog: &BTreeMap<String, i64>,
) -> StageStatusLine {
    let shown = latest.get(&stage.id);
    let mut line = StageStatusLine {
        id: stage.id.clone(),
        optional: stage.optional,
        state: "pending".into(),
        run_id: None,
        finished_at: None,
        rows_affected: None,
        rows_quarantined: None,
        note: None,
    };
    if let Some(recorded) = shown {
        line.state = recorded.status.to_string();
        line.run_id = Some(recorded.run_id);
        line.finished_at = Some(recorded.finished_at.clone());
        line.rows_affected = Some(recorded.rows_affected);
        line.rows_quarantined = Some(recorded.rows_quarantined);
        line.note = recorded.skip_reason.clone();
        if recorded.status == ResultStatus::ValidationPending {
            line.note = Some(PENDING_NOTE.into());
        }
        if recorded.status == ResultStatus::Failed && done.contains_key(&stage.id) {
            line.note = Some("failed in its latest run; an earlier run had applied it".into());
        }
        if recorded.status != ResultStatus::Failed && !stage.matches_recorded(&recorded.checksum) {
            line.state = "drifted".into();
            line.note = Some("changed since it ran: see `planrun plan`".into());
        }
        if recorded.rows_quarantined > 0 {
            let quarantined = format!("{} rows quarantined", recorded.rows_quarantined);
            line.note = Some(match line.note.take() {
                Some(note) => format!("{quarantined}; {note}"),
                None => quarantined,
            });
        }
    }
    let applied = shown.is_some_and(|recorded| recorded.status.is_done());
    if let (Some(checkpoint), true) = (checkpoints.get(&stage.id), applied) {
        // The ledger's result stands; a checkpoint beside it is a leftover
        // of a batched attempt from before issue 21 (an atomic run now
        // removes it first).
        let leftover = format!(
            "the checkpoint of an abandoned batched attempt (run {}, {} batches) is still in the ledger, with its change capture",
            checkpoint.run_id, checkpoint.batches
        );
        line.note = Some(match line.note.take() {
            Some(note) => format!("{note}; {leftover}"),
            None => leftover,
        });
    } else if let Some(checkpoint) = checkpoints.get(&stage.id) {
        line.state = "partial".into();
        line.run_id = Some(checkpoint.run_id);
        line.finished_at = Some(checkpoint.updated_at.clone());
        line.rows_affected = Some(checkpoint.rows_written);
        line.rows_quarantined = Some(checkpoint.rows_quarantined);
        line.note = Some(partial_note(
            checkpoint,
            backlog.get(&stage.id).copied().unwrap_or(0),
        ));
    }
    line
}
