//! One broken plan per validation problem under `tests/plans/broken/`: the kind, the
//! label positions (line, column) and the rendered diagnostic a user reads; then what
//! the command line says about the plan it is given (a missing file, `check`'s
//! summary) and the wording of its options and help.

use planrun_plan::{LabelInfo, Plan, PlanErrors, ProblemKind, TransformCatalog};
use planrun_tests::{
    describe, planrun, planrun_on, render_diagnostic, repo_path, scenario, stdout, TestDb,
    CUSTOMERS,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

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
fn a_cycle_does_not_hide_the_other_problems() {
    let errors = load_broken("cycle_and_more");
    assert_eq!(
        problems(&errors),
        vec![
            (ProblemKind::Cycle, vec![(8, 15), (18, 15)]),
            (ProblemKind::UnknownTransform, vec![(10, 13)]),
            (ProblemKind::UndefinedCapture, vec![(14, 10)]),
            (ProblemKind::MissingSqlFile, vec![(23, 12)]),
        ]
    );
    assert_eq!(
        errors.problems[2].help.as_deref(),
        Some("did you mean `{legacy_rows}`?")
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_misspelt_step_key_is_an_unknown_key_with_the_nearest_valid_one() {
    let errors = load_broken("misspelt_step_key");
    assert_eq!(
        problems(&errors),
        vec![
            (ProblemKind::UnknownKey, vec![(7, 1)]),
            (ProblemKind::MissingKey, vec![(12, 1)]),
        ]
    );
    assert_eq!(
        errors.problems[0].message,
        "unknown key `sql_flie` in [[stage.step]]"
    );
    assert_eq!(
        errors.problems[0].help.as_deref(),
        Some("did you mean `sql_file`?")
    );
    // A step with none of the three keys, and no misspelling of one, is told what to
    // add.
    let help = errors.problems[1].help.as_deref().unwrap_or_default();
    assert!(
        help.contains("sql_file =") && !help.contains("split"),
        "{help}"
    );
    insta::assert_snapshot!(rendered(&errors));
}

#[test]
fn a_stage_key_below_a_sub_table_is_said_to_belong_to_the_stage() {
    let errors = load_broken("stage_key_under_sub_table");
    assert_eq!(
        problems(&errors),
        vec![
            (ProblemKind::UnknownKey, vec![(19, 1), (13, 1)]),
            (ProblemKind::UnknownKey, vec![(20, 1), (13, 1)]),
            (ProblemKind::UnknownKey, vec![(27, 1), (24, 1)]),
        ]
    );
    let helps: Vec<&str> = errors
        .problems
        .iter()
        .map(|problem| problem.help.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        helps[0],
        "`depends_on` belongs to the stage; move it above the stage's first [[stage.step]] table \
         (a key below a table header belongs to that table)"
    );
    assert!(
        helps[1].starts_with(
            "`optional` belongs to the stage; move it above the stage's first [[stage.step]] table"
        ),
        "{}",
        helps[1]
    );
    assert!(
        helps[2].starts_with("did you mean `depends_on`? It belongs to the stage; move it above the stage's first [[stage.skip_if]] table"),
        "{}",
        helps[2]
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

#[test]
fn a_missing_plan_file_is_named_with_the_plans_nearby() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plans")).unwrap();
    std::fs::write(dir.path().join("plans/shop.toml"), "").unwrap();
    std::fs::write(dir.path().join("other.toml"), "").unwrap();
    let stderr_of = |args: &[&str], cwd: &std::path::Path| {
        let output = planrun(PLANRUN, cwd, args, &[]);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert_eq!(
        stderr_of(&["check", "nope.toml"], dir.path()),
        "error: plan file nope.toml not found; plans nearby: other.toml, plans/shop.toml\n"
    );
    assert_eq!(
        stderr_of(&["graph", "plans/shp.toml"], dir.path()),
        "error: plan file plans/shp.toml not found; did you mean plans/shop.toml?\n"
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        stderr_of(&["check", "nope.toml"], empty.path()),
        "error: plan file nope.toml not found\n"
    );
    assert_eq!(
        stderr_of(&["check"], empty.path()),
        "error: no plan given and ./plans does not exist; name a plan file or set PLANRUN_PLAN\n"
    );
}

#[test]
fn the_check_summary_counts_in_english() {
    let shop = repo_path("tests/plans/scenarios/shop");
    let output = planrun(PLANRUN, &shop, &["check", "plan.toml"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("\n  3 stages (0 optional) in 3 levels; 3 steps: 3 SQL, 0 transforms\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  1 precondition, 1 skip rule, 1 capture, 3 verifications\n"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.toml"),
        "[plan]\nname = \"one\"\n[[stage]]\nid = \"only\"\n[[stage.step]]\nsql = \"SELECT 1\"\n",
    )
    .unwrap();
    let output = planrun(PLANRUN, dir.path(), &["check", "one.toml"], &[]);
    let text = stdout(&output);
    assert!(
        text.contains("\n  1 stage (0 optional) in 1 level; 1 step: 1 SQL, 0 transforms\n"),
        "{}",
        describe(&output)
    );
    assert!(
        text.contains("\n  0 preconditions, 0 skip rules, 0 captures, 0 verifications\n"),
        "{text}"
    );
}

/// `apply`'s live lines name a stage without a title once, and its report says once
/// that an optional stage was left out.
#[test]
fn apply_says_each_thing_once() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let plan = dir.path().join("plan.toml");
    let mut text = std::fs::read_to_string(&plan).unwrap();
    text.push_str(
        "\n[[stage]]\nid = \"analyze_orders\"\noptional = true\ndepends_on = [\"add_total\"]\n\
         [[stage.step]]\nsql = \"ANALYZE orders\"\n",
    );
    std::fs::write(&plan, text).unwrap();
    let output = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("-> create_orders\n"),
        "{}",
        describe(&output)
    );
    assert!(!stderr.contains("(create_orders)"), "{}", describe(&output));
    let report = stdout(&output);
    assert!(
        report.contains("optional: run with --include-optional or --stage"),
        "{report}"
    );
    assert!(!report.contains("optional; optional"), "{report}");
}

#[test]
fn lock_wait_takes_a_duration_or_a_number_of_seconds() {
    let shop = repo_path("tests/plans/scenarios/shop");
    // Nothing listens on port 1: an accepted --lock-wait gets as far as connecting.
    let nowhere = "postgresql://planrun@127.0.0.1:1/nowhere";
    for wait in ["5s", "500ms", "2min", "0.5", "3"] {
        let output = planrun(
            PLANRUN,
            &shop,
            &[
                "apply",
                "plan.toml",
                "--no-backup",
                "--lock-wait",
                wait,
                "--database-url",
                nowhere,
            ],
            &[],
        );
        assert_eq!(
            output.status.code(),
            Some(16),
            "--lock-wait {wait}: {}",
            describe(&output)
        );
    }
    for (wait, reason) in [
        ("5x", "write a whole number and a unit"),
        ("-1", "a number of seconds, 0 or more"),
        ("1m", "PostgreSQL writes minutes as min, e.g. \"1min\""),
    ] {
        let output = planrun(
            PLANRUN,
            &shop,
            &[
                "apply",
                "plan.toml",
                "--no-backup",
                &format!("--lock-wait={wait}"),
                "--database-url",
                nowhere,
            ],
            &[],
        );
        assert_eq!(
            output.status.code(),
            Some(2),
            "--lock-wait {wait}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "invalid value '{wait}' for '--lock-wait <DURATION>'"
            )) && stderr.contains(reason),
            "{stderr}"
        );
    }
}

#[test]
fn help_help_shows_help() {
    for args in [
        &["help", "--help"][..],
        &["help"],
        &["help", "check"],
        &["--help"],
    ] {
        let output = planrun(PLANRUN, &repo_path(""), args, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(
            stdout(&output).contains("Usage:"),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let output = planrun(PLANRUN, &repo_path(""), &["help", "check"], &[]);
    assert!(
        stdout(&output).contains("Validate a plan offline"),
        "{}",
        describe(&output)
    );
}
