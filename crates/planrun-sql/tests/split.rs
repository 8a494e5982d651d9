//! Splitting and classifying real SQL the way PostgreSQL's parser reads it, including
//! each construct a hand-written `;` scanner got wrong.

use planrun_sql::{parse_script, token_checksum, StatementKind};

fn texts(sql: &str) -> Vec<&str> {
    parse_script(sql)
        .unwrap_or_else(|error| panic!("{error}\n{sql}"))
        .into_iter()
        .map(|statement| statement.text)
        .collect()
}

#[test]
fn quotes_bodies_and_rules_keep_their_semicolons() {
    assert_eq!(
        texts("SELECT E'it\\'s; fine';\nSELECT 2;"),
        ["SELECT E'it\\'s; fine'", "SELECT 2"]
    );
    let atomic = "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT a + b;\n  SELECT a - b;\nEND";
    assert_eq!(
        texts(&format!("{atomic};\nSELECT 1;")),
        [atomic, "SELECT 1"]
    );
    let rule = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2))";
    assert_eq!(
        texts(&format!(
            "CREATE TABLE t (a int); CREATE TABLE log (a int);\n{rule};"
        )),
        ["CREATE TABLE t (a int)", "CREATE TABLE log (a int)", rule]
    );
    let dollar = "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $ünï$ SELECT 'a;b' $ünï$";
    assert_eq!(texts(&format!("{dollar};")), [dollar]);
    assert_eq!(
        texts("CREATE TABLE t$x$ (a int); SELECT a FROM t$x$;"),
        ["CREATE TABLE t$x$ (a int)", "SELECT a FROM t$x$"]
    );
}

#[test]
fn statement_text_and_offsets_are_exactly_as_in_the_file() {
    let sql = "-- header; with a semicolon\n/* block; */ SELECT 1;\n\n  SELECT\n  2 -- trailing\n;";
    let statements = parse_script(sql).unwrap();
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0].text, "SELECT 1");
    assert_eq!(&sql[statements[0].offset..][..8], "SELECT 1");
    assert_eq!(statements[0].line(sql), 2);
    assert_eq!(statements[1].text, "SELECT\n  2 -- trailing");
    assert_eq!(statements[1].line(sql), 4);
}

#[test]
fn transaction_control_and_work_outside_transactions_are_recognised() {
    let sql = "BEGIN; SAVEPOINT a; ROLLBACK TO SAVEPOINT a; COMMIT;
               CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON app.t (a);
               DROP INDEX CONCURRENTLY ix; REINDEX INDEX CONCURRENTLY ix; VACUUM t; ANALYZE t;
               ALTER TABLE p DETACH PARTITION c CONCURRENTLY; CREATE DATABASE d; ALTER SYSTEM SET work_mem = '1MB';
               ALTER TYPE mood ADD VALUE 'meh'; COPY t FROM STDIN; COPY t TO STDOUT; COPY t FROM '/tmp/x';
               SET search_path = app; SET LOCAL work_mem = '1MB'; SELECT 1;";
    let kinds: Vec<StatementKind> = parse_script(sql)
        .unwrap()
        .into_iter()
        .map(|s| s.kind)
        .collect();
    let no_tx = |what: &str| StatementKind::NoTransaction { what: what.into() };
    assert_eq!(
        kinds,
        [
            StatementKind::TransactionControl { what: "BEGIN" },
            StatementKind::TransactionControl { what: "SAVEPOINT" },
            StatementKind::TransactionControl {
                what: "ROLLBACK TO SAVEPOINT"
            },
            StatementKind::TransactionControl { what: "COMMIT" },
            StatementKind::ConcurrentIndex {
                schema: Some("app".into()),
                name: Some("ix".into())
            },
            no_tx("DROP INDEX CONCURRENTLY"),
            no_tx("REINDEX CONCURRENTLY"),
            no_tx("VACUUM"),
            StatementKind::Other,
            no_tx("DETACH PARTITION CONCURRENTLY"),
            no_tx("CREATE DATABASE"),
            no_tx("ALTER SYSTEM"),
            StatementKind::AddsEnumValue {
                value: "meh".into()
            },
            StatementKind::CopyStdio { from_stdin: true },
            StatementKind::CopyStdio { from_stdin: false },
            StatementKind::Other,
            StatementKind::SessionSetting,
            StatementKind::Other,
            StatementKind::Other,
        ]
    );
}

#[test]
fn psql_only_input_is_named_at_its_line() {
    let error = parse_script("SELECT 1;\n\\set answer 42\nSELECT :answer;").unwrap_err();
    assert_eq!((error.line, error.column), (2, 1));
    assert!(
        error.message.contains("`\\set` is a psql meta-command"),
        "{error}"
    );

    let error = parse_script("SELECT 1;\nSELECT * FROM t WHERE id = :id;").unwrap_err();
    assert_eq!(error.line, 2);
    assert!(
        error.message.contains("`:id` is a psql variable"),
        "{error}"
    );

    let error = parse_script(
        "CREATE TABLE t (a int, b text);\nCOPY t (a, b) FROM stdin;\n1\tO'Brien\n\\.\nSELECT 1;",
    )
    .unwrap_err();
    assert_eq!((error.line, error.column), (2, 1));
    assert!(error.message.contains("COPY ... FROM STDIN"), "{error}");
}

#[test]
fn a_syntax_error_is_placed_where_the_parser_stopped() {
    let error = parse_script("SELECT 1;\nSELECT 2;\n  SELEC 3;").unwrap_err();
    assert_eq!((error.line, error.column), (3, 3), "{error}");
    assert!(error.message.contains("syntax error"), "{error}");
    // Columns count characters, not bytes.
    let error = parse_script("SELECT 'ünïcödé' FRM t;").unwrap_err();
    assert_eq!((error.line, error.column), (1, 22), "{error}");
}

#[test]
fn the_token_checksum_ignores_layout_and_comments_only() {
    let base = token_checksum("CREATE TABLE t (a int);").unwrap();
    assert_eq!(
        token_checksum("-- a new comment\nCREATE TABLE t (\n    a int /* why */\n);\n").unwrap(),
        base
    );
    assert_ne!(token_checksum("CREATE TABLE t (a bigint);").unwrap(), base);
    assert_ne!(
        token_checksum("CREATE TABLE t (a int); SELECT 1;").unwrap(),
        base
    );
    assert!(
        token_checksum("").is_ok(),
        "an empty file has a checksum too"
    );
    assert!(token_checksum("-- only a comment\n").is_ok());
    assert_ne!(
        token_checksum("SELECT 'a  b'").unwrap(),
        token_checksum("SELECT 'a b'").unwrap(),
        "white space inside a string is content"
    );
}
