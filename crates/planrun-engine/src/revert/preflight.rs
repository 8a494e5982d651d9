//! The revert judged before it changes anything: every stage it would undo must be
//! reversible, and every revert precondition must hold on the database as it is now,
//! read in one transaction that is rolled back. A failing precondition refuses the
//! revert (exit 20), naming the rows its query returned, unless it is marked
//! `loss = true` and its stage declares `[stage.revert_loss]`, when the loss is
//! reported instead. A precondition whose query cannot run now (it reads what a newer
//! stage's revert puts back) is left to its stage's own transaction, where it runs
//! again in any case, under the stage's locks.

use std::collections::BTreeMap;

use planrun_plan::Reversibility;
use planrun_report::{CheckResult, RevertRefusal};
use postgres::GenericClient;

use crate::error::EngineError;
use crate::prepared::PreparedStage;
use crate::stage::checks::{check_now, query_rows};

/// What the revert is refused for, and the declared losses its checks found.
#[derive(Debug, Default)]
pub(crate) struct Judgement {
    pub(crate) refusals: Vec<RevertRefusal>,
    pub(crate) declared_losses: Vec<RevertRefusal>,
}

/// Judges the revert of `stages` (forward stage, its revert view if it has one, and
/// whether the ledger records it applied rather than skipped), in order.
pub(crate) fn judge<C: GenericClient>(
    conn: &mut C,
    stages: &[(&PreparedStage<'_>, Option<&PreparedStage<'_>>, bool)],
    captures: &BTreeMap<String, Option<String>>,
) -> Result<Judgement, EngineError> {
    let mut judgement = Judgement::default();
    let mut tx = conn
        .transaction()
        .map_err(EngineError::database("cannot begin the revert's preflight"))?;
    for (index, &(forward, view, applied)) in stages.iter().enumerate() {
        if !applied {
            continue;
        }
        let Some(view) = view else {
            let Reversibility::Irreversible(why) = forward.reversibility() else {
                continue;
            };
            judgement.refusals.push(RevertRefusal {
                stage: forward.id.clone(),
                check: None,
                reason: format!("stage `{}` cannot be reverted: {why}", forward.id),
                rows: String::new(),
            });
            continue;
        };
        for check in &view.preconditions {
            let result = check_now(&mut tx, check, captures);
            if result.passed || (result.problem.is_some() && index > 0) {
                continue;
            }
            let declared = view.revert.loss.as_ref().filter(|_| check.loss);
            let mut refusal = refusal(forward, &result, declared.map(|loss| loss.reason.as_str()));
            if result.problem.is_none() {
                refusal.rows = rows_named(&mut tx, &check.sql);
            }
            match declared {
                Some(_) if result.problem.is_none() => judgement.declared_losses.push(refusal),
                _ => judgement.refusals.push(refusal),
            }
        }
    }
    let _ = tx.rollback();
    Ok(judgement)
}

/// The most rows a refusal names; the rest are counted.
const ROWS_NAMED: usize = 20;

/// The rows `sql` returns, as text (`(3, kept@elsewhere)`; ...), the first
/// [`ROWS_NAMED`] of them: what a failed revert precondition names.
pub(crate) fn rows_named<C: GenericClient>(conn: &mut C, sql: &str) -> String {
    let rows = match conn.transaction() {
        Ok(mut savepoint) => {
            let rows = query_rows(&mut savepoint, sql);
            let _ = savepoint.rollback();
            rows
        }
        Err(error) => Err(error),
    };
    let Ok(rows) = rows else {
        return String::new();
    };
    let mut named: Vec<String> = rows
        .iter()
        .take(ROWS_NAMED)
        .map(|row| {
            let values: Vec<&str> = row
                .iter()
                .map(|value| value.as_deref().unwrap_or("NULL"))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect();
    if rows.len() > ROWS_NAMED {
        named.push(format!("and {} more", rows.len() - ROWS_NAMED));
    }
    named.join("; ")
}

/// The refusal (or declared loss) a failed revert precondition of `stage` makes.
pub(crate) fn refusal(
    stage: &PreparedStage<'_>,
    result: &CheckResult,
    declared: Option<&str>,
) -> RevertRefusal {
    let reason = match (declared, &result.problem, &result.message) {
        (Some(reason), _, _) => format!("declared loss: {reason}"),
        (None, Some(problem), _) => format!("its query failed: {problem}"),
        (None, None, Some(message)) => message.clone(),
        (None, None, None) => format!("expected {}", result.expected),
    };
    RevertRefusal {
        stage: stage.id.clone(),
        check: Some(result.name.clone()),
        reason,
        rows: result.actual.clone(),
    }
}
