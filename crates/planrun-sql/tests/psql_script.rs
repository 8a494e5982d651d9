//! psql's client side as planrun runs it: variables (`\set`, `:NAME`, `:'NAME'`,
//! `:"NAME"`) substituted with psql's quoting, `COPY ... FROM stdin` with its rows
//! taken out of the text, and every other meta-command refused with its line and
//! what it does.

use std::collections::BTreeMap;

use planrun_sql::{expand_psql, parse_script, StatementKind};

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn variables_are_substituted_with_psqls_quoting() {
    let given = vars(&[("schema", "app"), ("who", "O'Brien"), ("path", "C:\\x")]);
    let sql = "CREATE TABLE :\"schema\".t (a text DEFAULT :'who');\nSELECT :'path', x::int, ':schema', $$:schema$$, :missing FROM :schema.t;";
    let script = expand_psql(sql, &given).unwrap();
    assert_eq!(
        script.sql,
        "CREATE TABLE \"app\".t (a text DEFAULT 'O''Brien');\nSELECT  E'C:\\\\x', x::int, ':schema', $$:schema$$, :missing FROM app.t;"
    );
}

#[test]
fn set_and_unset_change_the_variables_for_the_lines_after_them() {
    let sql = "\\set ON_ERROR_STOP on\n\\set n 4\n\\set name 'it''s' ' here'\n\\set tbl :name\nSELECT :n, :'name', :{?n}, :{?gone};\n\\unset n\nSELECT :n;\n";
    let script = expand_psql(sql, &BTreeMap::new()).unwrap();
    assert_eq!(
        script.sql,
        "\n\n\n\nSELECT 4, 'it''s here', TRUE, FALSE;\n\nSELECT :n;\n"
    );
}

#[test]
fn copy_rows_are_taken_out_and_lines_keep_their_numbers() {
    let sql = "CREATE TABLE t (a int, b text);\nCOPY public.t (a, b) FROM stdin;\n1\tone\n2\t\\N\n\\.\nSELECT 1;\n";
    let script = expand_psql(sql, &BTreeMap::new()).unwrap();
    assert_eq!(
        script.sql,
        "CREATE TABLE t (a int, b text);\nCOPY public.t (a, b) FROM stdin;\n\n\n\nSELECT 1;\n"
    );
    let statements = parse_script(&script.sql).unwrap();
    assert_eq!(
        statements[1].kind,
        StatementKind::CopyStdio { from_stdin: true }
    );
    let rows = script.copy_rows(&statements[1]).expect("the COPY has rows");
    assert_eq!(rows.data, "1\tone\n2\t\\N\n");
    assert_eq!(rows.first_line, 3);
    assert!(script.copy_rows(&statements[0]).is_none());
    assert_eq!(statements[2].line(&script.sql), 6);
}

#[test]
fn other_meta_commands_are_refused_with_their_line_and_what_they_do() {
    for (sql, line, what) in [
        (
            "SELECT 1;\n\\if :x\nSELECT 2;\n\\endif\n",
            2,
            "`\\if` is a psql meta-command that opens, continues or closes psql's conditional block",
        ),
        (
            "SELECT 1 AS a \\gset\n",
            1,
            "`\\gset` is a psql meta-command that stores a query's result in psql variables",
        ),
        ("\n\n\\i other.sql\n", 3, "`\\i` is a psql meta-command that includes another file"),
        (
            "\\connect other\n",
            1,
            "`\\connect` is a psql meta-command that connects to another database",
        ),
        ("\\set x `date`\n", 1, "a backquoted shell command"),
    ] {
        let error = expand_psql(sql, &BTreeMap::new()).unwrap_err();
        assert_eq!(error.line, line, "{sql}: {error}");
        assert!(error.message.contains(what), "{sql}: {error}");
    }
}

#[test]
fn a_file_without_psql_input_is_unchanged() {
    let sql = "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $f$ SELECT '\\x:y' $f$;\nSELECT E'a\\'b', arr[1:2], 'x'::text /* :c */ -- :d\n;";
    assert_eq!(expand_psql(sql, &BTreeMap::new()).unwrap().sql, sql);
}
