//! One broken plan per validation problem under `tests/plans/broken/`: the kind, the
//! label positions (line, column) and the rendered diagnostic a user reads.

use planrun_plan::{LabelInfo, Plan, PlanErrors, ProblemKind, TransformCatalog};
use planrun_tests::{render_diagnostic, repo_path};

/// The transforms a plan may name in these tests.
struct Catalog;

impl TransformCatalog for Catalog {
    fn names(&self) -> Vec<String> {
        vec![
            "memoir.collect_images".into(),
            "memoir.split_chapters".into(),
        ]
    }

    fn check_params(&self, _name: &str, _params: &toml::Table) -> Vec<(String, String)> {
        Vec::new()
    }
}

fn load_broken(name: &str) -> PlanErrors {
    let path = repo_path(&format!("tests/plans/broken/{name}.toml"));
    match Plan::load_checked(&path, &Catalog) {
        Ok(_) => panic!("{name}.toml should be invalid"),
        Err(errors) => errors,
    }
}

/// (kind, labels as (line, column, text)) for every problem.
fn problems(errors: &PlanErrors) -> Vec<(ProblemKind, Vec<(usize, usize)>)> {
    errors
        .problems
        .iter()
        .map(|problem| {
            let labels = errors
                .label_positions(problem)
                .into_iter()
                .map(|LabelInfo { line, column, .. }| (line, column))
                .collect();
            (problem.kind, labels)
        })
        .collect()
}

fn rendered(errors: &PlanErrors) -> String {
    let text = render_diagnostic(errors);
    // The absolute path differs between machines.
    text.replace(&repo_path("").display().to_string(), "<repo>/")
}

#[test]
fn toml_syntax_error_points_at_the_unclosed_string() {
    let errors = load_broken("syntax");
    assert_eq!(problems(&errors)[0].0, ProblemKind::Syntax);
    assert_eq!(problems(&errors)[0].1[0].0, 5, "the error is on line 5");
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn unknown_key_suggests_the_nearest_valid_key() {
    let errors = load_broken("unknown_key");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::UnknownKey, vec![(6, 1)])]
    );
    assert_eq!(
        errors.problems[0].help.as_deref(),
        Some("did you mean `depends_on`?")
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn duplicate_ids_point_at_both_definitions() {
    let errors = load_broken("duplicate_id");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::DuplicateId, vec![(10, 6), (5, 6)])]
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn unknown_dependency_suggests_the_closest_stage() {
    let errors = load_broken("unknown_dependency");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::UnknownDependency, vec![(11, 15)])]
    );
    assert_eq!(
        errors.problems[0].help.as_deref(),
        Some("did you mean `create_tables`?")
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_three_stage_cycle_is_named_whole_with_the_closing_edge_labelled() {
    let errors = load_broken("cycle");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::Cycle, vec![(6, 15), (18, 15), (12, 15)])]
    );
    let problem = &errors.problems[0];
    assert_eq!(
        problem.message,
        "dependency cycle: alpha -> gamma -> beta -> alpha"
    );
    assert!(
        problem.labels[2].1.contains("closes the cycle"),
        "{:?}",
        problem.labels
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_required_stage_may_not_depend_on_an_optional_one() {
    let errors = load_broken("required_on_optional");
    assert_eq!(
        problems(&errors),
        vec![(
            ProblemKind::RequiredDependsOnOptional,
            vec![(12, 15), (11, 6)]
        )]
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_stage_without_steps_is_rejected() {
    let errors = load_broken("no_steps");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::NoSteps, vec![(4, 1)])]
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_missing_sql_file_is_named_relative_to_the_plan() {
    let errors = load_broken("missing_sql_file");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::MissingSqlFile, vec![(9, 12)])]
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn an_unknown_transform_suggests_the_closest_registered_name() {
    let errors = load_broken("unknown_transform");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::UnknownTransform, vec![(7, 13)])]
    );
    assert!(errors.problems[0]
        .help
        .as_deref()
        .unwrap()
        .starts_with("did you mean `memoir.split_chapters`?"));
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_malformed_expectation_is_shown_with_what_is_accepted() {
    let errors = load_broken("malformed_expectation");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::MalformedExpectation, vec![(11, 10)])]
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_capture_used_before_any_stage_defines_it_is_rejected() {
    let errors = load_broken("undefined_capture");
    assert_eq!(
        problems(&errors),
        vec![(ProblemKind::UndefinedCapture, vec![(11, 10)])]
    );
    assert!(errors.problems[0]
        .help
        .as_deref()
        .unwrap()
        .contains("count_legacy"));
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn every_problem_in_a_plan_is_reported_in_one_run() {
    let errors = load_broken("many_problems");
    let kinds: Vec<ProblemKind> = problems(&errors)
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            ProblemKind::UnknownKey,
            ProblemKind::Cycle,
            ProblemKind::MissingSqlFile,
            ProblemKind::UnknownTransform,
            ProblemKind::MalformedExpectation,
        ]
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn the_reference_plan_in_the_docs_parses() {
    let path = repo_path("docs/reference-plan.toml");
    if let Err(errors) = Plan::load_checked(&path, &planrun_cli::default_registry()) {
        panic!("{}", render_diagnostic(&errors));
    }
    // The commented-out batched form is valid too.
    let text = std::fs::read_to_string(&path).unwrap();
    let batched = text
        .lines()
        .find_map(|line| line.strip_prefix("# params = { on_invalid = \"quarantine\", mode"))
        .expect("the reference plan shows the batched params");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("reference")).unwrap();
    for file in ["reference/01_schema.sql", "reference/session.sql"] {
        std::fs::copy(repo_path(&format!("docs/{file}")), dir.path().join(file)).unwrap();
    }
    let copy = dir.path().join("reference-plan.toml");
    std::fs::write(
        &copy,
        text.replace(
            "params = { on_invalid = \"quarantine\" }",
            &format!("params = {{ on_invalid = \"quarantine\", mode{batched}"),
        ),
    )
    .unwrap();
    if let Err(errors) = Plan::load_checked(&copy, &planrun_cli::default_registry()) {
        panic!("{}", render_diagnostic(&errors));
    }
}

#[test]
fn the_memoir_plan_is_valid_with_the_shipped_transforms() {
    let path = repo_path("plans/memoir.toml");
    if let Err(errors) = Plan::load_checked(&path, &planrun_cli::default_registry()) {
        panic!("{}", render_diagnostic(&errors));
    }
}

/// Every file in `tests/plans/malformed/` is rejected with diagnostics whose labels
/// point inside the file; the rendered diagnostics are snapshotted per file.
#[test]
fn the_malformed_plan_corpus_is_rejected_with_diagnostics() {
    let dir = repo_path("tests/plans/malformed");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let errors = match Plan::parse(&path, text.clone(), Some(&Catalog)) {
            Ok(_) => panic!("{} should be rejected", path.display()),
            Err(errors) => errors,
        };
        assert!(!errors.problems.is_empty());
        for problem in &errors.problems {
            for (span, _) in &problem.labels {
                assert!(
                    span.end <= text.len(),
                    "{}: label {span:?} outside the file",
                    path.display()
                );
            }
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("malformed_{name}"), rendered(&errors));
    }
}
