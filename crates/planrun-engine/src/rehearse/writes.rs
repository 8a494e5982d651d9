//! A stage's `[[stage.rehearse_writes]]` on the copy: what the application would
//! write once the stage is applied, run in a session of their own, in one
//! transaction, with the plan's variables, right after the stage commits. The rows
//! they touched are those whose dump statement changed across them
//! (`dump_diff::touched_rows`): the rows the revert's proof allows to differ.

use std::collections::BTreeSet;

use planrun_plan::{Plan, Stage, StepKind};
use planrun_sql::expand_psql;

use crate::checksum::read_sql_file;
use crate::db::connect::Target;
use crate::rehearse::dump_diff::{application_dump, touched_rows, RowKey};

/// Runs `stage`'s writes on `copy`; the rows they touched, or why they could not run.
pub(crate) fn run_writes(
    plan: &Plan,
    stage: &Stage,
    copy: &Target,
) -> Result<BTreeSet<RowKey>, String> {
    let before = application_dump(copy)?;
    let mut client = copy
        .connect(&format!("planrun rehearse writes {}", stage.id))
        .map_err(|error| error.to_string())?;
    let mut transaction = client.transaction().map_err(|error| error.to_string())?;
    for write in &stage.revert.rehearse_writes {
        let sql = match &write.kind {
            StepKind::Sql { sql } => sql.clone(),
            StepKind::SqlFile { resolved, .. } => {
                read_sql_file(resolved).map_err(|error| error.to_string())?
            }
            StepKind::Transform { name, .. } => {
                return Err(format!(
                    "write `{}` is a transform ({name}), not SQL",
                    write.name
                ))
            }
        };
        let script = expand_psql(&sql, &plan.variables)
            .map_err(|error| format!("write `{}`: {}", write.name, error.message))?;
        transaction.batch_execute(&script.sql).map_err(|error| {
            let why = error
                .as_db_error()
                .map_or_else(|| error.to_string(), |db| db.message().to_owned());
            format!("write `{}` failed: {why}", write.name)
        })?;
    }
    transaction.commit().map_err(|error| error.to_string())?;
    let after = application_dump(copy)?;
    Ok(touched_rows(&before, &after))
}
