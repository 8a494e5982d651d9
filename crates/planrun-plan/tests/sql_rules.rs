//! `planrun check` reads every SQL step with PostgreSQL's parser before anything
//! connects: a file that does not parse, transaction control, work that cannot run in
//! a transaction block, an enum value added and used in one transaction, and psql-only
//! input are each reported at their file and line.

mod support;

use planrun_plan::ProblemKind;
use support::check_in;

fn problems(files: &[(&str, &str)], plan: &str) -> Vec<(ProblemKind, String)> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    check_in(dir.path(), plan)
}

const PLAN: &str = r#"
[plan]
name = "sql"

[[stage]]
id = "schema"
[[stage.step]]
sql_file = "01_schema.sql"
[[stage.step]]
sql = "SELECT 'happy'::mood"

[[stage]]
id = "index"
depends_on = ["schema"]
transaction = false
[[stage.step]]
sql_file = "02_index.sql"
"#;

#[test]
fn each_sql_problem_is_named_with_its_file_and_line() {
    let found = problems(
        &[
            (
                "01_schema.sql",
                "BEGIN;\nCREATE TYPE mood AS ENUM ('sad');\nALTER TYPE mood ADD VALUE 'happy';\n\
                 CREATE INDEX CONCURRENTLY ix ON t (a);\nCOPY t TO STDOUT;\nCOMMIT;\n",
            ),
            (
                "02_index.sql",
                "CREATE INDEX CONCURRENTLY ix2 ON t (a);\nVACUUM t;\n",
            ),
        ],
        PLAN,
    );
    let described: Vec<String> = found
        .iter()
        .map(|(kind, message)| format!("{}: {message}", kind.code()))
        .collect();
    let expect = [
        "plan::sql_transaction_control: `01_schema.sql` line 1: BEGIN",
        "plan::sql_outside_transaction: `01_schema.sql` line 4: CREATE INDEX CONCURRENTLY",
        "plan::sql_client_side: `01_schema.sql` line 5: COPY ... TO STDOUT",
        "plan::sql_transaction_control: `01_schema.sql` line 6: COMMIT",
        "plan::sql_enum_value_used: inline SQL of step `sql#2` line 1 uses enum value 'happy', which `01_schema.sql` line 3 adds",
    ];
    for expected in expect {
        assert!(
            described.iter().any(|line| line.starts_with(expected)),
            "missing {expected:?} in\n{}",
            described.join("\n")
        );
    }
    assert_eq!(described.len(), expect.len(), "{}", described.join("\n"));
}

#[test]
fn a_file_that_does_not_parse_or_needs_psql_is_refused_before_anything_connects() {
    let plan = "[plan]\nname = \"p\"\n[[stage]]\nid = \"a\"\n[[stage.step]]\nsql_file = \"a.sql\"\n[[stage.step]]\nsql_file = \"b.sql\"\n";
    let found = problems(
        &[
            ("a.sql", "SELECT 1;\n\nCREAT TABLE t (a int);\n"),
            (
                "b.sql",
                "\\set ON_ERROR_STOP on\n\\if :ready\nSELECT 1;\n\\endif\n",
            ),
        ],
        plan,
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, ProblemKind::SqlSyntax);
    assert!(found[0].1.contains("`a.sql` of stage `a` does not parse: line 3, column 1: syntax error at or near \"CREAT\""), "{found:?}");
    assert_eq!(found[1].0, ProblemKind::SqlClientSide);
    assert!(
        found[1].1.contains(
            "`b.sql` of stage `a` does not parse: line 2, column 1: `\\if` is a psql meta-command"
        ),
        "{found:?}"
    );
}
