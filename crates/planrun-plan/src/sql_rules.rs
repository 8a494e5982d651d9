//! What `planrun check` knows of the SQL a stage runs, offline: every SQL file and
//! inline step parses (PostgreSQL's own parser, `planrun-sql`); no statement takes
//! over planrun's transaction; work that cannot run in a transaction block is in a
//! `transaction = false` stage; an enum value is not added and used in one
//! transaction; psql's client side is done first (variables, `COPY ... FROM stdin`
//! rows) and any other meta-command is refused.

use std::collections::BTreeMap;

use planrun_sql::{expand_psql, parse_script, string_literals, StatementKind};

use crate::model::{Span, Stage, StepKind};
use crate::problem::{PlanProblem, ProblemKind};

/// One SQL text of a stage: its text, how to name it, and the span to point at.
struct SqlSource<'a> {
    text: String,
    name: String,
    span: &'a Span,
}

/// Every SQL problem of `stage`'s steps (missing files are reported elsewhere).
pub(crate) fn stage_sql_problems(
    stage: &Stage,
    variables: &BTreeMap<String, String>,
) -> Vec<PlanProblem> {
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
            } => std::fs::read_to_string(resolved)
                .ok()
                .map(|text| SqlSource {
                    text,
                    name: format!("`{path}`"),
                    span: path_span,
                }),
            StepKind::Transform { .. } => None,
        })
        .collect();

    let mut problems = Vec::new();
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

/// `sql` with psql's client side done (variables substituted, COPY rows set apart),
/// or as written when that fails (`check` reports why).
pub(crate) fn expanded_sql(sql: &str, variables: &BTreeMap<String, String>) -> String {
    expand_psql(sql, variables).map_or_else(|_| sql.to_owned(), |script| script.sql)
}
