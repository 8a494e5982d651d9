//! What a stage runs after it commits (`after_commit = true` steps): the validation of
//! a foreign key the stage added `NOT VALID` and the concurrent build of an index the
//! application needs, under SHARE UPDATE EXCLUSIVE, which blocks no reader and no
//! writer (`planrun check` refuses an after-commit step that would take more). They run
//! in a transaction of their own, or, when one of them cannot run in a transaction
//! block (`CREATE INDEX CONCURRENTLY`), on the session, each statement committing on
//! its own, the ledger row written in a transaction after them. The stage's commit
//! recorded it `validation_pending`; this records it `applied` once its after-commit
//! steps and the checks placed after them pass. If they fail, or a signal stops them,
//! the stage stays pending: its key, `NOT VALID`, still checks every new write, its
//! dependents may run, and the next `apply` retries only this (an invalid index a
//! failed build left is dropped and built again, `sql_step.rs`).

use std::time::{Duration, Instant, SystemTime};

use postgres::GenericClient;

use crate::db::interrupt;
use crate::error::EngineError;
use crate::ledger::{RecordedStage, ResultStatus};
use crate::prepared::PreparedStage;
use crate::stage::atomic::{commit_if_passed, set_timeouts};
use crate::stage::context::{RunContext, StageContext};
use crate::stage::stage_locks::cap_lock_timeout;
use crate::stage::stage_record::record_as;
use crate::stage::steps::run_steps;
use planrun_report::{StageReport, StageStatus};

/// Runs `stage`'s after-commit steps once its transaction committed (the report says
/// `applied`); the report ends `applied` when they passed and were recorded,
/// `validation pending` (or `interrupted`) when not, with the error. `Err` only when
/// planrun itself cannot go on.
pub(crate) fn validate_after_commit<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
    stage_report: &mut StageReport,
) -> Result<(), EngineError> {
    let first = stage.steps_before_commit();
    if first == stage.steps.len() || stage_report.status != StageStatus::Applied {
        return Ok(());
    }
    // The stage's time goes on: the report's duration is the stage's and its validation's.
    let started = Instant::now()
        .checked_sub(Duration::from_millis(stage_report.duration_ms))
        .unwrap_or_else(Instant::now);
    let started_at = SystemTime::now();
    let on_session = needs_session(stage, &run.prepared.plan.variables);
    if on_session && run.options.dry_run {
        // The dry run's one transaction rolls back at the end: a build that cannot
        // run in a transaction block is said, not run (`planrun rehearse` runs it).
        stage_report.note = Some(format!(
            "after its commit it would run {} on the session (CREATE INDEX CONCURRENTLY cannot run in the dry run's transaction: not run here; `planrun rehearse` runs it)",
            after_commit_steps(stage)
        ));
        return Ok(());
    }
    let mut cx = StageContext::new(stage, run, stage_report, !on_session);
    cx.run.observer.note(&format!(
        "{}: committed, its validation pending; validating after the commit",
        stage.id
    ));
    let validated = if on_session {
        on_the_session(conn, &mut cx, first, (started, started_at))?
    } else {
        commit_if_passed(
            conn,
            &mut cx,
            started,
            |tx, cx| {
                set_timeouts(tx, cx.stage, true)?;
                // Nothing here should wait long: the budget caps lock_timeout as in a cutover.
                cap_lock_timeout(tx, cx.stage.lock_budget, true).map_err(EngineError::database(
                    "cannot set the validation's lock_timeout",
                ))?;
                run_steps(tx, cx, first..cx.stage.steps.len())
            },
            |tx, cx| record_as(tx, cx, started_at, ResultStatus::Applied),
        )?
    };
    if validated {
        return Ok(());
    }
    still_pending(conn, cx.report, on_session);
    Ok(())
}

/// The report of a stage whose after-commit steps did not pass: pending (or
/// interrupted), the rows violating a key named, and what to do next.
fn still_pending<C: GenericClient>(conn: &mut C, stage_report: &mut StageReport, on_session: bool) {
    let violating = stage_report
        .error
        .as_ref()
        .filter(|error| error.sqlstate.as_deref() == Some("23503"))
        .map(|error| error.message.clone())
        .and_then(|message| violating_rows(conn, &message));
    stage_report.status = match interrupt::requested() {
        Some(_) => StageStatus::Interrupted,
        None => StageStatus::ValidationPending,
    };
    let error = stage_report.error.get_or_insert_with(|| {
        crate::stage::stage_failure::plain_error(None, "a check after the validation failed".into())
    });
    if let Some(rows) = violating.filter(|rows| !rows.is_empty()) {
        let named = format!(
            "rows violating it (first {}): {}",
            rows.len(),
            rows.join("; ")
        );
        error.detail = Some(match error.detail.take() {
            Some(detail) => format!("{detail} {named}"),
            None => named,
        });
    }
    let next = if on_session {
        "the stage committed and stays `validation pending`; fix the cause and run `planrun apply` again: \
         it retries only what runs after the commit (an invalid index a failed build left is dropped and built again)"
    } else {
        "the stage committed and stays `validation pending` (its key NOT VALID still checks every new write); \
         fix the rows named and run `planrun apply` again: it retries only the validation"
    };
    error.hint = Some(match error.hint.take() {
        Some(hint) => format!("{hint}; {next}"),
        None => next.into(),
    });
}

