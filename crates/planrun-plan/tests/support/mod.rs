//! Shared by the plan-rule tests: a plan text parsed, or its problems as (kind, the
//! text under each label).

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::path::Path;

use planrun_plan::{Plan, ProblemKind};

/// Each problem of a rejected plan: its kind and the plan text each label points at.
pub type Described = Vec<(ProblemKind, Vec<String>)>;

/// Parses `text` as the plan `tests/plan.toml`.
pub fn parse(text: &str) -> Result<Plan, Described> {
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
pub fn described(text: &str) -> Described {
    match parse(text) {
        Ok(_) => panic!("the plan should be rejected:\n{text}"),
        Err(described) => described,
    }
}
