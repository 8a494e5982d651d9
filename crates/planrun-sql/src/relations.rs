//! Which relations a query reads and which relations a script changes, from
//! PostgreSQL's parse trees: what `planrun verify` needs to tell a check that no longer
//! applies, because a later stage changed on purpose what it reads, from a check that
//! fails.
//!
//! Reads are found anywhere in the tree (subqueries, `JOIN`s, `EXISTS`, CTE bodies),
//! by walking the parse tree as the `pg_query` crate serialises it, so no expression
//! kind is missed. Changes are found per statement kind, the static SQL of PL/pgSQL
//! `DO` blocks included; a statement whose effect cannot be seen in its text (a
//! function call, `CALL`, `EXECUTE` of a built string) changes nothing as far as this
//! module can tell, and the caller must treat that as "unknown", not as "safe to
//! skip".

use pg_query::protobuf::{ObjectType, RangeVar};
use pg_query::NodeEnum;
use serde::Serialize;
use serde_json::Value;

use crate::do_block::do_block_statements;
use crate::error::SqlError;
use crate::lock_analysis::{object_names, qualified, range_vars};
use crate::script::parse_script;
use crate::tokens::string_literals;

/// The relations a query reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryReads {
    /// Relations whose rows it reads (`FROM`, `JOIN`, subqueries), as written
    /// (`chapters`, `planrun.memoir_quarantine`), in order of first appearance; the
    /// names of its own CTEs are left out.
    pub rows: Vec<String>,
    /// String constants that could name a relation (`'public.chapters'::regclass`,
    /// `table_name = 'chapters'`): a query that reads the catalog names the relations
    /// whose definition it reads this way. Every such constant is listed; which of them
    /// are relations only the caller, knowing the relations of the plan, can tell.
    pub named: Vec<String>,
}

/// How a statement changes a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Rows written: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `COPY FROM`, `TRUNCATE`,
    /// `REFRESH MATERIALIZED VIEW`.
    Rows,
    /// The definition: created, altered, dropped, renamed, indexed, given a trigger,
    /// rule or policy. What reads its rows may change too (a dropped column).
    Definition,
}

/// One relation a script changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RelationChange {
    /// As written: `orders` or `shop.orders`.
    pub relation: String,
    pub change: Change,
}

/// The relations `sql` (one query, or several statements) reads; an error when it
/// does not parse.
pub fn relations_read(sql: &str) -> Result<QueryReads, SqlError> {
    let statements = parse_script(sql)?;
    let mut reads = QueryReads::default();
    for statement in statements {
        let parsed = pg_query::parse(statement.text, 0)
            .map_err(|error| SqlError::at(sql, statement.offset, error.to_string()))?;
        let tree = serde_json::to_value(&parsed.protobuf).map_err(|error| {
            SqlError::at(
                sql,
                statement.offset,
                format!("cannot walk the parse tree: {error}"),
            )
        })?;
        let mut ctes = Vec::new();
        walk(&tree, &mut |key, value| {
            if key == "CommonTableExpr" {
                if let Some(name) = value.get("ctename").and_then(Value::as_str) {
                    ctes.push(name.to_owned());
                }
            }
        });
        let mut found = Vec::new();
        walk(&tree, &mut |key, value| {
            if key != "RangeVar" {
                return;
            }
            let Some(relation) = relation_of(value) else {
                return;
            };
            if relation.contains('.') || !ctes.contains(&relation) {
                let location = value.get("location").and_then(Value::as_i64).unwrap_or(0);
                found.push((location, relation));
            }
        });
        found.sort();
        for (_, relation) in found {
            if !reads.rows.contains(&relation) {
                reads.rows.push(relation);
            }
        }
    }
    for literal in string_literals(sql) {
        if could_name_a_relation(&literal) && !reads.named.contains(&literal) {
            reads.named.push(literal);
        }
    }
    Ok(reads)
}

/// The relations each statement of `script` changes, and how, in order of first
/// appearance (one entry per relation and kind); an error when it does not parse.
/// The static SQL of a PL/pgSQL `DO` block counts as if written in the script;
/// statements whose effect is not in their text (`CALL`, `SELECT f()`, `EXECUTE`)
/// add nothing.
pub fn relations_changed(script: &str) -> Result<Vec<RelationChange>, SqlError> {
    let mut changes = Changes::default();
    for statement in parse_script(script)? {
        let parsed = pg_query::parse(statement.text, 0)
            .map_err(|error| SqlError::at(script, statement.offset, error.to_string()))?;
        changes.parsed(&parsed.protobuf, true);
    }
    Ok(changes.0)
}

