//! What the transforms need to know about the live schema before touching it.
//!
//! Binary COPY sends values in a type's wire format, so a column whose type drifted from
//! the documented one (an `int` position, a `json` image) would fail deep inside the
//! COPY with a message naming neither table nor column. Checking the catalog first turns
//! that into a [`TransformError::Schema`] that says what is wrong.

use std::collections::BTreeMap;

use planrun_transform::TransformError;
use postgres::Transaction;

/// The columns of one table: name -> `format_type` spelling (`bigint`, `jsonb`,
/// `character varying(200)`, ...).
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    pub table: &'static str,
    pub types: BTreeMap<String, String>,
}

impl Columns {
    pub(crate) fn get(&self, column: &str) -> Option<&str> {
        self.types.get(column).map(String::as_str)
    }

    pub(crate) fn has(&self, column: &str) -> bool {
        self.types.contains_key(column)
    }

    /// The column's type, or a schema error naming what is missing.
    pub(crate) fn require(&self, column: &str) -> Result<&str, TransformError> {
        self.get(column).ok_or_else(|| {
            TransformError::Schema(format!("column {}.{column} does not exist", self.table))
        })
    }

    /// Fails unless `column` exists with one of the `expected` types.
    pub(crate) fn require_type(
        &self,
        column: &str,
        expected: &[&str],
    ) -> Result<&str, TransformError> {
        let actual = self.require(column)?;
        if expected.contains(&actual) {
            Ok(actual)
        } else {
            Err(TransformError::Schema(format!(
                "column {}.{column} has type {actual}, expected {}",
                self.table,
                expected.join(" or ")
            )))
        }
    }
}

/// The columns of `public.<table>`, or `None` when the table does not exist. The
/// transform runs with the plan's search_path, so every function and operator is
/// named with its schema: another role's `=(oid, regclass)` in `public` would fit
/// `attrelid = to_regclass($1)` better than pg_catalog's and run as planrun.
pub(crate) fn columns(
    transaction: &mut Transaction<'_>,
    table: &'static str,
) -> Result<Option<Columns>, TransformError> {
    let qualified = format!("public.{table}");
    let exists: bool = transaction
        .query_one(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[&qualified],
        )?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = transaction.query(
        "SELECT attname::pg_catalog.text, pg_catalog.format_type(atttypid, atttypmod)
         FROM pg_catalog.pg_attribute
         WHERE attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
           AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped",
        &[&qualified],
    )?;
    Ok(Some(Columns {
        table,
        types: rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
    }))
}

/// Like [`columns`], but a missing table is a schema error.
pub(crate) fn require_table(
    transaction: &mut Transaction<'_>,
    table: &'static str,
    why: &str,
) -> Result<Columns, TransformError> {
    columns(transaction, table)?.ok_or_else(|| {
        TransformError::Schema(format!("table public.{table} does not exist ({why})"))
    })
}

/// Whether a `format_type` spelling is one of the string types, whose `::text` cast is
/// the value itself.
pub(crate) fn is_text_like(type_name: &str) -> bool {
    type_name == "text"
        || type_name.starts_with("character varying")
        || type_name.starts_with("character(")
        || type_name == "character"
}
