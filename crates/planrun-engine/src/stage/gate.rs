//! The gate before a stage's steps, in its transaction and under its locks: skip rules
//! (one that holds records the stage as skipped), preconditions (fail closed),
//! captures, and the backup before the run's first change.

use planrun_report::StageStatus;
use postgres::GenericClient;

use crate::db::backup;
use crate::error::EngineError;
use crate::ledger;
use crate::prepared::PreparedStage;
use crate::stage::captures;
use crate::stage::checks::{check_now, skip_rule_now};
use crate::stage::context::{RunContext, StageContext};

/// What the checks before a stage decided.
pub(crate) enum Gate {
    /// A skip rule holds: record the stage as skipped.
    Skip,
    /// A precondition or capture failed: roll back and stop.
    Stop,
    Proceed,
}

/// Skip rules, preconditions (fail closed), captures, and the backup before the
/// run's first change.
pub(crate) fn gate<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
) -> Result<Gate, EngineError> {
    let stage = cx.stage;
    for rule in &stage.skip_if {
        let result = skip_rule_now(conn, rule, &cx.run.captures);
        let holds = result.passed;
        cx.report.skip_rules.push(result);
        if holds {
            cx.report.status = StageStatus::Skipped;
            cx.report.note = Some(rule.reason.clone());
            return Ok(Gate::Skip);
        }
    }

    for check in &stage.preconditions {
        let result = check_now(conn, check, &cx.run.captures);
        let passed = result.passed;
        cx.report.preconditions.push(result);
        if !passed {
            cx.report.status = StageStatus::Blocked;
            return Ok(Gate::Stop);
        }
    }

    if !take_captures(conn, cx) {
        return Ok(Gate::Stop);
    }

    if !cx.run.changed_anything && !cx.run.options.dry_run {
        if let Some(dir) = cx.run.options.backup_dir {
            take_backup(cx.run, dir, stage)?;
        }
    }
    cx.run.changed_anything = true;
    Ok(Gate::Proceed)
}

/// The backup before the run's first change, into `dir`, recorded in the ledger at
/// once.
pub(crate) fn take_backup(
    run: &mut RunContext<'_>,
    dir: &std::path::Path,
    stage: &PreparedStage<'_>,
) -> Result<(), EngineError> {
    run.observer
        .progress()
        .phase("writing the backup (pg_dump)");
    let lock_wait = stage.timeouts.lock_timeout.as_ref();
    let file = backup::take(run.target, dir, run.plan_name(), lock_wait)?;
    run.observer.backup_taken(&file);
    let file = file.display().to_string();
    // Recorded now, outside the stage's transaction: whatever happens next, the
    // ledger says where the backup is.
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
    Ok(())
}

/// Reads the stage's captures; `false` (and the stage marked failed) when one fails.
pub(crate) fn take_captures<C: GenericClient>(conn: &mut C, cx: &mut StageContext<'_, '_>) -> bool {
    take_captures_where(conn, cx, |_| true)
}

/// Reads the stage's captures that `read_now` selects, in plan order, the others'
/// values as read before; `false` (and the stage marked failed) when one fails.
pub(crate) fn take_captures_where<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    read_now: impl Fn(&planrun_plan::Capture) -> bool,
) -> bool {
    let stage = cx.stage;
    let selected: Vec<planrun_plan::Capture> = stage
        .captures
        .iter()
        .filter(|capture| read_now(capture))
        .cloned()
        .collect();
    let kept = match captures::read(conn, &selected, &cx.run.captures) {
        Ok(values) => {
            for (name, value) in values {
                cx.run.captures.insert(name.clone(), value.clone());
                cx.report.captures.insert(name, value);
            }
            true
        }
        Err(failure) => {
            cx.fail(*failure);
            false
        }
    };
    cx.report.computed.clear();
    for capture in stage.captures.iter().filter(|c| c.expr.is_some()) {
        let name = capture.label();
        let value = cx.report.captures.get(&name).cloned().flatten();
        cx.report.computed.push((name, value));
    }
    kept
}
