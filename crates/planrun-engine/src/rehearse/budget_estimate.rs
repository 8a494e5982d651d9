//! `planrun plan` against a rehearsal: per stage and table, the lock the rehearsal
//! measured on the copy, its estimate on the target, and the stage's `lock_budget`
//! beside it, so that the budget is weighed before `apply`, not discovered during it.
//!
//! The rehearsal report is the one given with `plan --rehearsal FILE`, else the
//! newest `rehearsals/<plan>-*.json` (what `planrun rehearse` writes by default).

use std::path::Path;

use planrun_plan::{is_new_in, LockBudget, Plan, StageLockImpact};
use planrun_report::{BudgetEstimate, BudgetLimits, LockEstimate, StageBudgetEstimate};
use serde::Deserialize;

use crate::rehearse::estimate::stage_budget;

#[derive(Deserialize)]
struct RehearsalLocks {
    format: String,
    #[serde(default)]
    format_version: Option<u32>,
    plan: String,
    plan_checksum: String,
    finished_at: String,
    target_identity: RehearsedTarget,
    stages: Vec<RehearsedStageLocks>,
}

#[derive(Deserialize)]
struct RehearsedTarget {
    database: String,
}

#[derive(Deserialize)]
struct RehearsedStageLocks {
    id: String,
    #[serde(default)]
    locks: Vec<LockEstimate>,
    #[serde(default)]
    over_budget: Vec<String>,
}

/// Reads the rehearsal report `file` of `plan` (whose checksum is `checksum`) and
/// holds its lock estimates against the plan's budgets, marking the locks that
/// `impact` (the plan's lock analysis) finds on new tables; the error says why the
/// file cannot serve.
pub fn budget_estimate(
    plan: &Plan,
    checksum: &str,
    impact: &[StageLockImpact],
    file: &Path,
) -> Result<BudgetEstimate, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let report: RehearsalLocks = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not a rehearsal report: {error}", file.display()))?;
    if !crate::rehearse::report::readable_format(&report.format, report.format_version) {
        return Err(format!(
            "{} is a `{}` document, not a rehearsal report",
            file.display(),
            report.format
        ));
    }
    if report.plan != plan.name {
        return Err(format!(
            "{} is a rehearsal of plan `{}`, not `{}`",
            file.display(),
            report.plan,
            plan.name
        ));
    }
    let stages = report
        .stages
        .into_iter()
        .filter(|stage| !stage.locks.is_empty())
        .map(|stage| {
            let budget = stage_budget(plan, &stage.id).map(limits);
            let locks = stage
                .locks
                .into_iter()
                .map(|mut lock| {
                    lock.new_table = is_new_in(impact, &stage.id, &lock.table);
                    lock
                })
                .collect();
            StageBudgetEstimate {
                id: stage.id,
                budget,
                locks,
                over_budget: stage.over_budget,
            }
        })
        .collect();
    Ok(BudgetEstimate {
        file: file.display().to_string(),
        rehearsed_at: report.finished_at,
        same_plan: report.plan_checksum == checksum,
        rehearsed_database: report.target_identity.database,
        stages,
    })
}

fn limits(budget: &LockBudget) -> BudgetLimits {
    BudgetLimits {
        strongest: budget.strongest.map(|mode| mode.to_string()),
        blocks_reads_ms: budget.blocks_reads.as_ref().map(|limit| limit.millis()),
        blocks_writes_ms: budget.blocks_writes.as_ref().map(|limit| limit.millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock on a table the plan created is marked as not held against the budget,
    /// the others are not; the stage's budget is the plan's when it has none.
    #[test]
    fn locks_on_new_tables_are_marked_and_the_budget_shown() {
        let text = r#"
[plan]
name = "fill"
lock_budget = { blocks_reads = "1s" }
[[stage]]
id = "create"
[[stage.step]]
sql = "CREATE TABLE fresh (id bigint)"
[[stage]]
id = "fill"
depends_on = ["create"]
[[stage.step]]
sql = "LOCK TABLE fresh IN ACCESS EXCLUSIVE MODE; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"
"#;
        let plan = Plan::parse(Path::new("plan.toml"), text.to_owned(), None).unwrap();
        let dag = planrun_plan::Dag::build(&plan).unwrap();
        let impact = plan.lock_impact(&dag, &planrun_transform::Registry::new());
        let lock = |table: &str| {
            serde_json::json!({"table": table, "strongest": "AccessExclusiveLock",
                "rewritten": false, "estimated_blocked_reads_ms": 5000,
                "estimated_blocked_writes_ms": 5000})
        };
        let report = serde_json::json!({
            "format": crate::rehearse::report::FORMAT,
            "format_version": planrun_contract::format::REHEARSAL.version,
            "plan": "fill", "plan_checksum": "abc", "finished_at": "2026-12-02T10:00:00+00:00",
            "target_identity": {"database": "app"},
            "stages": [{"id": "fill", "locks": [lock("public.fresh"), lock("public.orders")],
                        "over_budget": ["public.orders: reads blocked ~5000 ms"]}],
        });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fill-20261202_100000.json");
        std::fs::write(&file, report.to_string()).unwrap();
        let estimate = budget_estimate(&plan, "abc", &impact, &file).unwrap();
        assert!(estimate.same_plan);
        let stage = &estimate.stages[0];
        assert_eq!(stage.budget.as_ref().unwrap().blocks_reads_ms, Some(1000));
        let marked: Vec<(&str, bool)> = stage
            .locks
            .iter()
            .map(|lock| (lock.table.as_str(), lock.new_table))
            .collect();
        assert_eq!(marked, [("public.fresh", true), ("public.orders", false)]);
    }
}
