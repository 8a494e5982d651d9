//! Every rule with the SQL that breaks it, the SQL that does the same work safely, the
//! lock levels of PostgreSQL's documentation, and new tables that raise no finding.

use crate::{analyze_script, AnalysisContext, LockMode, Rule};

/// The rule ids `sql` breaks, on existing tables, with `lock_timeout` set, in a
/// transaction.
fn rules(sql: &str) -> Vec<&'static str> {
    let mut context = AnalysisContext::new();
    context.begin_stage(true, true);
    rules_in(sql, &mut context)
}

fn rules_in(sql: &str, context: &mut AnalysisContext) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = analyze_script(sql, context)
        .unwrap()
        .iter()
        .flat_map(|statement| statement.impact.findings.iter().map(|f| f.rule.id()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `(relation, mode)` of the statement's locks.
fn locks(sql: &str) -> Vec<(String, LockMode)> {
    let mut context = AnalysisContext::new();
    context.begin_stage(true, true);
    analyze_script(sql, &mut context).unwrap()[0]
        .impact
        .locks
        .iter()
        .map(|lock| (lock.relation.clone(), lock.mode))
        .collect()
}

#[test]
fn each_rule_fires_on_its_sql() {
    let cases: &[(&str, &str)] = &[
        ("require-concurrent-index-creation", "CREATE INDEX orders_at ON orders (created_at)"),
        ("require-concurrent-index-deletion", "DROP INDEX orders_at"),
        ("require-concurrent-reindex", "REINDEX TABLE orders"),
        ("require-concurrent-refresh", "REFRESH MATERIALIZED VIEW order_totals"),
        ("adding-foreign-key-constraint", "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)"),
        ("adding-foreign-key-constraint", "ALTER TABLE orders ADD COLUMN coupon_id bigint REFERENCES coupons (id)"),
        ("constraint-missing-not-valid", "ALTER TABLE orders ADD CONSTRAINT positive CHECK (total >= 0)"),
        ("changing-column-type", "ALTER TABLE orders ALTER COLUMN total TYPE bigint"),
        ("changing-column-type", "ALTER TABLE orders ALTER COLUMN note TYPE varchar(20) USING left(note, 20)"),
        ("adding-not-nullable-field", "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL"),
        ("adding-required-field", "ALTER TABLE orders ADD COLUMN region text NOT NULL"),
        ("adding-field-with-volatile-default", "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()"),
        ("adding-field-with-volatile-default", "ALTER TABLE orders ADD COLUMN seq bigserial"),
        ("adding-field-with-volatile-default", "ALTER TABLE orders ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY"),
        ("adding-stored-generated-field", "ALTER TABLE orders ADD COLUMN doubled numeric GENERATED ALWAYS AS (total * 2) STORED"),
        ("disallowed-unique-constraint", "ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE (ref)"),
        ("adding-primary-key-constraint", "ALTER TABLE events ADD PRIMARY KEY (id)"),
        ("table-rewrite", "VACUUM FULL orders"),
        ("table-rewrite", "CLUSTER orders USING orders_pkey"),
        ("table-rewrite", "ALTER TABLE orders SET LOGGED"),
        ("table-rewrite", "ALTER TABLE orders SET TABLESPACE archive"),
        ("ban-drop-column", "ALTER TABLE orders DROP COLUMN note"),
        ("ban-drop-table", "DROP TABLE orders"),
        ("ban-drop-database", "DROP DATABASE shop"),
        ("renaming-column", "ALTER TABLE orders RENAME COLUMN note TO remark"),
        ("renaming-table", "ALTER TABLE orders RENAME TO purchases"),
        ("ban-truncate-cascade", "TRUNCATE orders CASCADE"),
        ("prefer-bigint-primary-key", "CREATE TABLE tags (id serial PRIMARY KEY, name text)"),
        ("prefer-bigint-primary-key", "CREATE TABLE tags (id int, name text, PRIMARY KEY (id))"),
        ("ban-char-field", "CREATE TABLE codes (code char(3))"),
        ("prefer-timestamptz", "ALTER TABLE orders ADD COLUMN shipped_at timestamp"),
    ];
    for (rule, sql) in cases {
        assert!(Rule::from_id(rule).is_some(), "{rule} is not a rule id");
        assert!(
            rules(sql).contains(rule),
            "{sql}: expected {rule}, got {:?}",
            rules(sql)
        );
    }
    let covered: Vec<&str> = cases.iter().map(|(rule, _)| *rule).collect();
    for rule in Rule::ALL {
        let elsewhere = matches!(
            rule,
            Rule::ValidateInSameTransaction | Rule::RequireLockTimeout
        );
        assert!(
            elsewhere || covered.contains(&rule.id()),
            "{rule} has no case"
        );
    }
}

#[test]
fn the_safe_way_raises_nothing() {
    let safe = [
        "CREATE INDEX CONCURRENTLY orders_at ON orders (created_at)",
        "DROP INDEX CONCURRENTLY orders_at",
        "REINDEX TABLE CONCURRENTLY orders",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals",
        "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID",
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk",
        "ALTER TABLE orders ADD CONSTRAINT positive CHECK (total >= 0) NOT VALID",
        "ALTER TABLE orders ADD COLUMN region text",
        "ALTER TABLE orders ADD COLUMN region text NOT NULL DEFAULT 'eu'",
        "ALTER TABLE orders ADD COLUMN seen_at timestamptz DEFAULT now()",
        "ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE USING INDEX orders_ref_idx",
        "ALTER TABLE orders ALTER COLUMN note SET DEFAULT ''",
        "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL",
        "CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, at timestamptz)",
        "VACUUM orders",
        "ANALYZE orders",
        "UPDATE orders SET note = '' WHERE id < 1000",
        "TRUNCATE orders",
        "CREATE TRIGGER audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit()",
    ];
    for sql in safe {
        assert_eq!(rules(sql), Vec::<&str>::new(), "{sql}");
    }
}

/// Offline the old type is unknown: a change that is free from some types and a
/// rewrite from others is flagged for review; with the target's type known (`planrun
/// plan`) it is decided.
#[test]
fn a_type_change_is_decided_by_the_old_type_and_flagged_when_it_is_unknown() {
    for sql in [
        "ALTER TABLE orders ALTER COLUMN note TYPE text",
        "ALTER TABLE orders ALTER COLUMN note TYPE varchar(500)",
    ] {
        assert_eq!(rules(sql), ["changing-column-type"], "{sql}");
        let detail = analyze_script(sql, &mut AnalysisContext::new()).unwrap()[0]
            .impact
            .findings[0]
            .detail
            .clone();
        assert!(detail.contains("old type"), "{detail}");
    }
    let decided = |old: &str, sql: &str| {
        let mut context = AnalysisContext::new();
        context.begin_stage(true, true);
        context.set_column_type("orders", "note", old);
        let statement = analyze_script(sql, &mut context).unwrap().remove(0);
        (
            statement.impact.rewrites.clone(),
            statement
                .impact
                .findings
                .iter()
                .map(|f| f.detail.clone())
                .collect::<Vec<_>>(),
        )
    };
    for (old, new) in [
        ("character varying(20)", "varchar(40)"),
        ("character varying(20)", "text"),
        ("character varying(20)", "varchar"),
        ("text", "varchar"),
        ("numeric(10,2)", "numeric(12,2)"),
        ("numeric(10,2)", "numeric"),
        ("text", "text"),
    ] {
        let sql = format!("ALTER TABLE orders ALTER COLUMN note TYPE {new}");
        assert_eq!(decided(old, &sql), (vec![], vec![]), "{old} -> {new}");
    }
    for (old, new) in [
        ("text", "varchar(20)"),
        ("character varying(255)", "varchar(20)"),
        ("numeric(10,2)", "numeric(10,3)"),
        ("integer", "bigint"),
    ] {
        let sql = format!("ALTER TABLE orders ALTER COLUMN note TYPE {new}");
        let (rewrites, details) = decided(old, &sql);
        assert_eq!(rewrites, ["orders"], "{old} -> {new}");
        assert!(details[0].contains(&format!("from {old}")), "{details:?}");
    }
}

#[test]
fn set_not_null_after_a_validated_check_is_safe() {
    let mut context = AnalysisContext::new();
    context.begin_stage(true, true);
    let add = "ALTER TABLE orders ADD CONSTRAINT customer_present CHECK (customer_id IS NOT NULL) NOT VALID";
    assert!(rules_in(add, &mut context).is_empty());
    context.end_stage();
    context.begin_stage(true, true);
    let validate = "ALTER TABLE orders VALIDATE CONSTRAINT customer_present";
    assert!(rules_in(validate, &mut context).is_empty());
    context.end_stage();
    context.begin_stage(true, true);
    let set = "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL";
    assert!(rules_in(set, &mut context).is_empty());
    assert_eq!(rules(set), ["adding-not-nullable-field"]);
}

#[test]
fn validating_in_the_adding_transaction_is_flagged() {
    let sql = "ALTER TABLE orders ADD CONSTRAINT positive CHECK (total >= 0) NOT VALID;
               ALTER TABLE orders VALIDATE CONSTRAINT positive;";
    assert_eq!(rules(sql), ["validate-constraint-in-same-transaction"]);
}

#[test]
fn a_new_table_is_no_warning() {
    let sql = "CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint, note text);
        CREATE INDEX shipments_order ON shipments (order_id);
        ALTER TABLE shipments ADD CONSTRAINT shipments_order_fk FOREIGN KEY (order_id) REFERENCES orders (id);
        ALTER TABLE shipments ADD CONSTRAINT has_note CHECK (note <> '');
        ALTER TABLE shipments ALTER COLUMN note SET NOT NULL;
        ALTER TABLE shipments ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();
        ALTER TABLE shipments ALTER COLUMN order_id TYPE numeric(20);
        ALTER TABLE shipments RENAME COLUMN note TO remark;
        DROP INDEX shipments_order;
        ALTER TABLE shipments DROP COLUMN remark;";
    assert_eq!(rules(sql), Vec::<&str>::new());
}

#[test]
fn a_table_an_earlier_stage_created_stays_new_until_something_fills_it() {
    let mut context = AnalysisContext::new();
    context.begin_stage(true, true);
    rules_in(
        "CREATE TABLE shipments (id bigint, order_id bigint)",
        &mut context,
    );
    context.end_stage();
    context.begin_stage(true, true);
    let index = "CREATE INDEX shipments_order ON shipments (order_id)";
    assert!(rules_in(index, &mut context).is_empty());
    context.end_stage();
    context.begin_stage(true, true);
    rules_in(
        "INSERT INTO shipments SELECT id, id FROM orders",
        &mut context,
    );
    context.end_stage();
    context.begin_stage(true, true);
    assert_eq!(
        rules_in(index, &mut context),
        ["require-concurrent-index-creation"]
    );
}

#[test]
fn type_rules_hold_on_new_tables_too() {
    let sql = "CREATE TABLE legacy (id int PRIMARY KEY, code char(2), at timestamp)";
    assert_eq!(
        rules(sql),
        [
            "ban-char-field",
            "prefer-bigint-primary-key",
            "prefer-timestamptz"
        ]
    );
}

#[test]
fn a_missing_lock_timeout_is_reported_once_per_stage() {
    let mut context = AnalysisContext::new();
    context.begin_stage(true, false);
    let sql =
        "ALTER TABLE orders ADD COLUMN region text; ALTER TABLE customers ADD COLUMN tier text;";
    let analyzed = analyze_script(sql, &mut context).unwrap();
    let findings: Vec<_> = analyzed.iter().flat_map(|s| &s.impact.findings).collect();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].rule, Rule::RequireLockTimeout);

    let mut context = AnalysisContext::new();
    context.begin_stage(true, false);
    let sql = "SET LOCAL lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN region text;";
    assert!(rules_in(sql, &mut context).is_empty());
}

