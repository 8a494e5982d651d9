//! How a stage's failure reads in its report: a PostgreSQL error with SQLSTATE,
//! detail, hint and the line of the failing statement in its SQL file; a plain
//! message; the point a signal stopped the stage at; and a lock or statement timeout
//! explained by the sessions that blocked it and the setting that fired.

use postgres::error::ErrorPosition;

use crate::db::connect::redact;
use crate::db::interrupt;
use crate::error::error_chain;
use crate::stage::context::StageContext;
use crate::stage::sql::position_to_line_column;
use planrun_report::{StageError, StageReport, StageStatus};

/// Adds to a lock or statement timeout which sessions blocked the stage and which
/// timeout fired, from the blocker watch.
pub(crate) fn explain_timeout(error: &mut StageError, cx: &StageContext<'_, '_>) {
    let timeout = match error.sqlstate.as_deref() {
        Some("55P03") => "lock_timeout",
        // Also what planrun's own cancel on SIGINT/SIGTERM reports.
        Some("57014") if interrupt::requested().is_none() => "statement_timeout",
        _ => return,
    };
    if let Some(watch) = &cx.run.watch {
        error.blocked_by = watch.take();
    }
    let timeouts = &cx.stage.timeouts;
    let setting = match timeout {
        "lock_timeout" => timeouts.lock_timeout.as_ref(),
        _ => timeouts.statement_timeout.as_ref(),
    };
    let mut hint = format!(
        "stage `{}` ran with {timeout} = {}",
        cx.stage.id,
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

/// Marks the stage failed at `point` (a step name, or `BEGIN` / `COMMIT`) with the
/// database's error.
pub(crate) fn fail_at(stage_report: &mut StageReport, point: &str, error: &postgres::Error) {
    stage_report.status = StageStatus::Failed;
    stage_report.error = Some(stage_error(error, Some(point.to_owned()), None, "", 0));
}

/// A failure that is not PostgreSQL's own: its message, with any password redacted.
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
        _ if !sql.is_empty() => (Some(crate::stage::sql::statement_line(sql, offset)), None),
        _ => (None, None),
    };
    let statement = line.and_then(|line| crate::stage::sql::line_at(sql, line));
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
