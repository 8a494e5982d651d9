//! Stage checksums: what counts as a change to an applied stage.
//!
//! A stage's definition is flattened into named entries (each step's SQL or SQL file
//! contents with line endings normalised, each transform's name, version and params,
//! each check's SQL and expectation); the checksum is SHA-256 over them. The entries
//! are kept in the ledger so that drift can say which ones changed. Titles, messages
//! and the `optional` flag are presentation, not definition.

use std::collections::BTreeMap;

use planrun_plan::{Stage, StepKind};
use planrun_transform::Registry;
use sha2::{Digest, Sha256};

use crate::error::EngineError;

/// A stage's definition as `entry -> value` (file contents are hashed).
pub type Definition = BTreeMap<String, String>;

/// SQL text with `\r\n` and lone `\r` turned into `\n`.
pub fn normalise_line_endings(sql: &str) -> String {
    sql.replace("\r\n", "\n").replace('\r', "\n")
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Reads a stage's SQL file, normalised.
pub fn read_sql_file(path: &std::path::Path) -> Result<String, EngineError> {
    std::fs::read_to_string(path)
        .map(|text| normalise_line_endings(&text))
        .map_err(|source| EngineError::Io {
            path: path.display().to_string(),
            source,
        })
}

pub fn definition(stage: &Stage, registry: &Registry) -> Result<Definition, EngineError> {
    let mut entries = Definition::new();
    entries.insert("transaction".into(), stage.transaction.to_string());
    let mut deps: Vec<&str> = stage.depends_on.iter().map(|(d, _)| d.as_str()).collect();
    deps.sort_unstable();
    entries.insert("depends_on".into(), deps.join(","));
    for (index, step) in stage.steps.iter().enumerate() {
        let key = format!("step {} ({})", index + 1, step.name);
        let value = match &step.kind {
            StepKind::Sql { sql } => {
                format!("sql sha256:{}", sha256_hex(&normalise_line_endings(sql)))
            }
            StepKind::SqlFile { path, resolved, .. } => {
                format!(
                    "sql_file {path} sha256:{}",
                    sha256_hex(&read_sql_file(resolved)?)
                )
            }
            StepKind::Transform { name, params, .. } => {
                let version = registry.get(name).map_or("unregistered", |t| t.version());
                format!("transform {name} v{version} params {}", params)
            }
        };
        entries.insert(key, value);
    }
    let checks = [
        ("precondition", &stage.preconditions),
        ("verify", &stage.verify),
    ];
    for (kind, list) in checks {
        for check in list {
            entries.insert(
                format!("{kind} {}", check.name),
                format!(
                    "{} | sha256:{}",
                    check.expect,
                    sha256_hex(&normalise_line_endings(&check.sql))
                ),
            );
        }
    }
    for (index, rule) in stage.skip_if.iter().enumerate() {
        entries.insert(
            format!("skip_if {}", index + 1),
            format!(
                "{} | sha256:{}",
                rule.expect,
                sha256_hex(&normalise_line_endings(&rule.sql))
            ),
        );
    }
    for capture in &stage.captures {
        entries.insert(
            format!("capture {}", capture.label()),
            format!(
                "sha256:{}",
                sha256_hex(&normalise_line_endings(&capture.sql))
            ),
        );
    }
    Ok(entries)
}

pub fn checksum(definition: &Definition) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in definition {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// What differs between the recorded and the current definition, one line each.
pub fn differences(recorded: &Definition, current: &Definition) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, value) in current {
        match recorded.get(key) {
            None => lines.push(format!("added {key}: {value}")),
            Some(old) if old != value => lines.push(format!("changed {key}: {old} -> {value}")),
            Some(_) => {}
        }
    }
    for key in recorded.keys().filter(|key| !current.contains_key(*key)) {
        lines.push(format!("removed {key}"));
    }
    lines
}
