//! The gate before a stage's steps, in its transaction and under its locks: skip rules
//! (one that holds records the stage as skipped), preconditions (fail closed),
//! captures, and the backup before the run's first change.

use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::context::RunState;
use crate::db::backup;
use crate::error::EngineError;
use crate::ledger;
use crate::prepared::PreparedStage;
use crate::report::{StageError, StageReport, StageStatus};
use crate::stage::captures;
use crate::stage::checks::{check_now, skip_rule_now};

/// What the checks before a stage decided.
pub(crate) enum Gate {
    /// A skip rule holds: record the stage as skipped.
    Skip,
    /// A precondition or capture failed: roll back and stop.
    Stop,
    Proceed,
}

impl Runner<'_> {
    /// Skip rules, preconditions (fail closed), captures, and the backup before the
    /// run's first change.
    pub(crate) fn gate<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunState<'_>,
        stage: &PreparedStage<'_>,
        stage_report: &mut StageReport,
    ) -> Result<Gate, EngineError> {
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

        if !self.take_captures(conn, run, stage, stage_report) {
            return Ok(Gate::Stop);
        }

        if !run.changed_anything && !run.options.dry_run {
            if let Some(dir) = &run.options.backup_dir {
                let lock_wait = stage.timeouts.lock_timeout.clone();
                run.observer
                    .progress()
                    .phase("writing the backup (pg_dump)");
                let file = backup::take(run.target, dir, &self.plan().name, lock_wait.as_ref())?;
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
        stage: &PreparedStage<'_>,
        stage_report: &mut StageReport,
    ) -> bool {
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
}