#[derive(Default)]
struct Changes(Vec<RelationChange>);

impl Changes {
    /// The changes of parsed statements; those of the static SQL of their `DO` blocks
    /// too when `into_do_blocks` (not for a `DO` inside a `DO`).
    fn parsed(&mut self, parsed: &pg_query::protobuf::ParseResult, into_do_blocks: bool) {
        for raw in &parsed.stmts {
            match raw.stmt.as_ref().and_then(|node| node.node.as_ref()) {
                Some(NodeEnum::DoStmt(block)) if into_do_blocks => {
                    for text in do_block_statements(block) {
                        if let Ok(inner) = pg_query::parse(&text, 0) {
                            self.parsed(&inner.protobuf, false);
                        }
                    }
                }
                Some(node) => self.statement(node),
                None => {}
            }
        }
        // Writes anywhere, those of data-modifying CTEs included.
        if let Ok(tree) = serde_json::to_value(parsed) {
            walk(&tree, &mut |key, value| {
                if matches!(
                    key,
                    "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
                ) {
                    if let Some(relation) = value.get("relation").and_then(relation_of) {
                        self.add(relation, Change::Rows);
                    }
                }
            });
        }
    }

    fn add(&mut self, relation: String, change: Change) {
        let entry = RelationChange { relation, change };
        if !self.0.contains(&entry) {
            self.0.push(entry);
        }
    }

    fn definition(&mut self, relation: Option<&RangeVar>) {
        if let Some(relation) = relation {
            self.add(qualified(relation), Change::Definition);
        }
    }

    fn statement(&mut self, node: &NodeEnum) {
        match node {
            NodeEnum::CreateStmt(stmt) => self.definition(stmt.relation.as_ref()),
            NodeEnum::CreateTableAsStmt(stmt) => {
                self.definition(stmt.into.as_ref().and_then(|into| into.rel.as_ref()))
            }
            NodeEnum::SelectStmt(stmt) => {
                self.definition(stmt.into_clause.as_ref().and_then(|into| into.rel.as_ref()))
            }
            NodeEnum::ViewStmt(stmt) => self.definition(stmt.view.as_ref()),
            NodeEnum::AlterTableStmt(stmt) => self.definition(stmt.relation.as_ref()),
            NodeEnum::AlterObjectSchemaStmt(stmt) => self.definition(stmt.relation.as_ref()),
            NodeEnum::CreateTrigStmt(stmt) => self.definition(stmt.relation.as_ref()),
            NodeEnum::RuleStmt(stmt) => self.definition(stmt.relation.as_ref()),
            NodeEnum::CreatePolicyStmt(stmt) => self.definition(stmt.table.as_ref()),
            NodeEnum::AlterPolicyStmt(stmt) => self.definition(stmt.table.as_ref()),
            NodeEnum::IndexStmt(stmt) => {
                self.definition(stmt.relation.as_ref());
                if let Some(table) = &stmt.relation {
                    if !stmt.idxname.is_empty() {
                        let index = if table.schemaname.is_empty() {
                            stmt.idxname.clone()
                        } else {
                            format!("{}.{}", table.schemaname, stmt.idxname)
                        };
                        self.add(index, Change::Definition);
                    }
                }
            }
            NodeEnum::RenameStmt(stmt) => {
                let Some(relation) = &stmt.relation else {
                    return;
                };
                self.add(qualified(relation), Change::Definition);
                if matches!(
                    stmt.rename_type(),
                    ObjectType::ObjectTable
                        | ObjectType::ObjectView
                        | ObjectType::ObjectMatview
                        | ObjectType::ObjectIndex
                        | ObjectType::ObjectSequence
                        | ObjectType::ObjectForeignTable
                ) {
                    let renamed = if relation.schemaname.is_empty() {
                        stmt.newname.clone()
                    } else {
                        format!("{}.{}", relation.schemaname, stmt.newname)
                    };
                    self.add(renamed, Change::Definition);
                }
            }
            NodeEnum::DropStmt(stmt) => {
                let names = object_names(&stmt.objects);
                match stmt.remove_type() {
                    ObjectType::ObjectTable
                    | ObjectType::ObjectView
                    | ObjectType::ObjectMatview
                    | ObjectType::ObjectIndex
                    | ObjectType::ObjectSequence
                    | ObjectType::ObjectForeignTable => {
                        for name in names {
                            self.add(name, Change::Definition);
                        }
                    }
                    // `DROP TRIGGER t ON table`: the table is all but the last part.
                    ObjectType::ObjectTrigger
                    | ObjectType::ObjectRule
                    | ObjectType::ObjectPolicy => {
                        for name in names {
                            if let Some((table, _)) = name.rsplit_once('.') {
                                self.add(table.to_owned(), Change::Definition);
                            }
                        }
                    }
                    _ => {}
                }
            }
            NodeEnum::TruncateStmt(stmt) => {
                for relation in range_vars(&stmt.relations) {
                    self.add(relation, Change::Rows);
                }
            }
            NodeEnum::CopyStmt(stmt) if stmt.is_from => {
                if let Some(relation) = &stmt.relation {
                    self.add(qualified(relation), Change::Rows);
                }
            }
            NodeEnum::RefreshMatViewStmt(stmt) => {
                if let Some(view) = &stmt.relation {
                    self.add(qualified(view), Change::Rows);
                }
            }
            _ => {}
        }
    }
}

