//! SQL files stay inside the plan's directory: `sql_file` (of a step, a revert or a
//! rehearsal's writes) and
//! `setup_sql_file` must resolve, symbolic links followed, under the directory of the
//! plan file or one the operator allows on the command line (`--allow-sql-dir`; the plan itself cannot).
//! A plan from elsewhere then cannot make planrun read (and record in its ledger, or
//! quote in an error) a file such as `../../etc/passwd`.

use std::path::{Path, PathBuf};

use crate::model::{Plan, Span, StepKind};
use crate::problem::{PlanProblem, ProblemKind};

/// A problem for each SQL file that exists but resolves outside the allowed
/// directories (a missing file is reported elsewhere).
pub(crate) fn confinement_problems(plan: &Plan) -> Vec<PlanProblem> {
    let mut roots: Vec<PathBuf> = Vec::new();
    roots.extend(plan.dir().canonicalize().ok());
    roots.extend(
        plan.allowed_sql_dirs
            .iter()
            .filter_map(|dir| dir.canonicalize().ok()),
    );
    let files = plan
        .setup_sql_file
        .iter()
        .map(|(file, span, resolved)| (file, span, resolved))
        .chain(plan.stages.iter().flat_map(|stage| {
            let steps = stage
                .steps
                .iter()
                .chain(&stage.revert.steps)
                .chain(&stage.revert.rehearse_writes);
            steps.filter_map(|step| match &step.kind {
                StepKind::SqlFile {
                    path,
                    path_span,
                    resolved,
                } => Some((path, path_span, resolved)),
                _ => None,
            })
        }));
    files
        .filter_map(|(file, span, resolved)| outside(file, span, resolved, &roots))
        .collect()
}

fn outside(file: &str, span: &Span, resolved: &Path, roots: &[PathBuf]) -> Option<PlanProblem> {
    let real = resolved.canonicalize().ok()?;
    if roots.iter().any(|root| real.starts_with(root)) {
        return None;
    }
    Some(
        PlanProblem::new(
            ProblemKind::SqlFileOutsidePlan,
            format!(
                "SQL file `{file}` resolves to {}, outside the plan's directory",
                real.display()
            ),
        )
        .label(span.clone(), "outside the plan's directory")
        .help("keep SQL files in the plan's directory; whoever runs the plan may allow their directory with `--allow-sql-dir DIR`"),
    )
}