/// `stage`'s after-commit steps, named for a note: "step `a`, step `b`".
pub(crate) fn after_commit_steps(stage: &PreparedStage<'_>) -> String {
    stage.steps[stage.steps_before_commit()..]
        .iter()
        .map(|step| format!("step `{}`", step.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether one of `stage`'s after-commit steps holds a statement that cannot run in a
/// transaction block (a concurrent index build): then they all run on the session.
/// Text that does not parse runs in the transaction, where its step reports it.
pub(crate) fn needs_session(
    stage: &PreparedStage<'_>,
    variables: &std::collections::BTreeMap<String, String>,
) -> bool {
    (stage.steps_before_commit()..stage.steps.len()).any(|position| {
        let step = &stage.steps[position];
        let sql = stage
            .definition
            .step_sql(position, &step.name)
            .unwrap_or_default();
        let Ok(script) = planrun_sql::expand_psql(sql, variables) else {
            return false;
        };
        planrun_sql::parse_script(&script.sql).is_ok_and(|statements| {
            statements
                .iter()
                .any(|statement| statement.kind.outside_transaction_only().is_some())
        })
    })
}

/// The after-commit steps from `first` on the session, each statement committing on
/// its own, then the ledger row in a transaction; whether they passed and were
/// recorded. The stage's timeouts and the budget's cap last to the end of the steps.
fn on_the_session<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    first: usize,
    (started, started_at): (Instant, SystemTime),
) -> Result<bool, EngineError> {
    set_timeouts(conn, cx.stage, false)?;
    let passed = cap_lock_timeout(conn, cx.stage.lock_budget, false)
        .map_err(EngineError::database(
            "cannot set the validation's lock_timeout",
        ))
        .and_then(|()| run_steps(conn, cx, first..cx.stage.steps.len()));
    let _ = conn.batch_execute("RESET lock_timeout; RESET statement_timeout");
    if !passed? {
        return Ok(false);
    }
    commit_if_passed(
        conn,
        cx,
        started,
        |_, _| Ok(true),
        |tx, cx| record_as(tx, cx, started_at, ResultStatus::Applied),
    )
}

/// Retries the validation of a stage an earlier run left `validation pending`; its
/// report, `applied` when it passed now.
pub(crate) fn retry_pending<C: GenericClient>(
    conn: &mut C,
    run: &mut RunContext<'_>,
    stage: &PreparedStage<'_>,
    recorded: &RecordedStage,
) -> Result<StageReport, EngineError> {
    let mut stage_report = stage.report(StageStatus::Applied);
    // The row that says `applied` replaces the pending one: what later stages and
    // `verify` compare with stays in it.
    stage_report.captures = recorded.captures.clone();
    stage_report.rows_affected = recorded.rows_affected.max(0) as u64;
    stage_report.rows_quarantined = recorded.rows_quarantined.max(0) as u64;
    stage_report.note =
        Some("committed earlier with its validation pending; validated in this run".into());
    run.observer.stage_started(stage);
    let started = Instant::now();
    validate_after_commit(conn, run, stage, &mut stage_report)?;
    stage_report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(stage_report)
}

/// The key value of up to 10 rows that violate the foreign key, not yet validated,
/// whose quoted name `message` (PostgreSQL's error) holds (MATCH SIMPLE: a row with a
/// NULL in the key is not checked), each as `column=value`; `None` when they cannot be
/// read. Best effort, after the rollback, to name more than the one row PostgreSQL's
/// detail names. Operators are schema-qualified: this runs with planrun's privileges.
fn violating_rows<C: GenericClient>(conn: &mut C, message: &str) -> Option<Vec<String>> {
    let query = conn
        .query_one(
            "SELECT pg_catalog.format(
                 'SELECT pg_catalog.concat_ws(%L, %s) FROM %s c WHERE %s AND NOT EXISTS (SELECT FROM %s p WHERE %s) LIMIT 10',
                 ', ',
                 pg_catalog.string_agg(pg_catalog.format('pg_catalog.concat(%L, c.%I)', pg_catalog.concat(a.attname, '='), a.attname), ', ' ORDER BY k.n),
                 con.conrelid::pg_catalog.regclass,
                 pg_catalog.string_agg(pg_catalog.format('c.%I IS NOT NULL', a.attname), ' AND ' ORDER BY k.n),
                 con.confrelid::pg_catalog.regclass,
                 pg_catalog.string_agg(pg_catalog.format('p.%I OPERATOR(pg_catalog.=) c.%I', f.attname, a.attname), ' AND ' ORDER BY k.n))
             FROM pg_catalog.pg_constraint con
             CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(con.conkey), pg_catalog.unnest(con.confkey)) WITH ORDINALITY AS k(ck, fk, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) con.conrelid AND a.attnum OPERATOR(pg_catalog.=) k.ck
             JOIN pg_catalog.pg_attribute f ON f.attrelid OPERATOR(pg_catalog.=) con.confrelid AND f.attnum OPERATOR(pg_catalog.=) k.fk
             WHERE con.contype OPERATOR(pg_catalog.=) 'f' AND NOT con.convalidated
               AND pg_catalog.strpos($1, pg_catalog.concat('\"', con.conname, '\"')) OPERATOR(pg_catalog.>) 0
             GROUP BY con.oid, con.conrelid, con.confrelid
             LIMIT 1",
            &[&message],
        );
    let query: String = query.ok()?.get(0);
    let rows = conn.query(query.as_str(), &[]).ok()?;
    Some(rows.iter().map(|row| row.get::<_, String>(0)).collect())
}
