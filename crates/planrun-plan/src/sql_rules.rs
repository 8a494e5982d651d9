//! What `planrun check` knows of the SQL a stage runs, offline: every SQL file and
//! inline step parses (PostgreSQL's own parser, `planrun-sql`); no statement takes
//! over planrun's transaction; work that cannot run in a transaction block is in a
//! `transaction = false` stage; an enum value is not added and used in one
//! transaction; nothing needs psql to feed it.

use planrun_sql::{parse_script, string_literals, StatementKind};

use std::path::Path;

use crate::model::{Span, Stage, StepKind};
use crate::problem::{PlanProblem, ProblemKind};

/// The text of the SQL file at `resolved` (`path` as the plan writes it, at `span`;
/// `owner` says whose it is in the message), `None` when it cannot be read (a missing
/// file is reported elsewhere), or a problem when it is not UTF-8, which `apply`
/// would only find when it reads the file to run it.
pub(crate) fn read_sql_file(
    resolved: &Path,
    path: &str,
    span: &Span,
    owner: &str,
) -> Result<Option<String>, PlanProblem> {
    let Ok(bytes) = std::fs::read(resolved) else {
        return Ok(None);
    };
    String::from_utf8(bytes).map(Some).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let bytes = error.as_bytes();
        let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
        PlanProblem::new(
            ProblemKind::SqlNotUtf8,
            format!(
                "SQL file `{path}`{owner} is not UTF-8: byte {offset} (line {line}) is 0x{:02x}",
                bytes[offset]
            ),
        )
        .label(span.clone(), format!("not UTF-8 at byte {offset}"))
        .help("planrun runs SQL files as UTF-8: convert it, e.g. `iconv -f LATIN1 -t UTF-8`")
    })
}

/// One SQL text of a stage: its text, how to name it, and the span to point at.
struct SqlSource<'a> {
    text: String,
    name: String,
    span: &'a Span,
}

/// Every SQL problem of `stage`'s steps (missing files are reported elsewhere).
pub(crate) fn stage_sql_problems(stage: &Stage) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let sources: Vec<SqlSource<'_>> = stage
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            StepKind::Sql { sql } => Some(SqlSource {
                text: sql.clone(),
                name: format!("inline SQL of step `{}`", step.name),
                span: &step.span,
            }),
            StepKind::SqlFile {
                path,
                path_span,
                resolved,
            } => match read_sql_file(
                resolved,
                path,
                path_span,
                &format!(" of stage `{}`", stage.id),
            ) {
                Ok(text) => text.map(|text| SqlSource {
                    text,
                    name: format!("`{path}`"),
                    span: path_span,
                }),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            StepKind::Transform { .. } => None,
        })
        .collect();

    // Enum values added so far in this stage's transaction, and where.
    let mut added_values: Vec<(String, String)> = Vec::new();
    for source in &sources {
        let statements = match parse_script(&source.text) {
            Ok(statements) => statements,
            Err(error) => {
                let kind = if error.message.contains("psql") || error.message.contains("STDIN") {
                    ProblemKind::SqlClientSide
                } else {
                    ProblemKind::SqlSyntax
                };
                let mut problem = PlanProblem::new(
                    kind,
                    format!(
                        "{} of stage `{}` does not parse: line {}, column {}: {}",
                        source.name, stage.id, error.line, error.column, error.message
                    ),
                )
                .label(source.span.clone(), "this SQL");
                if let Some(help) = &error.help {
                    problem = problem.help(help.clone());
                }
                problems.push(problem);
                continue;
            }
        };
        for statement in &statements {
            let place = format!("{} line {}", source.name, statement.line(&source.text));
            if stage.transaction {
                for (value, added_at) in &added_values {
                    if string_literals(statement.text)
                        .iter()
                        .any(|literal| literal == value)
                    {
                        problems.push(
                            PlanProblem::new(
                                ProblemKind::SqlEnumValueUsed,
                                format!(
                                    "{place} uses enum value '{value}', which {added_at} adds in the same transaction (PostgreSQL refuses: 55P04)"
                                ),
                            )
                            .label(source.span.clone(), "uses the new value")
                            .help("add the value in an earlier stage (its own transaction), then use it"),
                        );
                    }
                }
            }
            match &statement.kind {
                StatementKind::TransactionControl { what } => problems.push(
                    PlanProblem::new(
                        ProblemKind::SqlTransactionControl,
                        format!(
                            "{place}: {what} in stage `{}`; planrun runs each stage in its own transaction and owns it",
                            stage.id
                        ),
                    )
                    .label(source.span.clone(), format!("holds {what}"))
                    .help("remove BEGIN/COMMIT: the stage is the transaction, committed only when its verification passes; to commit part of the work on its own, make it a stage of its own"),
                ),
                StatementKind::CopyStdio { from_stdin } => problems.push(
                    PlanProblem::new(
                        ProblemKind::SqlClientSide,
                        format!(
                            "{place}: COPY ... {} is fed by psql; planrun does not",
                            if *from_stdin { "FROM STDIN" } else { "TO STDOUT" }
                        ),
                    )
                    .label(source.span.clone(), "this SQL")
                    .help("COPY from or to a file the server can read, INSERT the rows, or use a transform"),
                ),
                kind => {
                    if let (true, Some(what)) = (stage.transaction, kind.outside_transaction_only()) {
                        problems.push(
                            PlanProblem::new(
                                ProblemKind::SqlOutsideTransaction,
                                format!(
                                    "{place}: {what} cannot run inside a transaction block, and stage `{}` is one",
                                    stage.id
                                ),
                            )
                            .label(source.span.clone(), "this SQL")
                            .help("move it to a stage with `transaction = false`, where each statement runs on its own"),
                        );
                    }
                    if let StatementKind::AddsEnumValue { value } = kind {
                        added_values.push((value.clone(), place.clone()));
                    }
                }
            }
        }
    }
    problems
}
