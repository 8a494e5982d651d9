//! Bulk loading into a table that was empty when the stage began: its indexes and
//! constraints are dropped for the load and created again after it, in the same
//! transaction, because building an index once over all rows and validating a
//! foreign key with one join is far cheaper than maintaining both row by row.
//!
//! The table is only touched when nothing depends on what is dropped (another table's
//! foreign key on its primary key, say); otherwise the load runs with everything in
//! place. Either way the outcome is the same table: if anything fails, the stage's
//! transaction rolls back and the definitions come back with it.

use postgres::Transaction;

/// The indexes and constraints taken off a table for a load.
#[derive(Debug, Default)]
pub struct DeferredConstraints {
    table: String,
    /// `ALTER TABLE ... ADD CONSTRAINT ...` and `CREATE INDEX ...` statements, in the
    /// order to run them (primary key and unique first, then other indexes, then
    /// foreign keys, which may need the unique indexes).
    restore: Vec<String>,
}

impl DeferredConstraints {
    /// Drops the indexes and constraints (except NOT NULL, defaults and CHECKs, which
    /// cost little) of `table` (as `regclass` reads it, e.g. `public.chapter_sections`)
    /// when it is empty and nothing else depends on them. Returns `None` when the table
    /// is left as it is. The server resolves and quotes the name before any SQL is
    /// built from it, so a name that is not a table is an error, never SQL.
    pub fn take(
        transaction: &mut Transaction<'_>,
        table: &str,
    ) -> Result<Option<DeferredConstraints>, postgres::Error> {
        let table: String = transaction
            .query_one("SELECT $1::text::regclass::text", &[&table])?
            .get(0);
        let table = table.as_str();
        let empty: bool = transaction
            .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])?
            .get(0);
        if !empty {
            return Ok(None);
        }
        let constraints = transaction.query(
            "SELECT conname, pg_get_constraintdef(oid), contype::text FROM pg_constraint \
             WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u', 'f') \
             ORDER BY CASE contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 ELSE 2 END, conname",
            &[&table],
        )?;
        let indexes = transaction.query(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index \
             WHERE indrelid = $1::text::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = indexrelid AND c.conrelid = indrelid) \
             ORDER BY indexrelid",
            &[&table],
        )?;
        // Foreign keys are dropped first and added last: they may rest on the unique
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
        // If another object depends on a key (another table's foreign key, say), the
        // drop fails and the savepoint keeps the table as it was.
        let mut savepoint = transaction.transaction()?;
        match savepoint.batch_execute(&drop.join(";\n")) {
            Ok(()) => savepoint.commit()?,
            Err(_) => {
                savepoint.rollback()?;
                return Ok(None);
            }
        }
        let mut restore = keys;
        restore.extend(plain_indexes);
        restore.extend(foreign);
        Ok(Some(DeferredConstraints {
            table: table.to_owned(),
            restore,
        }))
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

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
