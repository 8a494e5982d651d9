//! SQL files stay inside the plan's directory: a path that climbs out, or a symbolic
//! link that points out, is refused by `check` before anything reads the file, unless
//! the operator allows the directory (`--allow-sql-dir`); the plan cannot.

mod support;

use planrun_plan::ProblemKind;
use support::{check_allowing, check_in as check};

#[test]
fn a_sql_file_outside_the_plans_directory_is_refused_unless_the_operator_allows_it() {
    let root = tempfile::tempdir().unwrap();
    let plans = root.path().join("plans");
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("secret.sql"), "SELECT 'customer data';\n").unwrap();
    std::fs::write(plans.join("inside.sql"), "SELECT 1;\n").unwrap();
    std::os::unix::fs::symlink(shared.join("secret.sql"), plans.join("link.sql")).unwrap();

    let stages = "[[stage]]\nid = \"a\"\n[[stage.step]]\nsql_file = \"inside.sql\"\n[[stage.step]]\nsql_file = \"../shared/secret.sql\"\n[[stage.step]]\nsql_file = \"link.sql\"\n";
    let found = check(&plans, &format!("[plan]\nname = \"p\"\n{stages}"));
    let outside: Vec<&String> = found
        .iter()
        .filter(|(kind, _)| *kind == ProblemKind::SqlFileOutsidePlan)
        .map(|(_, message)| message)
        .collect();
    assert_eq!(outside.len(), 2, "{found:?}");
    assert!(
        outside[0].contains("`../shared/secret.sql` resolves to"),
        "{outside:?}"
    );
    assert!(outside[1].contains("`link.sql` resolves to"), "{outside:?}");
    assert!(
        !found
            .iter()
            .any(|(_, message)| message.contains("customer data")),
        "the file is named, never quoted: {found:?}"
    );

    let widened = check(
        &plans,
        &format!("[plan]\nname = \"p\"\nsql_dirs = [\"../shared\"]\n{stages}"),
    );
    assert_eq!(
        widened
            .iter()
            .filter(|(kind, _)| *kind == ProblemKind::SqlFileOutsidePlan)
            .count(),
        3,
        "the key and both files are refused: {widened:?}"
    );

    let allowed = check_allowing(
        &plans,
        &format!("[plan]\nname = \"p\"\n{stages}"),
        &[shared],
    );
    assert!(allowed.is_empty(), "{allowed:?}");
}
