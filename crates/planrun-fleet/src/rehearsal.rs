//! `rehearse --fleet`: one rehearsal per schema-fingerprint group (`status.rs`'s
//! fingerprint), of the group's first target in file order, each report file written
//! as `planrun rehearse` writes it; and the fleet's record of which report stands
//! for which group (`<plan>-fleet.json` in the report directory), which
//! `apply --fleet --require-rehearsal DIR` reads to check each target against its
//! group's rehearsal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use planrun_engine::rehearse::{self, RehearseOptions};
use planrun_engine::{
    exit_codes, FleetRehearsal, PrivateDir, RehearsedGroup, Runner, Silent, Target,
};

use crate::model::Fleet;
use crate::pool::within_limits;
use crate::resolve::ResolvedTarget;
use crate::status::fingerprint;

/// The fleet's record of its rehearsals in `dir`.
pub fn record_path(dir: &Path, plan: &str) -> PathBuf {
    dir.join(format!("{plan}-fleet.json"))
}

/// Each target's fingerprint, or why it has none, read within the fleet's limits.
pub fn fingerprints(
    fleet: &Fleet,
    plan: &planrun_plan::Plan,
    targets: &[ResolvedTarget],
) -> Vec<Result<String, String>> {
    let words = plan_words(plan);
    let all: Vec<usize> = (0..targets.len()).collect();
    within_limits(fleet, targets, &all, |resolved| match &resolved.target {
        Ok(target) => fingerprint(target, &words).map_err(|e| planrun_engine::redact(&e)),
        Err(reason) => Err(reason.clone()),
    })
}

fn plan_words(plan: &planrun_plan::Plan) -> BTreeSet<String> {
    rehearse::plan_words(plan.stages.iter(), plan.setup_sql_file.as_ref()).unwrap_or_default()
}

/// Rehearses one target per fingerprint group, several at once within the fleet's
/// `max_parallel` and `max_parallel_per_host` (the queue `apply --fleet` uses: a
/// rehearsal reads its target's server with `pg_dump`, and runs a throwaway cluster
/// on this machine), writes each report and the fleet's record into `dir`; the
/// summary (groups largest first, as if rehearsed one after another) and the exit
/// code (0 when every group's rehearsal passed, else the first failing one's in that
/// order, 1 when a target could not be fingerprinted).
pub fn rehearse_fleet(
    fleet: &Fleet,
    runner: &Runner<'_>,
    plan: &planrun_plan::Plan,
    targets: &[ResolvedTarget],
    options: &RehearseOptions,
    dir: &PrivateDir,
    note: &(dyn Fn(&str) + Sync),
) -> (FleetRehearsal, i32) {
    let prints = fingerprints(fleet, plan, targets);
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (index, print) in prints.iter().enumerate() {
        match print {
            Ok(print) => groups.entry(print).or_default().push(index),
            Err(reason) => unreachable.push(format!("{}: {reason}", targets[index].name)),
        }
    }
    let mut ordered: Vec<(&str, Vec<usize>)> = groups.into_iter().collect();
    ordered.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
    let mut code = if unreachable.is_empty() {
        exit_codes::SUCCESS
    } else {
        exit_codes::ERROR
    };
    let representatives: Vec<usize> = ordered.iter().map(|(_, members)| members[0]).collect();
    let rehearsed = within_limits(fleet, targets, &representatives, |representative| {
        let (print, members) = ordered
            .iter()
            .find(|(_, members)| targets[members[0]].name == representative.name)
            .expect("every representative stands for its group");
        note(&format!(
            "schema {print}: rehearsing {} for {} targets",
            representative.name,
            members.len()
        ));
        rehearse_group(runner, targets, print, members, options, dir)
    });
    for group in &rehearsed {
        if !group.passed && code == exit_codes::SUCCESS {
            code = group.exit_code;
        }
    }
    let record = FleetRehearsal {
        plan: plan.name.clone(),
        plan_checksum: runner.plan_checksum(),
        fleet: fleet.path.display().to_string(),
        groups: rehearsed,
        unreachable,
    };
    if let Ok(text) = serde_json::to_string_pretty(&record) {
        let name = format!("{}-fleet.json", plan.name);
        if let Err(error) = dir.replace(&name, (text + "\n").as_bytes()) {
            note(&format!(
                "error: cannot write the fleet's record {name}: {error}"
            ));
            code = exit_codes::ERROR;
        }
    }
    (record, code)
}

