//! Fuzzing the plan loader with proptest: arbitrary bytes and arbitrary TOML shapes
//! built from the plan vocabulary never panic, always give a plan or at least one
//! diagnostic, every label points inside the file, and the diagnostic renders.

use std::path::Path;

use planrun_plan::{Dag, Plan, PlanErrors};
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "plan",
    "name",
    "description",
    "lock_timeout",
    "statement_timeout",
    "backup_dir",
    "stage",
    "id",
    "title",
    "depends_on",
    "optional",
    "transaction",
    "precondition",
    "skip_if",
    "capture",
    "step",
    "verify",
    "sql",
    "sql_file",
    "transform",
    "params",
    "expect",
    "reason",
    "message",
    "setup_sql_file",
    "max_rehearsal_age",
    "bogus",
];

fn check(text: String) -> Result<(), TestCaseError> {
    let len = text.len();
    match Plan::parse(Path::new("fuzz/plan.toml"), text, None) {
        Ok(plan) => {
            // A plan that loads has a usable graph.
            prop_assert!(Dag::build(&plan).is_ok());
        }
        Err(errors) => {
            prop_assert!(!errors.problems.is_empty());
            for problem in &errors.problems {
                for (span, _) in &problem.labels {
                    prop_assert!(
                        span.start <= span.end && span.end <= len,
                        "label {:?} outside {} bytes",
                        span,
                        len
                    );
                }
            }
            render(&errors);
        }
    }
    Ok(())
}

fn render(errors: &PlanErrors) {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, errors)
        .expect("rendering into a String cannot fail");
}

fn scalar() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(toml::Value::Float),
        prop_oneof![
            Just("first".to_owned()),
            Just("> 0".to_owned()),
            Just("{a} + ".to_owned()),
            Just("no rows".to_owned()),
            Just("5s".to_owned()),
            Just("SELECT 1".to_owned()),
            ".{0,12}".prop_map(|s| s),
        ]
        .prop_map(toml::Value::String),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(KEYS).prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|map| toml::Value::Table(map.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = toml::Table> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_owned),
        value(),
        0..4,
    )
    .prop_map(|map| map.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(String::from_utf8_lossy(&bytes).into_owned())?;
    }

    #[test]
    fn arbitrary_toml_shapes_never_panic(document in document()) {
        if let Ok(text) = toml::to_string(&document) {
            check(text)?;
        }
    }

    #[test]
    fn mutated_reference_plans_never_panic(cut in 0usize..4000, insert in ".{0,8}") {
        let reference = include_str!("../../../docs/reference-plan.toml");
        let mut cut = cut.min(reference.len());
        while !reference.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut text = reference[..cut].to_owned();
        text.push_str(&insert);
        text.push_str(&reference[cut..]);
        check(text)?;
    }
}
