//! Stage checksums: what counts as a change to an applied stage, and how a change is
//! shown.
//!
//! A stage's definition is flattened into named entries (each step's SQL or SQL file
//! contents, each transform's name, version and params, each check's SQL and
//! expectation); the checksum is SHA-256 over them. SQL is fingerprinted by its token
//! stream (`planrun_sql::token_checksum`): an edit to comments or white space is no
//! change. Ledgers written before kept SHA-256 of the text with line endings
//! normalised; [`StageDefinition::legacy`] derives that form, and a stage whose recorded
//! checksum matches either form has not drifted. The entries
//! are kept in the ledger so that drift can say which ones changed, and beside them
//! the SQL texts they hash, so that drift can show the changed lines. Titles,
//! messages and the `optional` flag are presentation, not definition; a batched
//! step's throttles (`batch_size`, `pause`, `batch_target`, `max_replica_lag`,
//! `max_transaction_age`, `pause_while`, `on_replica_gone`) are how fast, not what,
//! and tunable on a half-done stage, so they are left out too. Ledgers written before
//! kept them in; [`former_definitions`] derives those forms, so an applied or
//! half-done stage recorded then is no drift either.

use std::collections::BTreeMap;
use std::time::Duration;

use planrun_plan::{Stage, StepKind};
use planrun_report::SqlDiff;
use planrun_transform::Registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use similar::TextDiff;

use crate::error::EngineError;

/// A stage's definition as `entry -> value` (file contents are hashed).
pub(crate) type Definition = BTreeMap<String, String>;

/// Lines of a drift diff shown per entry; the rest are counted, not shown.
pub(crate) const DIFF_LINES: usize = 40;

/// Unchanged lines shown around each change in a drift diff.
const DIFF_CONTEXT: usize = 3;

/// A stage's definition as the ledger stores it: the entries the checksum covers and,
/// under `sql_text`, the SQL that each SQL entry hashes. The texts are not part of the
/// checksum (the hashes already cover them), so a row written before they were kept,
/// which has none, checksums the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDefinition {
    #[serde(flatten)]
    pub entries: Definition,
    /// `entry -> SQL`, line endings normalised as for the checksum.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sql_text: BTreeMap<String, String>,
}

/// How SQL entries are fingerprinted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fingerprint {
    /// `tokens:<hex>`, falling back to `sha256:<hex>` for SQL the scanner cannot read.
    Tokens,
    /// `sha256:<hex>` of the text: what ledgers written before token checksums hold.
    Text,
}

impl Fingerprint {
    fn of(self, sql: &str) -> String {
        match self {
            Fingerprint::Tokens => planrun_sql::token_checksum(sql)
                .unwrap_or_else(|_| format!("sha256:{}", sha256_hex(sql))),
            Fingerprint::Text => format!("sha256:{}", sha256_hex(sql)),
        }
    }
}

impl StageDefinition {
    /// Adds the entry `key` for normalised `sql`; `value` formats the entry from the
    /// SQL's fingerprint.
    fn insert_sql(
        &mut self,
        fingerprint: Fingerprint,
        key: String,
        sql: String,
        value: impl FnOnce(&str) -> String,
    ) {
        self.entries
            .insert(key.clone(), value(&fingerprint.of(&sql)));
        self.sql_text.insert(key, sql);
    }

    /// This definition as planrun recorded it before token checksums: each SQL entry
    /// fingerprinted by SHA-256 of its text. Derived from the texts kept in
    /// `sql_text`, so no file is read again.
    pub fn legacy(&self) -> StageDefinition {
        let mut legacy = self.clone();
        for (key, sql) in &self.sql_text {
            if let Some(value) = legacy.entries.get_mut(key) {
                *value = value.replace(&Fingerprint::Tokens.of(sql), &Fingerprint::Text.of(sql));
            }
        }
        legacy
    }

    /// The SQL of step `position` (0-based) named `name`: the very text that was
    /// fingerprinted, so what runs is what the ledger records.
    pub fn step_sql(&self, position: usize, name: &str) -> Option<&str> {
        self.sql_text
            .get(&step_key(position, name))
            .map(String::as_str)
    }
}

fn step_key(position: usize, name: &str) -> String {
    format!("step {} ({name})", position + 1)
}