fn rehearse_group(
    runner: &Runner<'_>,
    targets: &[ResolvedTarget],
    print: &str,
    members: &[usize],
    options: &RehearseOptions,
    dir: &PrivateDir,
) -> RehearsedGroup {
    let representative = &targets[members[0]];
    let mut group = RehearsedGroup {
        fingerprint: print.to_owned(),
        representative: representative.name.clone(),
        database: String::new(),
        targets: members.iter().map(|&i| targets[i].name.clone()).collect(),
        report: None,
        outcome: "error".into(),
        exit_code: exit_codes::ERROR,
        passed: false,
        message: None,
    };
    let Ok(target) = &representative.target else {
        return group;
    };
    group.database = rehearse::database_name(target);
    match rehearse_one(runner, target, options, dir) {
        Ok((file, outcome, code)) => {
            group.report = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            group.outcome = outcome;
            group.exit_code = code;
            group.passed = code == exit_codes::SUCCESS;
        }
        Err((code, message)) => {
            group.exit_code = code;
            group.message = Some(planrun_engine::redact(&message));
        }
    }
    group
}

fn rehearse_one(
    runner: &Runner<'_>,
    target: &Target,
    options: &RehearseOptions,
    dir: &PrivateDir,
) -> Result<(PathBuf, String, i32), (i32, String)> {
    let failed = |error: rehearse::RehearseError| (error.exit_code(), error.to_string());
    let rehearsal =
        rehearse::rehearse(runner, target, options, &Silent, &|_| {}).map_err(failed)?;
    let file = rehearse::write_report(&rehearsal.report, dir).map_err(failed)?;
    let envelope = &rehearsal.report.envelope;
    Ok((
        file,
        envelope.outcome.as_str().to_owned(),
        envelope.exit_code,
    ))
}

/// What `apply --fleet --require-rehearsal DIR` needs besides the fleet: the stages
/// this apply selects and how old a rehearsal may be.
pub struct RehearsalNeed<'a> {
    pub dir: &'a Path,
    pub plan: &'a planrun_plan::Plan,
    pub plan_checksum: &'a str,
    pub stages: &'a [&'a str],
    pub max_age: std::time::Duration,
}

/// The targets refused by `--require-rehearsal DIR`, each with why: those whose
/// fingerprint no passing rehearsal of the fleet's record covers, or whose group's
/// report the single-database gate refuses (plan changed, too old, stages left
/// out). `Err` when the record cannot be read at all.
pub fn refused_targets(
    fleet: &Fleet,
    targets: &[ResolvedTarget],
    need: &RehearsalNeed<'_>,
) -> Result<BTreeMap<String, String>, String> {
    let path = record_path(need.dir, &need.plan.name);
    let record: FleetRehearsal = std::fs::read_to_string(&path)
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|error| error.to_string()))
        .map_err(|reason| {
            format!(
                "cannot read the fleet's rehearsal record {}: {reason}; run `planrun rehearse {} --fleet {} --report-dir {}` first",
                path.display(),
                need.plan.path.display(),
                fleet.path.display(),
                need.dir.display()
            )
        })?;
    let mut verdicts: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut refused = BTreeMap::new();
    let prints = fingerprints(fleet, need.plan, targets);
    for (resolved, print) in targets.iter().zip(prints) {
        let why = match print {
            Err(reason) => Some(format!("its schema cannot be fingerprinted: {reason}")),
            Ok(print) => verdicts
                .entry(print.clone())
                .or_insert_with(|| group_verdict(&record, &print, need))
                .clone(),
        };
        if let Some(why) = why {
            refused.insert(resolved.name.clone(), why);
        }
    }
    Ok(refused)
}

/// Why the group of fingerprint `print` has no rehearsal this apply may rely on.
fn group_verdict(record: &FleetRehearsal, print: &str, need: &RehearsalNeed<'_>) -> Option<String> {
    let Some(group) = record
        .groups
        .iter()
        .find(|group| group.fingerprint == print)
    else {
        return Some(format!(
            "no rehearsal of its schema (fingerprint {print}) in the fleet's record; rehearse the fleet again"
        ));
    };
    let Some(report) = group.report.as_deref().filter(|_| group.passed) else {
        return Some(format!(
            "the rehearsal of its schema (fingerprint {print}, on {}) did not pass: {}",
            group.representative,
            group.message.as_deref().unwrap_or(&group.outcome)
        ));
    };
    let refusals = rehearse::check_rehearsal(
        &need.dir.join(report),
        &rehearse::RehearsalRequirement {
            plan: &need.plan.name,
            plan_checksum: need.plan_checksum,
            database: &group.database,
            stages: need.stages,
            max_age: need.max_age,
            now: rehearse::now(),
        },
    );
    if refusals.is_empty() {
        return None;
    }
    let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    Some(format!(
        "its schema's rehearsal {report} (on {}) refused: {}",
        group.representative,
        reasons.join("; ")
    ))
}
