//! Running a SQL step: the text split by PostgreSQL's parser (`planrun-sql`), one
//! statement at a time, so that an error PostgreSQL gives no position for (a key
//! violation, a division by zero) still names its statement and line, and outside a
//! transaction each statement commits on its own.
//!
//! What `planrun check` refuses is refused here too (a plan run without `check`, or a
//! file changed since): transaction control anywhere, work that needs to run outside a
//! transaction block in a transactional stage, COPY to psql's output. psql's client
//! side comes first (`planrun_sql::expand_psql`): variables, and the rows of a
//! `COPY ... FROM stdin` sent after their statement (`copy_in.rs`). A concurrent index
//! build is made safe to repeat: an invalid index of the same name, left by an earlier
//! failed build, is dropped first, and an index the build leaves invalid fails the
//! stage instead of being recorded as applied.

use planrun_plan::LockRetries;
use planrun_sql::{expand_psql, parse_script, CopyRows, SqlError, Statement, StatementKind};
use postgres::GenericClient;

use crate::stage::context::StageContext;
use crate::stage::copy_in::{place_row_error, send_statement};
use crate::stage::stage_failure::{plain_error, stage_error};
use crate::stage::stage_locks::database_error;
use planrun_report::{StageError, StepReport};

/// A SQL step's text as read when the stage's checksum was computed, and where it
/// came from.
pub(crate) struct SqlStep<'s> {
    pub(crate) name: &'s str,
    pub(crate) sql: &'s str,
    /// The step's file, for a `sql_file` step.
    pub(crate) file: Option<&'s str>,
}

impl SqlStep<'_> {
    /// A failure at the statement starting at `offset`, for a reason planrun gives.
    fn refuse(&self, offset: usize, message: String) -> Box<StageError> {
        let mut failure = plain_error(Some(self.name), message);
        failure.file = self.file.map(str::to_owned);
        failure.line = Some(crate::stage::sql::statement_line(self.sql, offset));
        Box::new(failure)
    }

    /// A failure at the statement starting at `offset`, as PostgreSQL gave it.
    fn failed(&self, error: &postgres::Error, offset: usize) -> Box<StageError> {
        Box::new(stage_error(
            error,
            Some(self.name.to_owned()),
            self.file,
            self.sql,
            offset,
        ))
    }
}

/// Runs the SQL step `step` one statement at a time; its report, or the failure
/// naming the statement's line.
pub(crate) fn run_sql<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    step: &SqlStep<'_>,
) -> Result<StepReport, Box<StageError>> {
    let unreadable = |error: SqlError| {
        let mut failure = plain_error(Some(step.name), error.message.clone());
        failure.file = step.file.map(str::to_owned);
        failure.line = Some(error.line);
        failure.column = Some(error.column);
        failure.hint = error.help.clone();
        Box::new(failure)
    };
    let script = expand_psql(step.sql, &cx.run.prepared.plan.variables).map_err(unreadable)?;
    // The expanded text keeps the file's lines, so failures are placed in it.
    let step = &SqlStep {
        name: step.name,
        sql: &script.sql,
        file: step.file,
    };
    let statements = parse_script(step.sql).map_err(unreadable)?;
    let retries = cx.statement_retries();
    let mut rows = 0;
    let mut notes = Vec::new();
    for statement in &statements {
        let copy_rows = script.copy_rows(statement);
        refuse_out_of_place(step, statement, copy_rows.is_some(), cx.in_transaction)?;
        let index = concurrent_index_name(&statement.kind);
        if let Some(index) = &index {
            match drop_invalid_index(conn, index) {
                Ok(Some(dropped)) => notes.push(format!(
                    "dropped the invalid index {dropped} an earlier failed build left, before building it again"
                )),
                Ok(None) => {}
                Err(error) => return Err(step.failed(&error, statement.offset)),
            }
        }
        rows += run_statement(
            conn,
            cx,
            step,
            statement,
            (&retries, index.as_deref(), copy_rows),
        )?;
        if let Some(index) = &index {
            match invalid_index(conn, index) {
                Ok(None) => {}
                Ok(Some(invalid)) => {
                    return Err(step.refuse(
                        statement.offset,
                        format!("index {invalid} is invalid after the build (CREATE INDEX CONCURRENTLY ... IF NOT EXISTS finds an invalid one and does nothing): it is not recorded as applied; the next apply drops it and builds it again"),
                    ))
                }
                Err(error) => return Err(step.failed(&error, statement.offset)),
            }
        }
    }
    Ok(StepReport {
        name: step.name.to_owned(),
        kind: String::new(),
        duration_ms: 0,
        rows_affected: rows,
        rows_read: None,
        rows_quarantined: None,
        notes,
    })
}

/// What `planrun check` refuses, refused again here: transaction control, COPY to
/// psql's output (a COPY FROM stdin without rows after it cannot come from a file),
/// and work that cannot run in the stage's transaction.
fn refuse_out_of_place(
    step: &SqlStep<'_>,
    statement: &Statement<'_>,
    has_rows: bool,
    in_transaction: bool,
) -> Result<(), Box<StageError>> {
    let offset = statement.offset;
    match &statement.kind {
        StatementKind::TransactionControl { what } => Err(step.refuse(
            offset,
            format!("{what}: planrun runs each stage in its own transaction; remove it (see `planrun check`)"),
        )),
        StatementKind::CopyStdio { .. } if !has_rows => Err(step.refuse(
            offset,
            "COPY TO STDOUT is read by psql; planrun does not".into(),
        )),
        kind => match (in_transaction, kind.outside_transaction_only()) {
            (true, Some(what)) => Err(step.refuse(
                offset,
                format!("{what} cannot run inside a transaction block: put it in a stage with transaction = false"),
            )),
            _ => Ok(()),
        },
    }
}

/// Runs one statement; the rows it affected. In a transaction, a statement that
/// times out on a lock is tried again in a savepoint on `retries`; outside one, a
/// failed statement may have left something behind, so it is not repeated blindly.
/// `index` is the index a concurrent build builds, named when it fails; `copy_rows`
/// the rows a `COPY ... FROM stdin` sends.
fn run_statement<C: GenericClient>(
    conn: &mut C,
    cx: &mut StageContext<'_, '_>,
    step: &SqlStep<'_>,
    statement: &Statement<'_>,
    (retries, index, copy_rows): (&LockRetries, Option<&str>, Option<&CopyRows>),
) -> Result<u64, Box<StageError>> {
    let started = std::time::Instant::now();
    let result = if cx.in_transaction {
        cx.with_lock_retries(conn, (step.name, retries), database_error, |tx| {
            send_statement(tx, statement.text, copy_rows)
        })
        .0
    } else {
        send_statement(conn, statement.text, copy_rows)
    };
    match result {
        Ok(count) => {
            cx.run
                .observer
                .statement_finished(statement.text, started.elapsed());
            Ok(count)
        }
        Err(error) => {
            let mut failure = step.failed(&error, statement.offset);
            place_row_error(&mut failure, &error, copy_rows);
            if !cx.in_transaction {
                failure.message.push_str(" (this stage runs outside a transaction: statements before this one stay committed)");
            }
            if let Some(index) = index {
                failure.message.push_str(&format!(
                    "; a failed concurrent build may leave {index} behind as an invalid index: the next apply drops it before building again"
                ));
            }
            Err(failure)
        }
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
    Some(match schema {
        Some(schema) => format!(
            "{}.{}",
            planrun_sql::quote_identifier(schema),
            planrun_sql::quote_identifier(name)
        ),
        None => planrun_sql::quote_identifier(name),
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
