//! Shared by the plan-rule tests: a plan text parsed, or its problems as (kind, the
//! text under each label).

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::path::Path;

use planrun_plan::{Plan, ProblemKind, TransformCatalog};

/// Each problem of a rejected plan: its kind and the plan text each label points at.
pub(crate) type Described = Vec<(ProblemKind, Vec<String>)>;

/// Parses `text` as the plan `tests/plan.toml`.
pub(crate) fn parse(text: &str) -> Result<Plan, Described> {
    Plan::parse(Path::new("tests/plan.toml"), text.to_owned(), None).map_err(|errors| {
        errors
            .problems
            .iter()
            .map(|problem| {
                let labelled = problem
                    .labels
                    .iter()
                    .map(|(span, _)| text[span.start..span.end].to_owned())
                    .collect();
                (problem.kind, labelled)
            })
            .collect()
    })
}

/// The problems of `text`, which must be rejected.
pub(crate) fn described(text: &str) -> Described {
    match parse(text) {
        Ok(_) => panic!("the plan should be rejected:\n{text}"),
        Err(described) => described,
    }
}

/// A catalog without transforms, for plans of SQL steps only.
pub(crate) struct NoTransforms;

impl TransformCatalog for NoTransforms {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn check_params(&self, _: &str, _: &toml::Table) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Writes `plan` as `plan.toml` in `dir` and loads it with its environment checked
/// (SQL files read): every problem as (kind, message), none when it loads.
pub(crate) fn check_in(dir: &Path, plan: &str) -> Vec<(ProblemKind, String)> {
    check_allowing(dir, plan, &[])
}

/// [`check_in`] with SQL files also allowed in the operator's `sql_dirs`.
pub(crate) fn check_allowing(
    dir: &Path,
    plan: &str,
    sql_dirs: &[std::path::PathBuf],
) -> Vec<(ProblemKind, String)> {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).unwrap();
    let operator = planrun_plan::Operator {
        sql_dirs: sql_dirs.to_vec(),
        ..Default::default()
    };
    match Plan::load_checked_allowing(&path, &NoTransforms, &operator) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .problems
            .into_iter()
            .map(|problem| (problem.kind, problem.message))
            .collect(),
    }
}
