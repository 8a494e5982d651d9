//! `status --fleet`: each target's ledger (the engine's `status`), and the targets
//! grouped by a fingerprint of the schema the plan touches (the tables whose names
//! the plan's SQL holds, as the rehearsal counts them), so that the one tenant whose
//! schema differs is named before the rollout meets it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use planrun_engine::{FingerprintGroup, FleetStatus, Runner, Target, TargetStatus};
use sha2::{Digest, Sha256};

use crate::model::Fleet;
use crate::resolve::ResolvedTarget;

/// The fleet's status, read with at most `fleet.max_parallel` targets at once.
pub fn fleet_status(
    fleet: &Fleet,
    runner: &Runner<'_>,
    plan: &planrun_plan::Plan,
    targets: &[ResolvedTarget],
) -> FleetStatus {
    let words =
        planrun_engine::rehearse::plan_words(plan.stages.iter(), plan.setup_sql_file.as_ref())
            .unwrap_or_default();
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<(usize, TargetStatus)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..fleet.max_parallel.min(targets.len()).max(1) {
            scope.spawn(|| loop {
                let index = {
                    let mut next = next
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *next += 1;
                    *next - 1
                };
                let Some(resolved) = targets.get(index) else {
                    return;
                };
                let status = target_status(runner, resolved, &words);
                results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((index, status));
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(index, _)| *index);
    let targets: Vec<TargetStatus> = results.into_iter().map(|(_, status)| status).collect();
    let (groups, outliers) = group(&targets);
    FleetStatus {
        plan: plan.name.clone(),
        fleet: fleet.path.display().to_string(),
        targets,
        groups,
        outliers,
    }
}

fn target_status(
    runner: &Runner<'_>,
    resolved: &ResolvedTarget,
    words: &BTreeSet<String>,
) -> TargetStatus {
    let mut status = TargetStatus {
        name: resolved.name.clone(),
        host: resolved.host.clone(),
        reachable: false,
        error: None,
        fingerprint: None,
        stages: Vec::new(),
        last_run: None,
        last_run_at: None,
    };
    let target = match &resolved.target {
        Ok(target) => target,
        Err(reason) => {
            status.error = Some(reason.clone());
            return status;
        }
    };
    match planrun_engine::status(runner, target) {
        Ok(report) => {
            status.reachable = true;
            status.stages = report.stages;
            if let Some(run) = report.recent_runs.first() {
                status.last_run = Some(run.outcome.clone());
                status.last_run_at = Some(run.started_at.clone());
            }
        }
        Err(error) => {
            status.error = Some(planrun_engine::redact(&error.to_string()));
            return status;
        }
    }
    match fingerprint(target, words) {
        Ok(fingerprint) => status.fingerprint = Some(fingerprint),
        Err(error) => status.error = Some(planrun_engine::redact(&error)),
    }
    status
}

/// SHA-256 of every column (schema, table, name, type, not null) of the tables the
/// plan names, in order; the first 16 hex digits.
pub(crate) fn fingerprint(target: &Target, words: &BTreeSet<String>) -> Result<String, String> {
    let mut client = target
        .connect("planrun status --fleet")
        .map_err(|error| error.to_string())?;
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                    pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema', 'planrun']) \
               AND n.nspname::text NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2, a.attnum",
            &[],
        )
        .map_err(|error| format!("cannot read the catalog: {error}"))?;
    let mut hash = Sha256::new();
    for row in rows {
        let table: String = row.get(1);
        if !words.contains(&table.to_ascii_lowercase()) {
            continue;
        }
        let (schema, column, kind, not_null): (String, String, String, bool) =
            (row.get(0), row.get(2), row.get(3), row.get(4));
        hash.update(format!("{schema}.{table}.{column} {kind} {not_null}\n"));
    }
    Ok(hex::encode(hash.finalize())[..16].to_owned())
}

/// Targets by fingerprint, largest group first; outliers are the targets outside
/// the largest group.
fn group(targets: &[TargetStatus]) -> (Vec<FingerprintGroup>, Vec<String>) {
    let mut by_print: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for target in targets {
        if let Some(print) = &target.fingerprint {
            by_print
                .entry(print.clone())
                .or_default()
                .push(target.name.clone());
        }
    }
    let mut groups: Vec<FingerprintGroup> = by_print
        .into_iter()
        .map(|(fingerprint, targets)| FingerprintGroup {
            fingerprint,
            targets,
        })
        .collect();
    groups.sort_by(|a, b| {
        b.targets
            .len()
            .cmp(&a.targets.len())
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let outliers = groups
        .iter()
        .skip(1)
        .flat_map(|group| group.targets.iter().cloned())
        .collect();
    (groups, outliers)
}
