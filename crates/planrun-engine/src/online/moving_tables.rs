//! `planrun verify` and checks that compare with a capture (issue 21, item 13).
//!
//! A capture is a value read while its stage ran (for a batched stage, at the
//! cutover): `no chapter lost` compares `count(*) FROM chapters` with the number of
//! legacy chapters then. Once the application writes the table, the comparison says
//! nothing about the migration: one chapter inserted makes it fail, and a real loss
//! could hide behind it. The rule: a check whose expectation reads a capture, that
//! fails now, and whose query reads rows of a table holding rows written after its
//! stage committed, is **not re-checkable**. It is reported so, with the captures, when
//! its stage committed, and how many rows of which tables were written since; it is no
//! failure. A check without a capture, or over tables nobody wrote since, still fails.
//!
//! "Written since" is told by the rows' `xmin`: a row inserted or updated after the
//! end of the stage's run has a younger one than the run's ledger row, which planrun
//! updates once the run is over. Not the stage's own ledger row: its steps' writes
//! can carry subtransaction ids, younger than the transaction's own. Rows written
//! while the run went on are not counted, so the check fails rather than being
//! excused. A deletion leaves no row to date, so a check over a table the
//! application only deleted from still fails (the report shows what it read).

use planrun_plan::Check;
use planrun_report::{ChangedTable, CheckResult, CheckStatus, NotRecheckable};
use planrun_sql::QueryReads;
use postgres::GenericClient;

use crate::db::trusted_sql::own_ledger;
use crate::ledger::RecordedStage;

/// `result`, the failure of `check` of the stage `recorded` now, or the check as
/// not re-checkable when the rule above says so.
pub(crate) fn judge_failure<C: GenericClient>(
    conn: &mut C,
    check: &Check,
    reads: Option<&QueryReads>,
    recorded: &RecordedStage,
    result: CheckResult,
) -> CheckResult {
    if !result.failed() || result.problem.is_some() {
        return result;
    }
    let captures: Vec<String> = check.expect.captures().map(str::to_owned).collect();
    let Some(reads) = reads.filter(|_| !captures.is_empty()) else {
        return result;
    };
    // A savepoint: a table the query cannot date (a view has no xmin) must not abort
    // the transaction the other checks run in.
    let Ok(mut savepoint) = conn.transaction() else {
        return result;
    };
    let changed = written_since(&mut savepoint, &reads.rows, recorded.result_id);
    let _ = savepoint.rollback();
    let changed = match changed {
        Ok(changed) if !changed.is_empty() => changed,
        // Nothing written since, or it cannot be told: the failure stands.
        _ => return result,
    };
    CheckResult {
        status: CheckStatus::NotRecheckable,
        not_recheckable: Some(NotRecheckable {
            captures,
            captured_at: recorded.finished_at.clone(),
            changed,
        }),
        message: None,
        ..result
    }
}

/// The tables of `tables` holding rows written after the run that recorded the
/// ledger row `result_id` ended.
fn written_since<C: GenericClient>(
    conn: &mut C,
    tables: &[String],
    result_id: i64,
) -> Result<Vec<ChangedTable>, postgres::Error> {
    let stage_xid: String = {
        let Ok(mut ledger) = own_ledger(conn) else {
            return Ok(Vec::new());
        };
        ledger
            .query_one(
                "SELECT r.xmin::text FROM planrun.runs r \
                 JOIN planrun.stage_results s ON s.run_id = r.id WHERE s.id = $1",
                &[&result_id],
            )?
            .get(0)
    };
    let mut changed = Vec::new();
    for table in tables {
        // The name as the check wrote it, resolved as its query resolved it.
        let count: Option<String> = conn
            .query_one(
                "SELECT pg_catalog.format('SELECT count(*) FROM %s \
                   WHERE pg_catalog.age(xmin) < pg_catalog.age(%L::xid)', \
                   pg_catalog.to_regclass($1), $2::text) \
                 WHERE pg_catalog.to_regclass($1) IS NOT NULL",
                &[table, &stage_xid],
            )
            .map(|row| row.get(0))
            .ok();
        let Some(count) = count else { continue };
        let rows: i64 = conn.query_one(count.as_str(), &[])?.get(0);
        if rows > 0 {
            changed.push(ChangedTable {
                table: table.clone(),
                rows_written_since: rows,
            });
        }
    }
    Ok(changed)
}
