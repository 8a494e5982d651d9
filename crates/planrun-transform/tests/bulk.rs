//! `DeferredConstraints` on a real PostgreSQL: what it takes off an empty table comes
//! back exactly, whatever the table is called; it never locks another table (a
//! foreign key to one, or a key another table's foreign key rests on, stays); a name
//! that is not a table is an error, never SQL.

use planrun_tempdb::TempCluster;
use planrun_transform::DeferredConstraints;

/// Constraint and index definitions of `table` (a `regclass` literal).
fn shape<C: postgres::GenericClient>(client: &mut C, table: &str) -> String {
    client
        .query_one(
            "SELECT concat_ws(E'\\n',
                 (SELECT string_agg(conname || ': ' || pg_get_constraintdef(oid), E'\\n' ORDER BY conname)
                  FROM pg_constraint WHERE conrelid = $1::text::regclass),
                 (SELECT string_agg(pg_get_indexdef(indexrelid), E'\\n' ORDER BY 1)
                  FROM pg_index WHERE indrelid = $1::text::regclass))",
            &[&table],
        )
        .unwrap()
        .get(0)
}

#[test]
fn an_odd_table_name_gets_its_keys_and_indexes_back_exactly() {
    let cluster = TempCluster::start().unwrap();
    let url = cluster.create_database("bulk").unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            r#"CREATE SCHEMA "Odd schema";
               CREATE TABLE parent (id bigint PRIMARY KEY);
               CREATE TABLE "Odd schema"."Odd ""Name"" table" (
                   id bigint PRIMARY KEY,
                   parent_id bigint REFERENCES parent (id) ON DELETE CASCADE,
                   slot int,
                   note text,
                   UNIQUE (parent_id, slot)
               );
               CREATE UNIQUE INDEX one_note ON "Odd schema"."Odd ""Name"" table" (parent_id)
                   WHERE note IS NOT NULL;"#,
        )
        .unwrap();
    let table = r#""Odd schema"."Odd ""Name"" table""#;
    let before = shape(&mut client, table);
    assert!(
        before.contains("ON DELETE CASCADE") && before.contains("WHERE (note IS NOT NULL)"),
        "{before}"
    );

    let mut transaction = client.transaction().unwrap();
    let taken = DeferredConstraints::take(&mut transaction, table)
        .unwrap()
        .expect("the empty table's keys are taken off");
    assert_eq!(taken.len(), 3, "primary key, unique, index");
    assert_eq!(
        shape(&mut transaction, table),
        "Odd \"Name\" table_parent_id_fkey: FOREIGN KEY (parent_id) REFERENCES parent(id) ON DELETE CASCADE",
        "only the foreign key to parent is left during the load"
    );
    assert_eq!(taken.kept().len(), 1, "{:?}", taken.kept());
    assert!(
        taken.kept()[0].contains("foreign key to parent"),
        "{:?}",
        taken.kept()
    );
    let parent_locks: Vec<String> = transaction
        .query(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'parent'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        !parent_locks
            .iter()
            .any(|mode| mode == "AccessExclusiveLock"),
        "the referenced table's readers are never stopped: {parent_locks:?}"
    );
    transaction
        .batch_execute(
            r#"INSERT INTO parent VALUES (1);
               INSERT INTO "Odd schema"."Odd ""Name"" table" VALUES (1, 1, 0, 'a'), (2, 1, 1, NULL);"#,
        )
        .unwrap();
    taken.restore(&mut transaction).unwrap();
    transaction.commit().unwrap();
    assert_eq!(shape(&mut client, table), before);

    let mut transaction = client.transaction().unwrap();
    let error = DeferredConstraints::take(&mut transaction, "parent; DROP TABLE parent")
        .expect_err("not a table name");
    assert!(error.as_db_error().is_some(), "{error}");
    drop(transaction);
    let parents: i64 = client
        .query_one("SELECT count(*) FROM parent", &[])
        .unwrap()
        .get(0);
    assert_eq!(parents, 1);
}

#[test]
fn a_key_another_table_references_stays_and_a_self_reference_comes_back() {
    let cluster = TempCluster::start().unwrap();
    let url = cluster.create_database("bulk").unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE sections (id bigint PRIMARY KEY, parent_id bigint REFERENCES sections (id),
                                    slot int UNIQUE);
             CREATE TABLE notes (id bigint PRIMARY KEY, section_id bigint REFERENCES sections (id));",
        )
        .unwrap();
    let before = shape(&mut client, "sections");
    let mut transaction = client.transaction().unwrap();
    let taken = DeferredConstraints::take(&mut transaction, "sections")
        .unwrap()
        .expect("the unique key and the self-reference can go");
    assert_eq!(taken.len(), 2, "unique and the foreign key to itself");
    let during = shape(&mut transaction, "sections");
    assert!(during.contains("sections_pkey"), "{during}");
    assert!(!during.contains("slot"), "{during}");
    assert_eq!(
        taken.kept(),
        ["sections_pkey (another table's foreign key rests on it)"]
    );
    transaction
        .batch_execute("INSERT INTO sections VALUES (1, NULL, 1), (2, 1, 2)")
        .unwrap();
    taken.restore(&mut transaction).unwrap();
    transaction.commit().unwrap();
    assert_eq!(shape(&mut client, "sections"), before);
}
