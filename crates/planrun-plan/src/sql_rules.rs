//! What `planrun check` knows of the SQL a stage runs, offline: every SQL file and
//! inline step parses (PostgreSQL's own parser, `planrun-sql`); no statement takes
//! over planrun's transaction; work that cannot run in a transaction block is in a
//! `transaction = false` stage; an enum value is not added and used in one
//! transaction; psql's client side is done first (variables, `COPY ... FROM stdin`
//! rows) and any other meta-command is refused.

use std::collections::BTreeMap;
use std::path::Path;

use planrun_sql::{expand_psql, parse_script, string_literals, StatementKind};

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
    /// An `after_commit = true` step: a concurrent index build may run there, on the
    /// session after the stage's commit (`after_commit.rs` checks the rest).
    after_commit: bool,
}

/// Every SQL problem of `stage`'s steps (missing files are reported elsewhere).
pub(crate) fn stage_sql_problems(
    stage: &Stage,
    variables: &BTreeMap<String, String>,
) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let sources: Vec<SqlSource<'_>> = stage
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            StepKind::Sql { sql } => Some(SqlSource {
                text: sql.clone(),
                name: format!("inline SQL of step `{}`", step.name),
                span: &step.span,
                after_commit: step.after_commit.is_some(),
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
                    after_commit: step.after_commit.is_some(),
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
        let expanded = expand_psql(&source.text, variables);
        let statements = match expanded
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|script| parse_script(&script.sql))
        {
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
            let text = expanded.as_ref().map_or(&source.text, |script| &script.sql);
            let place = format!("{} line {}", source.name, statement.line(text));
            let has_rows = expanded
                .as_ref()
                .is_ok_and(|script| script.copy_rows(statement).is_some());
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
                StatementKind::CopyStdio { .. } if has_rows => {}
                StatementKind::CopyStdio { from_stdin } => problems.push(
                    PlanProblem::new(
                        ProblemKind::SqlClientSide,
                        format!(
                            "{place}: COPY ... {} is read by psql; planrun does not",
                            if *from_stdin { "FROM STDIN" } else { "TO STDOUT" }
                        ),
                    )
                    .label(source.span.clone(), "this SQL")
                    .help("COPY to a file the server can write, or read the rows in a check or a transform"),
                ),
                kind => {
                    let after_commit_index = source.after_commit
                        && matches!(kind, StatementKind::ConcurrentIndex { .. });
                    let in_transaction = stage.transaction && !after_commit_index;
                    if let (true, Some(what)) = (in_transaction, kind.outside_transaction_only()) {
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

/// `sql` with psql's client side done (variables substituted, COPY rows set apart),
/// or as written when that fails (`check` reports why).
pub(crate) fn expanded_sql(sql: &str, variables: &BTreeMap<String, String>) -> String {
    expand_psql(sql, variables).map_or_else(|_| sql.to_owned(), |script| script.sql)
}
