//! Bulk loading into a table that was empty when the stage began: its indexes and
//! constraints are dropped for the load and created again after it, in the same
//! transaction, because building an index once over all rows and validating a
//! foreign key with one join is far cheaper than maintaining both row by row.
//!
//! Only what can be dropped by locking the table itself is taken off. A foreign key
//! to another table stays: dropping it takes ACCESS EXCLUSIVE on the table it
//! references until commit, which would stop the application's readers of that table
//! for the whole load. A key or unique index that another table's foreign key rests on
//! stays too. Nothing here catches an error: a drop that fails, on a lock or anything
//! else, fails the transform, and the stage's transaction brings the definitions back.

use planrun_sql::quote_identifier;
use postgres::Transaction;

/// The indexes and constraints taken off a table for a load.
#[derive(Debug, Default)]
pub struct DeferredConstraints {
    table: String,
    /// `ALTER TABLE ... ADD CONSTRAINT ...` and `CREATE INDEX ...` statements, in the
    /// order to run them (primary key and unique first, then other indexes, then
    /// foreign keys to the table itself, which need its unique indexes).
    restore: Vec<String>,
    /// What stayed in place, and why, for the transform's notes.
    kept: Vec<String>,
}

/// The table's primary key, unique and foreign key constraints that only lock the
/// table itself to drop: `(name, definition, kind)`, keys first.
///
/// These queries resolve the table's name with the plan's search_path, as the
/// statements built from their answers do, so everything else in them names its
/// schema: a function or operator that another role put in `public` (an
/// `=(oid, regclass)`, a `name || text`) fits an unqualified expression better than
/// pg_catalog's own and would run with planrun's privileges.
const DROPPABLE_CONSTRAINTS: &str = "
SELECT c.conname, pg_catalog.pg_get_constraintdef(c.oid), c.contype::pg_catalog.text
FROM pg_catalog.pg_constraint c
WHERE c.conrelid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.regclass
  AND ((c.contype OPERATOR(pg_catalog.=) 'p' OR c.contype OPERATOR(pg_catalog.=) 'u')
       AND NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_constraint f
           WHERE f.contype OPERATOR(pg_catalog.=) 'f'
             AND f.conindid OPERATOR(pg_catalog.=) c.conindid
             AND f.conrelid OPERATOR(pg_catalog.<>) c.conrelid)
       OR c.contype OPERATOR(pg_catalog.=) 'f' AND c.confrelid OPERATOR(pg_catalog.=) c.conrelid)
ORDER BY c.contype OPERATOR(pg_catalog.<>) 'p', c.contype OPERATOR(pg_catalog.<>) 'u', c.conname";

/// What stays, and why.
const KEPT_CONSTRAINTS: &str = "
SELECT CASE WHEN c.contype OPERATOR(pg_catalog.=) 'f'
            THEN pg_catalog.format(
                     '%s (a foreign key to %s: dropping it would lock that table against reads)',
                     c.conname, c.confrelid::pg_catalog.regclass)
            ELSE pg_catalog.format('%s (another table''s foreign key rests on it)', c.conname)
       END
FROM pg_catalog.pg_constraint c
WHERE c.conrelid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.regclass
  AND ((c.contype OPERATOR(pg_catalog.=) 'p' OR c.contype OPERATOR(pg_catalog.=) 'u')
       AND EXISTS (
           SELECT 1 FROM pg_catalog.pg_constraint f
           WHERE f.contype OPERATOR(pg_catalog.=) 'f'
             AND f.conindid OPERATOR(pg_catalog.=) c.conindid
             AND f.conrelid OPERATOR(pg_catalog.<>) c.conrelid)
       OR c.contype OPERATOR(pg_catalog.=) 'f' AND c.confrelid OPERATOR(pg_catalog.<>) c.conrelid)
ORDER BY c.conname";