#[test]
fn lock_levels_are_postgresqls() {
    use LockMode::*;
    let cases: &[(&str, &[(&str, LockMode)])] = &[
        ("CREATE INDEX i ON orders (a)", &[("orders", Share)]),
        ("CREATE INDEX CONCURRENTLY i ON orders (a)", &[("orders", ShareUpdateExclusive)]),
        ("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id) NOT VALID",
            &[("orders", ShareRowExclusive), ("customers", ShareRowExclusive)]),
        ("ALTER TABLE orders VALIDATE CONSTRAINT fk", &[("orders", ShareUpdateExclusive)]),
        ("ALTER TABLE orders SET (fillfactor = 70), ALTER COLUMN a SET STATISTICS 500",
            &[("orders", ShareUpdateExclusive)]),
        ("ALTER TABLE orders ALTER COLUMN a SET STATISTICS 500, DROP COLUMN b", &[("orders", AccessExclusive)]),
        ("CREATE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION f()",
            &[("orders", ShareRowExclusive)]),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY totals", &[("totals", Exclusive)]),
        ("LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE", &[("orders", ShareRowExclusive)]),
        ("UPDATE shop.orders SET a = 1", &[("shop.orders", RowExclusive)]),
        ("VACUUM (FULL) orders", &[("orders", AccessExclusive)]),
        ("TRUNCATE orders, lines", &[("orders", AccessExclusive), ("lines", AccessExclusive)]),
    ];
    for (sql, expected) in cases {
        let expected: Vec<(String, LockMode)> =
            expected.iter().map(|(r, m)| (r.to_string(), *m)).collect();
        assert_eq!(locks(sql), expected, "{sql}");
    }
}

