//! `rehearse --revert`: the revert proved on the copy. The application's dump of the
//! copy (schema and data, planrun's schema and sequence positions left out) is taken
//! before the apply; after it, `revert --to start` runs on the copy in a session of
//! its own, and the dump is taken again: identical, every reverted stage is proved;
//! otherwise none is, and the lines that differ are the differences. Writes by the
//! application in the new shape are not made here (a plan's own rehearsal of them is
//! what `differences` would show).

use std::collections::BTreeSet;

use planrun_report::StageStatus;

use crate::apply::run::Runner;
use crate::db::connect::Target;
use crate::db::pg_tools::{libpq_command, pg_tool};
use crate::observer::Silent;
use crate::options::RevertOptions;
use crate::rehearse::report::{RehearsedRevert, RevertProof};

/// The most differing lines a proof lists.
const DIFFERENCES: usize = 20;

/// The application's schema and data on `target`, as `pg_dump` prints them.
pub(crate) fn application_dump(target: &Target) -> Result<String, String> {
    let output = libpq_command(&pg_tool("pg_dump"), target)
        .args([
            "--no-owner",
            "--no-privileges",
            "--inserts",
            "--exclude-schema=planrun",
        ])
        .output()
        .map_err(|error| format!("cannot run pg_dump: {error}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            !line.starts_with("\\restrict")
                && !line.starts_with("\\unrestrict")
                && !line.starts_with("SELECT pg_catalog.setval(")
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Reverts every applied stage on `copy` and compares the dump with `before`.
pub(crate) fn prove(runner: &Runner<'_>, copy: &Target, before: &str) -> RehearsedRevert {
    let report = match runner.revert(copy, &RevertOptions::default(), &Silent) {
        Ok(report) => report,
        Err(error) => {
            return RehearsedRevert {
                stages: vec![RevertProof {
                    id: "(revert)".into(),
                    proved: false,
                    differences: vec![format!("the revert failed: {error}")],
                }],
            }
        }
    };
    let differences = match application_dump(copy) {
        Ok(after) => differing_lines(before, &after),
        Err(error) => vec![format!("cannot dump the copy after the revert: {error}")],
    };
    let stages = report
        .stages
        .iter()
        .map(|stage| {
            let reverted = stage.status == StageStatus::Reverted;
            let mut lines = differences.clone();
            if !reverted {
                lines.insert(0, format!("not reverted: {}", stage.status.label()));
                lines.extend(report.summary.iter().cloned());
            }
            RevertProof {
                id: stage.id.clone(),
                proved: reverted && differences.is_empty(),
                differences: lines,
            }
        })
        .collect();
    RehearsedRevert { stages }
}

/// The lines only one dump has: `- ` before, `+ ` after, at most [`DIFFERENCES`].
fn differing_lines(before: &str, after: &str) -> Vec<String> {
    let (old, new): (BTreeSet<&str>, BTreeSet<&str>) =
        (before.lines().collect(), after.lines().collect());
    old.difference(&new)
        .map(|line| format!("- {line}"))
        .chain(new.difference(&old).map(|line| format!("+ {line}")))
        .take(DIFFERENCES)
        .collect()
}