/// Calls `visit` with the tag and body of every node of a serialised parse tree
/// (`{"RangeVar": {...}}` visits `("RangeVar", {...})`), depth first.
fn walk(value: &Value, visit: &mut impl FnMut(&str, &Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if child.is_object() {
                    visit(key, child);
                }
                walk(child, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, visit);
            }
        }
        _ => {}
    }
}

/// `schema.name` or `name` of a serialised `RangeVar`.
fn relation_of(value: &Value) -> Option<String> {
    let name = value.get("relname")?.as_str()?;
    if name.is_empty() {
        return None;
    }
    match value.get("schemaname").and_then(Value::as_str) {
        Some(schema) if !schema.is_empty() => Some(format!("{schema}.{name}")),
        _ => Some(name.to_owned()),
    }
}

/// `name` or `schema.name`, each part an identifier, plain or double-quoted.
fn could_name_a_relation(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let quoted = part.len() > 2 && part.starts_with('"') && part.ends_with('"');
            let mut chars = part.chars();
            quoted
                || chars
                    .next()
                    .is_some_and(|first| first.is_alphabetic() || first == '_')
                    && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(sql: &str) -> Vec<String> {
        relations_read(sql).unwrap().rows
    }

    fn changed(sql: &str) -> Vec<(String, Change)> {
        relations_changed(sql)
            .unwrap()
            .into_iter()
            .map(|change| (change.relation, change.change))
            .collect()
    }

    #[test]
    fn a_query_reads_every_relation_of_its_from_clauses_subqueries_and_joins() {
        assert_eq!(rows("SELECT count(*) FROM chapters"), ["chapters"]);
        assert_eq!(
            rows(
                "SELECT (SELECT count(*) FROM chapter_sections WHERE image IS NOT NULL)
                      + (SELECT coalesce(sum(n), 0) FROM planrun.memoir_quarantine)"
            ),
            ["chapter_sections", "planrun.memoir_quarantine"]
        );
        assert_eq!(
            rows(
                "SELECT m.id FROM memoir_images m
                 LEFT JOIN chapter_sections s ON s.id = m.section_id
                 LEFT JOIN public.chapters c ON c.id = m.chapter_id
                 WHERE EXISTS (SELECT 1 FROM archive.notes n WHERE n.id = m.id)
                    OR m.id IN (SELECT id FROM extra)
                    OR m.id = ANY (ARRAY[(SELECT max(id) FROM deep)])
                 LIMIT 10"
            ),
            [
                "memoir_images",
                "chapter_sections",
                "public.chapters",
                "archive.notes",
                "extra",
                "deep"
            ]
        );
        assert_eq!(
            rows("SELECT a FROM one UNION ALL SELECT b FROM two ORDER BY 1"),
            ["one", "two"]
        );
    }

    #[test]
    fn a_querys_own_ctes_are_not_relations() {
        assert_eq!(
            rows(
                "WITH recent AS (SELECT * FROM orders WHERE placed_on > now() - interval '1 day')
                 SELECT count(*) FROM recent JOIN customers ON customers.id = recent.customer_id"
            ),
            ["orders", "customers"]
        );
    }

    #[test]
    fn a_catalog_query_names_the_relations_it_reads_the_definition_of() {
        let reads = relations_read(
            "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY column_name)
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'chapter_sections'
               AND data_type <> 'timestamp with time zone'",
        )
        .unwrap();
        assert_eq!(reads.rows, ["information_schema.columns"]);
        assert_eq!(reads.named, ["public", "chapter_sections"]);
        let reads = relations_read(
            "SELECT count(*) FROM pg_constraint
             WHERE conrelid = 'public.chapter_sections'::regclass AND contype = 'f'",
        )
        .unwrap();
        assert_eq!(reads.rows, ["pg_constraint"]);
        assert_eq!(reads.named, ["public.chapter_sections", "f"]);
        assert_eq!(
            relations_read("SELECT to_regclass('\"Odd Name\".t') IS NULL")
                .unwrap()
                .named,
            ["\"Odd Name\".t"]
        );
    }

    #[test]
    fn sql_that_does_not_parse_cannot_be_analysed() {
        assert!(relations_read("SELECT count(* FROM chapters").is_err());
        assert!(relations_changed("ALTER TABLE").is_err());
    }

    #[test]
    fn writes_are_row_changes_wherever_they_are() {
        assert_eq!(
            changed(
                "INSERT INTO orders (customer_id) SELECT id FROM customers;
                 UPDATE orders SET total = 1 FROM customers c WHERE c.id = orders.customer_id;
                 DELETE FROM shop.carts;
                 TRUNCATE audit, public.log;
                 COPY imports FROM STDIN;
                 COPY exports TO STDOUT;
                 MERGE INTO totals t USING orders o ON t.id = o.id WHEN MATCHED THEN DELETE;
                 REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals"
            ),
            [
                ("orders".into(), Change::Rows),
                ("shop.carts".into(), Change::Rows),
                ("audit".into(), Change::Rows),
                ("public.log".into(), Change::Rows),
                ("imports".into(), Change::Rows),
                ("totals".into(), Change::Rows),
                ("order_totals".into(), Change::Rows),
            ]
        );
        assert_eq!(
            changed(
                "WITH moved AS (DELETE FROM orders WHERE placed_on < '2020-01-01' RETURNING *)
                 INSERT INTO orders_archive SELECT * FROM moved"
            ),
            [
                ("orders_archive".into(), Change::Rows),
                ("orders".into(), Change::Rows)
            ]
        );
    }

    #[test]
    fn ddl_changes_the_definition_of_what_it_names_and_not_what_it_references() {
        assert_eq!(
            changed(
                "ALTER TABLE chapter_sections
                     ADD COLUMN image_id bigint REFERENCES memoir_images(id) ON DELETE SET NULL;
                 ALTER TABLE chapter_sections DROP COLUMN image;
                 CREATE TABLE memoir_images (id bigserial PRIMARY KEY,
                     chapter_id bigint NOT NULL REFERENCES chapters(id));
                 CREATE UNIQUE INDEX memoir_images_one_cover ON public.memoir_images (chapter_id);
                 DROP TABLE old_notes, shop.older_notes;
                 DROP INDEX stale_idx;
                 DROP TRIGGER audit ON shop.orders;
                 ALTER TABLE orders RENAME TO purchases;
                 CREATE VIEW v AS SELECT 1;
                 CREATE TABLE orders_copy AS SELECT * FROM orders;
                 CREATE TRIGGER t BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION f();
                 CREATE POLICY own ON documents USING (true)"
            ),
            [
                ("chapter_sections".into(), Change::Definition),
                ("memoir_images".into(), Change::Definition),
                ("public.memoir_images".into(), Change::Definition),
                ("public.memoir_images_one_cover".into(), Change::Definition),
                ("old_notes".into(), Change::Definition),
                ("shop.older_notes".into(), Change::Definition),
                ("stale_idx".into(), Change::Definition),
                ("shop.orders".into(), Change::Definition),
                ("orders".into(), Change::Definition),
                ("purchases".into(), Change::Definition),
                ("v".into(), Change::Definition),
                ("orders_copy".into(), Change::Definition),
                ("events".into(), Change::Definition),
                ("documents".into(), Change::Definition),
            ]
        );
    }

    #[test]
    fn the_static_sql_of_a_do_block_counts_and_what_is_out_of_sight_is_not_guessed() {
        assert_eq!(
            changed(
                "DO $$
                 BEGIN
                     IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fk') THEN
                         ALTER TABLE public.chapter_sections ADD CONSTRAINT fk
                             FOREIGN KEY (chapter_id) REFERENCES public.chapters (id);
                     END IF;
                     DELETE FROM stale;
                 END
                 $$"
            ),
            [
                ("public.chapter_sections".into(), Change::Definition),
                ("stale".into(), Change::Rows),
            ]
        );
        assert_eq!(
            changed(
                "DO $$ BEGIN EXECUTE 'DELETE FROM orders'; END $$;
                 DO LANGUAGE plperl $$ spi_exec_query('DELETE FROM orders') $$;
                 SELECT archive_everything();
                 CALL tidy_up();
                 LOCK TABLE orders IN SHARE MODE;
                 VACUUM orders;
                 SELECT * FROM orders"
            ),
            []
        );
    }
}