/// Indexes that belong to no constraint and that no other table's foreign key uses.
const DROPPABLE_INDEXES: &str = "
SELECT i.indexrelid::pg_catalog.regclass::pg_catalog.text, pg_catalog.pg_get_indexdef(i.indexrelid)
FROM pg_catalog.pg_index i
WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.regclass
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                  WHERE c.conindid OPERATOR(pg_catalog.=) i.indexrelid
                    AND c.conrelid OPERATOR(pg_catalog.=) i.indrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f
                  WHERE f.contype OPERATOR(pg_catalog.=) 'f'
                    AND f.conindid OPERATOR(pg_catalog.=) i.indexrelid
                    AND f.conrelid OPERATOR(pg_catalog.<>) i.indrelid)
ORDER BY i.indexrelid";

impl DeferredConstraints {
    /// Drops the indexes and constraints (except NOT NULL, defaults and CHECKs, which
    /// cost little, and what the module comment keeps) of `table` (as `regclass`
    /// reads it, e.g. `public.chapter_sections`) when it is empty. Returns `None` when
    /// the table is left as it is. The server resolves and quotes the name before any
    /// SQL is built from it, so a name that is not a table is an error, never SQL.
    /// Dropping takes ACCESS EXCLUSIVE on `table`: declare that lock.
    pub fn take(
        transaction: &mut Transaction<'_>,
        table: &str,
    ) -> Result<Option<DeferredConstraints>, postgres::Error> {
        let table: String = transaction
            .query_one(
                "SELECT $1::pg_catalog.text::pg_catalog.regclass::pg_catalog.text",
                &[&table],
            )?
            .get(0);
        let table = table.as_str();
        let empty: bool = transaction
            .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])?
            .get(0);
        if !empty {
            return Ok(None);
        }
        let constraints = transaction.query(DROPPABLE_CONSTRAINTS, &[&table])?;
        let indexes = transaction.query(DROPPABLE_INDEXES, &[&table])?;
        let kept = transaction
            .query(KEPT_CONSTRAINTS, &[&table])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        // Foreign keys are dropped first and added last: they rest on the unique
        // indexes of the keys.
        let mut drop_foreign = Vec::new();
        let mut drop_rest = Vec::new();
        let mut keys = Vec::new();
        let mut foreign = Vec::new();
        for row in &constraints {
            let (name, definition, kind): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let quoted = quote_identifier(&name);
            let add = format!("ALTER TABLE {table} ADD CONSTRAINT {quoted} {definition}");
            let drop = format!("ALTER TABLE {table} DROP CONSTRAINT {quoted}");
            if kind == "f" {
                drop_foreign.push(drop);
                foreign.push(add);
            } else {
                drop_rest.push(drop);
                keys.push(add);
            }
        }
        let mut plain_indexes = Vec::new();
        for row in &indexes {
            let (name, definition): (String, String) = (row.get(0), row.get(1));
            drop_rest.push(format!("DROP INDEX {name}"));
            plain_indexes.push(definition);
        }
        let mut drop = drop_foreign;
        drop.extend(drop_rest);
        if drop.is_empty() {
            return Ok(None);
        }
        transaction.batch_execute(&drop.join(";\n"))?;
        let mut restore = keys;
        restore.extend(plain_indexes);
        restore.extend(foreign);
        Ok(Some(DeferredConstraints {
            table: table.to_owned(),
            restore,
            kept,
        }))
    }

    /// The constraints left in place during the load, each with why.
    pub fn kept(&self) -> &[String] {
        &self.kept
    }

    /// Creates the indexes and constraints again (validating the loaded rows).
    pub fn restore(self, transaction: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        transaction.batch_execute(&self.restore.join(";\n"))?;
        transaction.batch_execute(&format!("ANALYZE {}", self.table))
    }

    /// How many statements restoring will run, for reports.
    pub fn len(&self) -> usize {
        self.restore.len()
    }

    pub fn is_empty(&self) -> bool {
        self.restore.is_empty()
    }
}
