//! Where a stage's time goes outside its transform: each capture and verification query
//! of split_chapters and collect_images, timed alone. The JSON report only gives a stage's
//! total, and at 100k chapters these checks cost more than the transform itself.
//!
//! The split's captures run on a fresh copy of the legacy data (the state they see in a
//! real apply); everything else runs on the floor database after its collect, which
//! holds the same rows planrun writes, plus an empty quarantine table for the queries
//! that read it. Computed captures (`expr`) run no SQL and are left out.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::data::{connect, db_error};
use crate::floor::read_sql;

/// One timed query.
#[derive(Debug)]
pub(crate) struct Check {
    pub stage: String,
    /// `capture` or `verify`.
    pub kind: &'static str,
    pub name: String,
    pub duration: Duration,
}

/// The stages whose checks are timed: the two with a floor.
const STAGES: [&str; 2] = ["split_chapters", "collect_images"];

/// Times every capture on `legacy_url` and every verification on `after_url`.
pub(crate) fn time_checks(
    plan: &Path,
    legacy_url: &str,
    after_url: &str,
) -> Result<Vec<Check>, String> {
    let text = std::fs::read_to_string(plan)
        .map_err(|e| format!("cannot read {}: {e}", plan.display()))?;
    let plan_toml: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse {}: {e}", plan.display()))?;
    let plan_dir = plan.parent().unwrap_or(plan);
    let session = read_sql(plan_dir, "memoir/session.sql")?;
    let stages = plan_toml
        .get("stage")
        .and_then(toml::Value::as_array)
        .ok_or("the plan has no stages")?;

    let mut before = connect(legacy_url)?;
    let mut after = connect(after_url)?;
    before
        .batch_execute(&session)
        .map_err(db_error("session.sql"))?;
    after
        .batch_execute(&session)
        .map_err(db_error("session.sql"))?;
    after
        .batch_execute(planrun_memoir::CREATE_QUARANTINE_TABLE)
        .map_err(db_error("quarantine table"))?;

    let mut checks = Vec::new();
    for stage in stages {
        let id = stage.get("id").and_then(toml::Value::as_str).unwrap_or("");
        if !STAGES.contains(&id) {
            continue;
        }
        for (key, kind) in [("capture", "capture"), ("verify", "verify")] {
            let list = stage.get(key).and_then(toml::Value::as_array);
            for check in list.into_iter().flatten() {
                let names: Vec<&str> = check
                    .get("names")
                    .and_then(toml::Value::as_array)
                    .map(|names| names.iter().filter_map(toml::Value::as_str).collect())
                    .unwrap_or_default();
                let name = match check.get("name").and_then(toml::Value::as_str) {
                    Some(name) => name.to_owned(),
                    None if !names.is_empty() => names.join(", "),
                    None => "?".to_owned(),
                };
                let Some(sql) = check.get("sql").and_then(toml::Value::as_str) else {
                    continue;
                };
                let client = if kind == "capture" && id == "split_chapters" {
                    &mut before
                } else {
                    &mut after
                };
                let t = Instant::now();
                client.simple_query(sql).map_err(|e| {
                    let reason = e
                        .as_db_error()
                        .map_or_else(|| e.to_string(), |db| db.message().to_owned());
                    format!("{id} {kind} {name:?}: {reason}")
                })?;
                checks.push(Check {
                    stage: id.to_owned(),
                    kind,
                    name,
                    duration: t.elapsed(),
                });
            }
        }
    }
    Ok(checks)
}