#[test]
fn rewrites_scans_and_transaction_needs_are_reported() {
    let mut context = AnalysisContext::new();
    let analyzed = analyze_script(
        "ALTER TABLE orders ALTER COLUMN total TYPE bigint;
         ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id);
         CREATE INDEX CONCURRENTLY i ON orders (a);",
        &mut context,
    )
    .unwrap();
    assert_eq!(analyzed[0].impact.rewrites, ["orders"]);
    assert_eq!(analyzed[1].impact.scans, ["orders"]);
    assert_eq!(analyzed[1].line, 2);
    assert_eq!(
        analyzed[2].impact.outside_transaction.as_deref(),
        Some("CREATE INDEX CONCURRENTLY")
    );
}

#[test]
fn a_table_created_if_not_exists_may_be_an_old_one() {
    let sql = "CREATE TABLE IF NOT EXISTS shipments (id bigint PRIMARY KEY, order_id bigint);
        CREATE INDEX shipments_order ON shipments (order_id);";
    assert_eq!(rules(sql), ["require-concurrent-index-creation"]);
}

#[test]
fn the_statements_of_a_do_block_are_analysed_as_if_written_bare() {
    let wrapped = "DO $$
        DECLARE r record;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'orders_at') THEN
                CREATE INDEX orders_at ON orders (created_at);
            END IF;
            FOR r IN SELECT id FROM customers LOOP
                ALTER TABLE orders ADD CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id);
            END LOOP;
        END $$";
    assert_eq!(
        rules(wrapped),
        vec![
            "adding-foreign-key-constraint",
            "require-concurrent-index-creation"
        ]
    );
    let locked = locks(wrapped);
    assert!(
        locked.contains(&("orders".to_owned(), LockMode::ShareRowExclusive)),
        "{locked:?}"
    );
    // Dynamic SQL is not in the text, and another language is not parsed.
    assert!(rules("DO $$ BEGIN EXECUTE 'CREATE INDEX i ON orders (x)'; END $$").is_empty());
    assert!(rules("DO LANGUAGE plperl $$ CREATE INDEX i ON orders (x) $$").is_empty());
    // A body holding the tag planrun wraps it with is still read.
    assert_eq!(
        rules("DO $x$ BEGIN CREATE INDEX i ON orders (x); PERFORM '$planrun_do$'; END $x$"),
        vec!["require-concurrent-index-creation"]
    );
}
