//! What the rehearsal counts on the target and on the copy: the words of the plan,
//! and a database's version, size and the rows of the tables the plan names.

use std::collections::BTreeSet;
use std::path::PathBuf;

use planrun_plan::{Stage, StepKind};
use planrun_sql::quote_identifier;
use postgres::Client;

use crate::checksum::read_sql_file;
use crate::error::EngineError;
use crate::rehearse::report::{Identity, TableRows};

/// Every lowercase word (`[A-Za-z0-9_]+`) of the plan's SQL: steps, SQL files,
/// preconditions, skip rules, captures, verifications, the setup file, and transform
/// params. A table "the plan touches" is one whose name is among them: simple, a
/// little generous, and blind only to tables a transform names in its code alone.
pub fn plan_words<'p>(
    stages: impl Iterator<Item = &'p Stage>,
    setup: Option<&(String, planrun_plan::Span, PathBuf)>,
) -> Result<BTreeSet<String>, EngineError> {
    let mut texts: Vec<String> = Vec::new();
    if let Some((_, _, resolved)) = setup {
        texts.push(read_sql_file(resolved)?);
    }
    for stage in stages {
        for step in &stage.steps {
            match &step.kind {
                StepKind::Sql { sql } => texts.push(sql.clone()),
                StepKind::SqlFile { resolved, .. } => texts.push(read_sql_file(resolved)?),
                StepKind::Transform { params, .. } => texts.push(params.to_string()),
            }
        }
        texts.extend(stage.preconditions.iter().map(|c| c.sql.clone()));
        texts.extend(stage.verify.iter().map(|c| c.sql.clone()));
        texts.extend(stage.skip_if.iter().map(|r| r.sql.clone()));
        texts.extend(stage.captures.iter().map(|c| c.sql.clone()));
    }
    Ok(texts
        .iter()
        .flat_map(|text| text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect())
}

/// Version, name, size and row counts, read in one read-only transaction, with
/// planrun's own search_path for that transaction.
pub(crate) fn identity(
    client: &mut Client,
    words: &BTreeSet<String>,
) -> Result<Identity, EngineError> {
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(EngineError::database(
            "cannot begin a read-only transaction",
        ))?;
    crate::db::trusted_sql::trust_for_transaction(&mut tx).map_err(EngineError::database(
        "cannot set planrun's own search_path",
    ))?;
    let row = tx
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
                    current_database()::text, pg_database_size(current_database())",
            &[],
        )
        .map_err(EngineError::database("cannot read the database's identity"))?;
    let mut identity = Identity {
        server_version: row.get(0),
        server_version_num: row.get(1),
        database: row.get(2),
        size_bytes: row.get(3),
        tables: Vec::new(),
        rows_total: 0,
    };
    // Partitions are counted through their parent; the ledger is planrun's own.
    let tables = tx
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'planrun') \
               AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2",
            &[],
        )
        .map_err(EngineError::database("cannot list the database's tables"))?;
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        if !words.contains(&table.to_ascii_lowercase()) {
            continue;
        }
        let rows: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_identifier(&schema),
                    quote_identifier(&table)
                ),
                &[],
            )
            .map_err(EngineError::database(format!(
                "cannot count the rows of {schema}.{table}"
            )))?
            .get(0);
        identity.rows_total += rows;
        identity.tables.push(TableRows {
            schema,
            table,
            rows,
        });
    }
    let _ = tx.rollback();
    Ok(identity)
}
