//! Steps that run after their stage commits (`after_commit = true`), checked offline:
//! they come last, they are SQL, and every lock their statements take blocks neither
//! the application's readers (ACCESS SHARE) nor its writers (ROW EXCLUSIVE), as
//! `VALIDATE CONSTRAINT`'s and `CREATE INDEX CONCURRENTLY`'s SHARE UPDATE EXCLUSIVE
//! do not (a concurrent build, the one statement here that cannot run in a transaction
//! block, makes the engine run the stage's after-commit steps on the session). Such a
//! step runs while the stage's work is already visible, so a lock that makes the
//! application wait there would be a second cutover the plan did not budget for.

use std::collections::BTreeMap;

use planrun_sql::{analyze_script, unseen_after_commit, AnalysisContext};

use crate::model::{Stage, StepKind};
use crate::problem::{PlanProblem, ProblemKind};

/// Every problem of `stage`'s after-commit steps (an unreadable or unparsable file is
/// reported by `sql_rules.rs`).
pub(crate) fn after_commit_problems(
    stage: &Stage,
    variables: &BTreeMap<String, String>,
) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let first = stage.steps_before_commit();
    for step in &stage.steps[first..] {
        let Some(span) = &step.after_commit else {
            problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidValue,
                    format!(
                        "step `{}` of stage `{}` runs before the commit but comes after an `after_commit` step",
                        step.name, stage.id
                    ),
                )
                .label(step.span.clone(), "runs in the stage's transaction")
                .help("put every `after_commit = true` step last"),
            );
            continue;
        };
        if !stage.transaction {
            problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidValue,
                    format!(
                        "stage `{}` has an `after_commit` step but transaction = false",
                        stage.id
                    ),
                )
                .label(span.clone(), "after the commit of a stage that has none")
                .help("remove transaction = false, or make this an ordinary step"),
            );
        }
        let (sql, place) = match &step.kind {
            StepKind::Sql { sql } => (sql.clone(), format!("inline SQL of step `{}`", step.name)),
            StepKind::SqlFile { path, resolved, .. } => match std::fs::read_to_string(resolved) {
                Ok(sql) => (sql, format!("`{path}`")),
                Err(_) => continue,
            },
            StepKind::Transform { name, .. } => {
                problems.push(
                    PlanProblem::new(
                        ProblemKind::AfterCommitLock,
                        format!("transform `{name}` cannot run after the commit of stage `{}`", stage.id),
                    )
                    .label(span.clone(), "only SQL steps may run after the commit")
                    .help("what runs after the commit must be read offline to take no lock that blocks the application; a transform's work belongs in the stage"),
                );
                continue;
            }
        };
        let sql = crate::sql_rules::expanded_sql(&sql, variables);
        let mut context = AnalysisContext::new();
        context.begin_stage(true, true);
        let Ok(statements) = analyze_script(&sql, &mut context) else {
            continue;
        };
        let mut blocking_lines = Vec::new();
        for statement in statements {
            if statement
                .impact
                .locks
                .iter()
                .any(|lock| lock.mode.blocks_reads() || lock.mode.blocks_writes())
            {
                blocking_lines.push(statement.line);
            }
            let blocking = statement
                .impact
                .locks
                .iter()
                .filter(|lock| lock.mode.blocks_reads() || lock.mode.blocks_writes());
            for lock in blocking {
                let blocks = if lock.mode.blocks_reads() {
                    "readers and writers"
                } else {
                    "writers"
                };
                problems.push(
                    PlanProblem::new(
                        ProblemKind::AfterCommitLock,
                        format!(
                            "{place} line {} takes {} on `{}` after the commit of stage `{}`: it blocks the application's {blocks}",
                            statement.line, lock.mode, lock.relation, stage.id
                        ),
                    )
                    .label(span.clone(), "runs after the commit")
                    .label(step.span.clone(), format!("takes {} on `{}`", lock.mode, lock.relation))
                    .help("after the commit only locks up to SHARE UPDATE EXCLUSIVE (VALIDATE CONSTRAINT's) may be taken; run this step in the stage, before its commit"),
                );
            }
            // A concurrent index build is what the after-commit steps may run outside
            // a transaction block (the engine runs them on the session then).
            let outside = statement
                .impact
                .outside_transaction
                .as_ref()
                .filter(|why| why.as_str() != "CREATE INDEX CONCURRENTLY");
            if let Some(why) = outside {
                problems.push(
                    PlanProblem::new(
                        ProblemKind::AfterCommitLock,
                        format!(
                            "{place} line {} cannot run in the after-commit transaction: {why}",
                            statement.line
                        ),
                    )
                    .label(
                        span.clone(),
                        "runs in a transaction of its own after the commit",
                    ),
                );
            }
        }
        for unseen in unseen_after_commit(&sql).unwrap_or_default() {
            if blocking_lines.contains(&unseen.line) {
                continue;
            }
            problems.push(
                PlanProblem::new(
                    ProblemKind::AfterCommitLock,
                    format!(
                        "{place} line {} cannot be read offline to block no one after the commit of stage `{}`: {}",
                        unseen.line, stage.id, unseen.what
                    ),
                )
                .label(span.clone(), "runs after the commit")
                .help("after the commit only VALIDATE CONSTRAINT, a named CREATE INDEX CONCURRENTLY on columns, ANALYZE, settings and queries calling `pg_catalog.` functions may run; run this step in the stage, before its commit"),
            );
        }
    }
    problems
}
