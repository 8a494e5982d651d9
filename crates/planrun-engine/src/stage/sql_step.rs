//! Running a SQL step: the text split by PostgreSQL's parser (`planrun-sql`), one
//! statement at a time, so that an error PostgreSQL gives no position for (a key
//! violation, a division by zero) still names its statement and line, and outside a
//! transaction each statement commits on its own.
//!
//! What `planrun check` refuses is refused here too (a plan run without `check`, or a
//! file changed since): transaction control anywhere, work that needs to run outside a
//! transaction block in a transactional stage, COPY read by psql. psql's client side
//! comes first (`planrun_sql::expand_psql`): variables, and COPY rows sent after their
//! statement (`copy_in.rs`). A concurrent index
//! build is made safe to repeat: an invalid index of the same name, left by an earlier
//! failed build, is dropped first, and an index the build leaves invalid fails the
//! stage instead of being recorded as applied.

use planrun_plan::Stage;
use planrun_sql::{expand_psql, parse_script, SqlError, StatementKind};
use postgres::GenericClient;

use crate::apply::run::{RunState, Runner};
use crate::report::{StageError, StepReport};
use crate::stage::copy_in::{place_row_error, run_statement};
use crate::stage::stage_failure::{plain_error, stage_error};
use crate::stage::stage_locks::{database_error, with_lock_retries};

impl Runner<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_sql<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &RunState<'_>,
        stage: &Stage,
        sql: &str,
        file: Option<&str>,
        in_transaction: bool,
        step: &str,
    ) -> Result<StepReport, Box<StageError>> {
        let unreadable = |error: SqlError| {
            let mut failure = plain_error(Some(step), error.message.clone());
            failure.file = file.map(str::to_owned);
            failure.line = Some(error.line);
            failure.column = Some(error.column);
            failure.hint = error.help.clone();
            Box::new(failure)
        };
        let script = expand_psql(sql, &self.plan().variables).map_err(unreadable)?;
        let sql = script.sql.as_str();
        let statements = parse_script(sql).map_err(unreadable)?;
        let refuse = |offset: usize, message: String| {
            let mut failure = plain_error(Some(step), message);
            failure.file = file.map(str::to_owned);
            failure.line = Some(crate::stage::sql::statement_line(sql, offset));
            Box::new(failure)
        };
        let retries = self.statement_retries(run, stage);
        let mut rows = 0;
        let mut notes = Vec::new();
        for statement in &statements {
            let offset = statement.offset;
            let copy_rows = script.copy_rows(statement);
            match &statement.kind {
                StatementKind::TransactionControl { what } => {
                    return Err(refuse(
                        offset,
                        format!("{what}: planrun runs each stage in its own transaction; remove it (see `planrun check`)"),
                    ))
                }
                StatementKind::CopyStdio { .. } if copy_rows.is_none() => {
                    return Err(refuse(
                        offset,
                        "COPY TO STDOUT is read by psql; planrun does not".into(),
                    ))
                }
                kind => {
                    if let (true, Some(what)) = (in_transaction, kind.outside_transaction_only()) {
                        return Err(refuse(
                            offset,
                            format!("{what} cannot run inside a transaction block: put it in a stage with transaction = false"),
                        ));
                    }
                }
            }
            let index = concurrent_index_name(&statement.kind);
            if let Some(index) = &index {
                match drop_invalid_index(conn, index) {
                    Ok(Some(dropped)) => notes.push(format!(
                        "dropped the invalid index {dropped} an earlier failed build left, before building it again"
                    )),
                    Ok(None) => {}
                    Err(error) => {
                        return Err(Box::new(stage_error(&error, Some(step.to_owned()), file, sql, offset)))
                    }
                }
            }
            // In a transaction, a statement that times out on a lock is tried again in
            // a savepoint; outside one, a failed statement may have left something
            // behind, so it is not repeated blindly.
            let started = std::time::Instant::now();
            let result = if in_transaction {
                with_lock_retries(
                    conn,
                    &retries,
                    database_error,
                    |attempt, error, delay| {
                        self.report_retry(run, stage, step, (attempt, &retries), error, delay)
                    },
                    |tx| run_statement(tx, statement.text, copy_rows),
                )
            } else {
                run_statement(conn, statement.text, copy_rows)
            };
            match result {
                Ok(count) => {
                    run.observer
                        .statement_finished(statement.text, started.elapsed());
                    rows += count;
                }
                Err(error) => {
                    let mut failure = stage_error(&error, Some(step.to_owned()), file, sql, offset);
                    place_row_error(&mut failure, &error, copy_rows);
                    if !in_transaction {
                        failure.message.push_str(" (this stage runs outside a transaction: statements before this one stay committed)");
                    }
                    if let Some(index) = &index {
                        failure.message.push_str(&format!(
                            "; a failed concurrent build may leave {index} behind as an invalid index: the next apply drops it before building again"
                        ));
                    }
                    return Err(Box::new(failure));
                }
            }
            if let Some(index) = &index {
                match invalid_index(conn, index) {
                    Ok(None) => {}
                    Ok(Some(invalid)) => {
                        return Err(refuse(
                            offset,
                            format!("index {invalid} is invalid after the build (CREATE INDEX CONCURRENTLY ... IF NOT EXISTS finds an invalid one and does nothing): it is not recorded as applied; the next apply drops it and builds it again"),
                        ))
                    }
                    Err(error) => {
                        return Err(Box::new(stage_error(&error, Some(step.to_owned()), file, sql, offset)))
                    }
                }
            }
        }
        Ok(StepReport {
            name: step.to_owned(),
            kind: String::new(),
            duration_ms: 0,
            rows_affected: rows,
            rows_read: None,
            rows_quarantined: None,
            notes,
        })
    }
}

/// The index a `CREATE INDEX CONCURRENTLY` builds, as `to_regclass` reads it.
fn concurrent_index_name(kind: &StatementKind) -> Option<String> {
    let StatementKind::ConcurrentIndex {
        schema,
        name: Some(name),
    } = kind
    else {
        return None;
    };
    let quote = |part: &str| format!("\"{}\"", part.replace('"', "\"\""));
    Some(match schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(name),
    })
}

/// Drops `index` when it exists and is invalid; its name when it was.
fn drop_invalid_index<C: GenericClient>(
    conn: &mut C,
    index: &str,
) -> Result<Option<String>, postgres::Error> {
    let Some(invalid) = invalid_index(conn, index)? else {
        return Ok(None);
    };
    conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {invalid}"))?;
    Ok(Some(invalid))
}

/// `index`, as the server names it, when it exists and is not valid. The name resolves
/// with the plan's search_path, as the build's did, so every other name is qualified.
fn invalid_index<C: GenericClient>(
    conn: &mut C,
    index: &str,
) -> Result<Option<String>, postgres::Error> {
    let row = conn.query_opt(
        "SELECT i.indexrelid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_index i
         WHERE i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
           AND NOT (i.indisvalid AND i.indisready)",
        &[&index],
    )?;
    Ok(row.map(|row| row.get(0)))
}
