//! The column types of the tables a plan locks, read from the target's catalog for
//! `planrun plan`: whether an `ALTER COLUMN ... TYPE` rewrites depends on the old type
//! and its modifier, which the offline analysis cannot see.

use planrun_sql::AnalysisContext;
use postgres::GenericClient;

/// An analysis context that knows each column of `relations` (named as the analysis
/// names them, resolved with the session's search_path) as `format_type` spells it.
pub(crate) fn column_types<C: GenericClient>(
    conn: &mut C,
    relations: &[String],
) -> Result<AnalysisContext, postgres::Error> {
    let mut context = AnalysisContext::new();
    for relation in relations {
        let rows = conn.query(
            "SELECT a.attname::pg_catalog.text,
                    pg_catalog.format_type(a.atttypid, a.atttypmod)
             FROM pg_catalog.pg_attribute a
             WHERE a.attrelid OPERATOR(pg_catalog.=)
                   pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[relation],
        )?;
        for row in rows {
            let column: String = row.get(0);
            let type_sql: String = row.get(1);
            context.set_column_type(relation, &column, &type_sql);
        }
    }
    Ok(context)
}