/// SQL text with `\r\n` and lone `\r` turned into `\n`.
pub fn normalise_line_endings(sql: &str) -> String {
    sql.replace("\r\n", "\n").replace('\r', "\n")
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Reads a stage's SQL file, normalised.
pub(crate) fn read_sql_file(path: &std::path::Path) -> Result<String, EngineError> {
    std::fs::read_to_string(path)
        .map(|text| normalise_line_endings(&text))
        .map_err(|source| EngineError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// Which transform params a definition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Params {
    /// Without the tunable ones (`planrun_transform::TUNABLE_PARAMS`).
    Untuned,
    /// All of them, as planrun recorded before throttles became tunable.
    All,
}

/// The stage's definition, SQL fingerprinted by tokens, throttles left out.
pub(crate) fn definition(
    stage: &Stage,
    registry: &Registry,
) -> Result<StageDefinition, EngineError> {
    build(stage, registry, Fingerprint::Tokens, Params::Untuned)
}

/// The stage's definition in the forms older planruns recorded, newest first: with
/// every transform param, SQL fingerprinted by tokens; and the same with SQL
/// fingerprinted by its text. For a stage without throttles, the first is
/// [`definition`]'s.
pub(crate) fn former_definitions(
    stage: &Stage,
    registry: &Registry,
) -> Result<Vec<StageDefinition>, EngineError> {
    let all = build(stage, registry, Fingerprint::Tokens, Params::All)?;
    let text = all.legacy();
    Ok(vec![all, text])
}

/// A verification's per-key form (`per_key_sql`, `per_key_watch`), an entry of its
/// own so that a plan without one keeps the checksums it had.
fn insert_per_key(
    definition: &mut StageDefinition,
    fingerprint: Fingerprint,
    kind: &str,
    check: &planrun_plan::Check,
) {
    let Some(per_key) = &check.per_key else {
        return;
    };
    let watched: Vec<String> = per_key
        .watch
        .iter()
        .map(|(watched, _)| format!("{}({})", watched.table, watched.key))
        .collect();
    definition.insert_sql(
        fingerprint,
        format!("{kind} {} (per key)", check.name),
        normalise_line_endings(&per_key.sql),
        |hash| format!("watch [{}] | {hash}", watched.join(", ")),
    );
}

/// One step's entries: what it runs, and whether it runs after the commit.
fn insert_step(
    definition: &mut StageDefinition,
    (index, step): (usize, &planrun_plan::Step),
    registry: &Registry,
    fingerprint: Fingerprint,
    kept: Params,
) -> Result<(), EngineError> {
    let key = step_key(index, &step.name);
    if step.after_commit.is_some() {
        // An entry of its own, so that a plan without one keeps its checksums.
        definition
            .entries
            .insert(format!("{key} runs"), "after the commit".into());
    }
    match &step.kind {
        StepKind::Sql { sql } => {
            definition.insert_sql(fingerprint, key, normalise_line_endings(sql), |hash| {
                format!("sql {hash}")
            });
        }
        StepKind::SqlFile { path, resolved, .. } => {
            definition.insert_sql(fingerprint, key, read_sql_file(resolved)?, |hash| {
                format!("sql_file {path} {hash}")
            });
        }
        StepKind::Transform { name, params, .. } => {
            let version = registry.get(name).map_or("unregistered", |t| t.version());
            let params = match kept {
                Params::Untuned => planrun_transform::untuned_params(params),
                Params::All => params.clone(),
            };
            definition
                .entries
                .insert(key, format!("transform {name} v{version} params {params}"));
        }
    }
    Ok(())
}

fn build(
    stage: &Stage,
    registry: &Registry,
    fingerprint: Fingerprint,
    kept: Params,
) -> Result<StageDefinition, EngineError> {
    let mut definition = StageDefinition::default();
    definition
        .entries
        .insert("transaction".into(), stage.transaction.to_string());
    let mut deps: Vec<&str> = stage.depends_on.iter().map(|(d, _)| d.as_str()).collect();
    deps.sort_unstable();
    definition
        .entries
        .insert("depends_on".into(), deps.join(","));
    for (index, step) in stage.steps.iter().enumerate() {
        insert_step(&mut definition, (index, step), registry, fingerprint, kept)?;
    }
    let checks = [
        ("precondition", &stage.preconditions),
        ("verify", &stage.verify),
    ];
    for (kind, list) in checks {
        for check in list {
            definition.insert_sql(
                fingerprint,
                format!("{kind} {}", check.name),
                normalise_line_endings(&check.sql),
                |hash| format!("{} | {hash}", check.expect),
            );
            insert_per_key(&mut definition, fingerprint, kind, check);
        }
    }
    for (index, rule) in stage.skip_if.iter().enumerate() {
        definition.insert_sql(
            fingerprint,
            format!("skip_if {}", index + 1),
            normalise_line_endings(&rule.sql),
            |hash| format!("{} | {hash}", rule.expect),
        );
    }
    for capture in &stage.captures {
        if let Some((expr, _)) = &capture.expr {
            definition.entries.insert(
                format!("capture {}", capture.label()),
                format!("expr {expr}"),
            );
            continue;
        }
        definition.insert_sql(
            fingerprint,
            format!("capture {}", capture.label()),
            normalise_line_endings(&capture.sql),
            |hash| hash.to_owned(),
        );
    }
    Ok(definition)
}

pub(crate) fn checksum(definition: &Definition) -> String {
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
pub(crate) fn differences(recorded: &StageDefinition, current: &StageDefinition) -> Vec<String> {
    let (recorded, current) = (&recorded.entries, &current.entries);
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

/// Line diffs of the SQL that changed between the recorded and the current definition,
/// in the order of [`differences`]. An entry that was not there counts as empty SQL.
/// A changed or removed entry whose recorded text is unknown (a row written by a
/// planrun that kept only hashes) has no diff: its line in [`differences`] is all
/// there is to show.
pub(crate) fn sql_diffs(recorded: &StageDefinition, current: &StageDefinition) -> Vec<SqlDiff> {
    let added_or_changed = current
        .entries
        .iter()
        .filter(|(key, value)| recorded.entries.get(*key) != Some(value))
        .map(|(key, _)| key);
    let removed = recorded
        .entries
        .keys()
        .filter(|key| !current.entries.contains_key(*key));
    added_or_changed
        .chain(removed)
        .filter_map(|key| {
            let (old, new) = (sql_of(recorded, key)?, sql_of(current, key)?);
            (old != new).then(|| line_diff(key, old, new))
        })
        .collect()
}

/// The SQL behind `key`: empty if there is no such entry, unknown if the entry was
/// recorded without its text.
fn sql_of<'a>(definition: &'a StageDefinition, key: &str) -> Option<&'a str> {
    if definition.entries.contains_key(key) {
        definition.sql_text.get(key).map(String::as_str)
    } else {
        Some("")
    }
}

/// A unified diff of `old` to `new` with a few lines of context, cut at
/// [`DIFF_LINES`] lines.
fn line_diff(entry: &str, old: &str, new: &str) -> SqlDiff {
    let diff = TextDiff::configure()
        .timeout(Duration::from_secs(1))
        .diff_lines(old, new);
    let unified = diff.unified_diff().context_radius(DIFF_CONTEXT).to_string();
    let mut lines: Vec<String> = unified.lines().map(str::to_owned).collect();
    let more_lines = lines.len().saturating_sub(DIFF_LINES);
    lines.truncate(DIFF_LINES);
    SqlDiff {
        entry: entry.to_owned(),
        lines,
        more_lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form ledgers written before token fingerprints hold, byte for byte, and a
    /// layout-only edit that changes it but not the token form.
    #[test]
    fn the_legacy_form_is_the_old_one_and_tokens_ignore_layout() {
        let dir = tempfile::tempdir().unwrap();
        let text = "CREATE TABLE t (a int);\n";
        std::fs::write(dir.path().join("t.sql"), text).unwrap();
        let plan_text = "[plan]\nname = \"p\"\n[[stage]]\nid = \"one\"\n[[stage.step]]\nsql_file = \"t.sql\"\n[[stage.verify]]\nname = \"v\"\nsql = \"SELECT 1\"\nexpect = 1\n";
        let path = dir.path().join("plan.toml");
        let plan = planrun_plan::Plan::parse(&path, plan_text.to_owned(), None).unwrap();
        let registry = Registry::new();
        let legacy = definition(&plan.stages[0], &registry).unwrap().legacy();
        assert_eq!(
            legacy.entries["step 1 (t.sql)"],
            format!("sql_file t.sql sha256:{}", sha256_hex(text))
        );
        assert_eq!(
            legacy.entries["verify v"],
            format!("= 1 | sha256:{}", sha256_hex("SELECT 1"))
        );
        let tokens = definition(&plan.stages[0], &registry).unwrap();
        std::fs::write(
            dir.path().join("t.sql"),
            "-- note\nCREATE TABLE t ( a int ) ;",
        )
        .unwrap();
        let relaid = definition(&plan.stages[0], &registry).unwrap();
        assert_eq!(checksum(&tokens.entries), checksum(&relaid.entries));
        assert_ne!(
            checksum(&legacy.entries),
            checksum(
                &definition(&plan.stages[0], &registry)
                    .unwrap()
                    .legacy()
                    .entries
            )
        );
    }

    fn step(sql: &str) -> StageDefinition {
        let mut definition = StageDefinition::default();
        definition
            .entries
            .insert("transaction".into(), "true".into());
        definition.insert_sql(
            Fingerprint::Text,
            "step 1 (load.sql)".into(),
            sql.into(),
            |hash| format!("sql_file load.sql {hash}"),
        );
        definition
    }

    #[test]
    fn a_changed_line_shows_as_removed_and_added_with_context() {
        let applied = step("BEGIN;\nINSERT INTO a SELECT 1;\nCOMMIT;\n");
        let now = step("BEGIN;\nINSERT INTO a SELECT 2;\nCOMMIT;\n");
        let diffs = sql_diffs(&applied, &now);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].entry, "step 1 (load.sql)");
        assert_eq!(
            diffs[0].lines,
            [
                "@@ -1,3 +1,3 @@",
                " BEGIN;",
                "-INSERT INTO a SELECT 1;",
                "+INSERT INTO a SELECT 2;",
                " COMMIT;",
            ]
        );
        assert_eq!(diffs[0].more_lines, 0);
    }

    #[test]
    fn a_long_diff_is_cut_and_counts_the_rest() {
        let old: String = (0..100).map(|n| format!("SELECT {n};\n")).collect();
        let new: String = (0..100).map(|n| format!("SELECT {n} + 1;\n")).collect();
        let diffs = sql_diffs(&step(&old), &step(&new));
        assert_eq!(diffs[0].lines.len(), DIFF_LINES);
        assert_eq!(diffs[0].more_lines, 1 + 200 - DIFF_LINES);
    }

    #[test]
    fn a_missing_final_newline_is_named() {
        let diffs = sql_diffs(&step("SELECT 1;\n"), &step("SELECT 1;"));
        assert!(
            diffs[0]
                .lines
                .iter()
                .any(|line| line == "\\ No newline at end of file"),
            "{:?}",
            diffs[0].lines
        );
    }

    #[test]
    fn only_line_endings_change_nothing() {
        let crlf = normalise_line_endings("SELECT 1;\r\nSELECT 2;\r\n");
        let lf = step("SELECT 1;\nSELECT 2;\n");
        assert_eq!(step(&crlf), lf);
        assert_eq!(checksum(&step(&crlf).entries), checksum(&lf.entries));
        assert!(sql_diffs(&step(&crlf), &lf).is_empty());
    }

    #[test]
    fn the_sql_text_is_stored_beside_the_entries_and_not_checksummed() {
        let definition = step("SELECT 1;\n");
        let stored = serde_json::to_value(&definition).unwrap();
        assert_eq!(stored["transaction"], "true");
        assert_eq!(stored["sql_text"]["step 1 (load.sql)"], "SELECT 1;\n");
        let read: StageDefinition = serde_json::from_value(stored).unwrap();
        assert_eq!(read, definition);

        let mut without_text = definition.clone();
        without_text.sql_text.clear();
        assert_eq!(
            checksum(&definition.entries),
            checksum(&without_text.entries)
        );
    }

    /// A row written before the SQL was kept: entries only, no `sql_text`.
    #[test]
    fn a_ledger_definition_without_text_falls_back_to_the_checksum_line() {
        let now = step("INSERT INTO a SELECT 2;\n");
        let applied = step("INSERT INTO a SELECT 1;\n");
        let old_row = serde_json::json!({
            "transaction": "true",
            "step 1 (load.sql)": applied.entries["step 1 (load.sql)"],
        });
        let recorded: StageDefinition = serde_json::from_value(old_row).unwrap();
        assert_eq!(recorded.entries, applied.entries);
        assert!(recorded.sql_text.is_empty());

        assert!(sql_diffs(&recorded, &now).is_empty());
        let lines = differences(&recorded, &now);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("changed step 1 (load.sql): sql_file load.sql sha256:"),
            "{lines:?}"
        );
    }

    #[test]
    fn an_added_step_shows_its_sql_and_a_removed_one_shows_it_if_recorded() {
        let mut now = step("SELECT 1;\n");
        now.insert_sql(
            Fingerprint::Text,
            "step 2 (more.sql)".into(),
            "SELECT 2;\n".into(),
            |hash| format!("sql_file more.sql {hash}"),
        );
        let added = sql_diffs(&step("SELECT 1;\n"), &now);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].entry, "step 2 (more.sql)");
        assert_eq!(added[0].lines, ["@@ -0,0 +1 @@", "+SELECT 2;"]);

        let removed = sql_diffs(&now, &step("SELECT 1;\n"));
        assert_eq!(removed[0].lines, ["@@ -1 +0,0 @@", "-SELECT 2;"]);
    }

    /// A stage recorded before throttles were left out: its checksum then, pinned
    /// from the planrun that wrote it, is a former form of today's; today's leaves
    /// the throttles out, so retuning them changes nothing, while any other param does.
    #[test]
    fn throttles_are_left_out_and_checksums_recorded_with_them_still_match() {
        let dir = tempfile::tempdir().unwrap();
        let stage = |params: &str| {
            let text = format!("[plan]\nname = \"p\"\n[[stage]]\nid = \"one\"\n[[stage.step]]\nname = \"split\"\ntransform = \"t\"\nparams = {{ {params} }}\n[[stage]]\nid = \"two\"\n[[stage.step]]\nname = \"s\"\nsql = \"SELECT 1\"\n");
            planrun_plan::Plan::parse(&dir.path().join("plan.toml"), text, None).unwrap()
        };
        let registry = Registry::new();
        let recorded =
            stage(r#"on_invalid = "fail", mode = "batched", batch_size = 100, pause = "20ms""#);
        let sum = |plan: &planrun_plan::Plan, index: usize| {
            checksum(&definition(&plan.stages[index], &registry).unwrap().entries)
        };
        let former = former_definitions(&recorded.stages[0], &registry).unwrap();
        assert_eq!(
            checksum(&former[0].entries),
            "87bd3dc6c7170ea6fb10a89e612dcebc6487636f93faf6356d263f3a9b1efe99",
            "the form planrun recorded before throttles were tunable"
        );
        assert_eq!(
            sum(&recorded, 1),
            "f3ac05f731d91c62f36a2d41d1cf27b7b103d7d215e065575ff1e45c5bbaf2ef",
            "a stage without throttles keeps its checksum"
        );
        let retuned = stage(
            r#"on_invalid = "fail", mode = "batched", batch_size = 900, pause = "1s", batch_target = "200ms", max_replica_lag = "5s", max_transaction_age = "1min", pause_while = "SELECT false", on_replica_gone = "continue""#,
        );
        assert_eq!(sum(&recorded, 0), sum(&retuned, 0));
        let changed = stage(
            r#"on_invalid = "quarantine", mode = "batched", batch_size = 100, pause = "20ms""#,
        );
        assert_ne!(sum(&recorded, 0), sum(&changed, 0));
        let pinned = "87bd3dc6c7170ea6fb10a89e612dcebc6487636f93faf6356d263f3a9b1efe99";
        let runner = crate::apply::run::Runner::new(&recorded, &registry).unwrap();
        assert!(
            runner.prepared().stages[0].matches_recorded(pinned),
            "no drift after the upgrade"
        );
        let runner = crate::apply::run::Runner::new(&changed, &registry).unwrap();
        assert!(
            !runner.prepared().stages[0].matches_recorded(pinned),
            "a real change is drift"
        );
        let plan_checksum = |plan| {
            crate::apply::run::Runner::new(plan, &registry)
                .unwrap()
                .plan_checksum()
        };
        assert_eq!(
            plan_checksum(&recorded),
            "2ad5c700e313f62a8d8ce27a13fea1c223fa31d118c164ad38e9c75d134a5087",
            "the plan checksum, which rehearsals record, is what planrun recorded before"
        );
        assert_ne!(plan_checksum(&recorded), plan_checksum(&retuned));
        let atomic = stage(r#"on_invalid = "fail""#);
        assert_ne!(
            sum(&recorded, 0),
            sum(&atomic, 0),
            "the mode is no throttle"
        );
    }
}
