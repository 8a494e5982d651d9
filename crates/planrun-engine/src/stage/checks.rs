//! Checks as queries: each runs in a savepoint, so a failing query does not abort the
//! stage's transaction, and its rows are compared with the expectation. The
//! verifications run after the step they are placed after (`after_step`) or at the
//! end of the stage, after the constraints the steps deferred are checked; a stage
//! commits only when all pass. Skip rules and preconditions are evaluated the same way
//! (`gate.rs`, and `plan` and `verify` in `preview.rs`).

use std::collections::BTreeMap;

use planrun_plan::{Check, SkipRule};
use postgres::{GenericClient, SimpleQueryMessage};

use crate::db::connect::redact;
use crate::error::error_chain;
use crate::stage::context::StageContext;
use crate::stage::stage_failure::fail_at;
use planrun_report::{CheckResult, StageReport, StageStatus};

/// Runs every verification; `false` (and the stage marked failed) unless all pass.
pub(crate) fn verify_stage<C: GenericClient>(conn: &mut C, cx: &mut StageContext<'_, '_>) -> bool {
    let checks = cx
        .stage
        .verify
        .iter()
        .filter(|check| check.after_step.is_none());
    run_checks(conn, cx, checks)
}

/// Runs the verifications placed right after step `step` (`after_step`); `false`
/// (and the stage marked failed) unless all pass.
pub(crate) fn verify_after_step<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    step: &str,
) -> bool {
    verify_after_step_where(conn, cx, step, |_| true)
}

/// [`verify_after_step`] for the checks `keep` selects (a batched stage's cutover
/// leaves out those it runs per key, `online/per_key.rs`).
pub(crate) fn verify_after_step_where<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    step: &str,
    keep: impl Fn(&Check) -> bool,
) -> bool {
    let checks = cx.stage.verify.iter().filter(|check| {
        check
            .after_step
            .as_ref()
            .is_some_and(|(after, _)| after == step)
            && keep(check)
    });
    run_checks(conn, cx, checks)
}

/// Runs `checks` as verifications; `false` (and the stage marked failed) unless
/// all pass.
fn run_checks<'c, C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    checks: impl Iterator<Item = &'c Check>,
) -> bool {
    let checks: Vec<&Check> = checks.collect();
    if !checks.is_empty() {
        cx.run.observer.progress().phase(&format!(
            "running {} check{}",
            checks.len(),
            if checks.len() == 1 { "" } else { "s" }
        ));
    }
    let mut all_passed = true;
    for check in checks {
        let result = check_now(conn, check, &cx.run.captures);
        all_passed &= result.passed;
        cx.report.verifications.push(result);
    }
    if !all_passed {
        cx.report.status = StageStatus::Failed;
    }
    all_passed
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

/// A precondition or verification, run now.
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

/// A skip rule, run now; `passed` when it holds.
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
