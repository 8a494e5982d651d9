//! Plan rules that hold between parts of a stage: what its checks may read, check
//! names, batched steps. Each broken plan is reported with a span on the offending
//! part, before anything runs.

use std::path::Path;

use planrun_plan::{Plan, PlanErrors, ProblemKind};

mod support;

use support::described;

fn problems(text: &str) -> PlanErrors {
    match Plan::parse(Path::new("rules/plan.toml"), text.to_owned(), None) {
        Ok(_) => panic!("the plan should be rejected:\n{text}"),
        Err(errors) => errors,
    }
}

#[test]
fn a_precondition_cannot_read_its_own_stages_capture() {
    let text = r#"
[plan]
name = "p"

[[stage]]
id = "load"
[[stage.capture]]
name = "rows"
sql = "SELECT count(*) FROM t"
[[stage.precondition]]
name = "not too many"
sql = "SELECT 1"
expect = "<= {rows}"
[[stage.skip_if]]
sql = "SELECT 1"
expect = "= {rows}"
reason = "done"
[[stage.step]]
sql = "SELECT 1"
[[stage.verify]]
name = "all there"
sql = "SELECT count(*) FROM t"
expect = "= {rows}"
"#;
    assert_eq!(
        described(text),
        [(
            ProblemKind::UndefinedCapture,
            vec!["\"= {rows}\"".to_owned()]
        ),],
        "one report for `rows` (the skip rule's, first in run order); the verification may read it"
    );
    let help = problems(text).problems[0].help.clone().unwrap();
    assert!(
        help.contains("only its verifications can read it"),
        "{help}"
    );

    // From a stage it depends on, the same capture is fine.
    let fine = r#"
[plan]
name = "p"

[[stage]]
id = "load"
[[stage.capture]]
name = "rows"
sql = "SELECT count(*) FROM t"
[[stage.step]]
sql = "SELECT 1"

[[stage]]
id = "next"
depends_on = ["load"]
[[stage.precondition]]
name = "not too many"
sql = "SELECT 1"
expect = "<= {rows}"
[[stage.step]]
sql = "SELECT 1"
"#;
    if let Err(errors) = Plan::parse(Path::new("rules/plan.toml"), fine.to_owned(), None) {
        panic!("{:?}", errors.problems);
    }
}

#[test]
fn two_checks_of_a_stage_cannot_share_a_name() {
    let text = r#"
[plan]
name = "p"

[[stage]]
id = "s"
[[stage.precondition]]
name = "ready"
sql = "SELECT true"
expect = true
[[stage.precondition]]
name = "ready"
sql = "SELECT 1"
expect = 1
[[stage.step]]
sql = "SELECT 1"
[[stage.verify]]
name = "ready"
sql = "SELECT true"
expect = true
"#;
    let found = described(text);
    assert_eq!(
        found.len(),
        1,
        "a verification may share a precondition's name: {found:?}"
    );
    assert_eq!(found[0].0, ProblemKind::DuplicateCheck);
    // The labels point at the second precondition, then the first.
    let errors = problems(text);
    let line_of = |span: &std::ops::Range<usize>| text[..span.start].lines().count() + 1;
    let lines: Vec<usize> = errors.problems[0]
        .labels
        .iter()
        .map(|(span, _)| line_of(span))
        .collect();
    assert_eq!(lines, [11, 7], "{found:?}");
}

#[test]
fn a_batched_step_needs_a_transaction_and_is_alone_in_its_stage() {
    let text = r#"
[plan]
name = "p"

[[stage]]
id = "s"
transaction = false
[[stage.step]]
transform = "t.one"
params = { mode = "batched", batch_size = 10 }
[[stage.step]]
transform = "t.two"
params = { mode = "batched" }
"#;
    let found = described(text);
    assert_eq!(
        found,
        [
            (
                ProblemKind::InvalidParams,
                vec!["{ mode = \"batched\", batch_size = 10 }".to_owned()]
            ),
            (
                ProblemKind::InvalidParams,
                vec![
                    "{ mode = \"batched\" }".to_owned(),
                    "{ mode = \"batched\", batch_size = 10 }".to_owned()
                ]
            ),
        ]
    );
}
