//! Captures: values read before a stage's steps, for its verification.
//!
//! They run in the stage's own transaction, before the steps. Reading them on a second
//! connection that imports the stage's snapshot would overlap them with the steps, but
//! a step taking a strong lock on a table a capture has yet to read would then wait on
//! nothing PostgreSQL can see (the apply waits for the capture, which waits for the
//! apply's lock): a deadlock no timeout resolves, so planrun does not do it.

use std::collections::BTreeMap;

use planrun_plan::Capture;
use planrun_report::StageError;
use postgres::GenericClient;

use crate::stage::checks::query_rows;
use crate::stage::stage_failure::{plain_error, stage_error};

/// Captured values, in plan order.
pub(crate) type Values = Vec<(String, Option<String>)>;

/// Runs `captures` on `conn`; a computed capture reads the values before it, then
/// `known` (earlier stages').
pub(crate) fn read<C: GenericClient>(
    conn: &mut C,
    captures: &[Capture],
    known: &BTreeMap<String, Option<String>>,
) -> Result<Values, Box<StageError>> {
    let mut values: Values = Vec::new();
    for capture in captures {
        let label = format!("capture {}", capture.label());
        if let Some((expr, _)) = &capture.expr {
            let lookup = |name: &str| {
                values
                    .iter()
                    .rev()
                    .find(|(known_name, _)| known_name == name)
                    .map(|(_, value)| value.clone())
                    .or_else(|| known.get(name).cloned())
            };
            let value = expr
                .evaluate(&lookup)
                .map_err(|message| Box::new(plain_error(Some(&label), message)))?;
            values.push((capture.label(), Some(value.to_string())));
            continue;
        }
        let rows = query_rows(conn, &capture.sql).map_err(|error| {
            Box::new(stage_error(
                &error,
                Some(label.clone()),
                None,
                &capture.sql,
                0,
            ))
        })?;
        let row = rows.into_iter().next().unwrap_or_default();
        if !row.is_empty() && row.len() < capture.names.len() {
            return Err(Box::new(plain_error(
                Some(&label),
                format!(
                    "the query returns {} columns for {} capture names",
                    row.len(),
                    capture.names.len()
                ),
            )));
        }
        for (position, (name, _)) in capture.names.iter().enumerate() {
            values.push((name.clone(), row.get(position).cloned().flatten()));
        }
    }
    Ok(values)
}
