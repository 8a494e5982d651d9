//! The plan's lock impact, offline: stage by stage in run order, the locks each stage
//! takes (declared ones, its transforms' and its SQL's, from `planrun-sql`'s analysis)
//! and the findings of the lock-impact rules, accepted or not by `allow`. A table an
//! earlier stage created stays new, and raises no lock finding, until a step fills it.

use schemars::JsonSchema;
use serde::Serialize;

use planrun_sql::{analyze_script, relation_key, AnalysisContext, LockMode, Rule};

use crate::allow::allowed;
use crate::dag::Dag;
use crate::model::{Plan, Stage, Step, StepKind, TransformCatalog};

/// One stage's locks and findings.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StageLockImpact {
    pub stage: String,
    pub transaction: bool,
    /// One per relation, in the combined mode of everything that locks it.
    pub locks: Vec<StageLock>,
    pub findings: Vec<StageFinding>,
    /// Locks on tables that are not new, stronger than the `strongest` of the
    /// stage's (or the plan's) `lock_budget`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub over_budget: Vec<String>,
}

/// A relation the stage locks.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StageLock {
    pub relation: String,
    pub mode: LockMode,
    /// New (created by the stage or the plan and not filled since) when the stage
    /// first locks it; in a transactional stage that lock is held to the commit, so
    /// the table stays new for the stage whatever the stage writes into it. A lock on
    /// it endangers no one.
    pub new: bool,
    /// Where: `stage`, a transform's name, or `file line N`.
    pub taken_by: Vec<String>,
    pub rewrites: bool,
    pub scans: bool,
}

/// A rule a statement of the stage breaks.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StageFinding {
    pub rule: Rule,
    pub relation: Option<String>,
    pub detail: String,
    /// `file line N`, `inline SQL of step x line N`, or `stage`.
    pub place: String,
    /// The `allow` reason that accepts it, if one does.
    pub allowed: Option<String>,
}

/// Whether `relation` is new when `stage` locks it, by the plan's lock analysis
/// `impact`: a table the plan created and had not filled, whose lock endangers no one
/// and is not held against a lock budget. Names compare as [`relation_key`] spells
/// them (`orders` is `public.orders`).
pub fn is_new_in(impact: &[StageLockImpact], stage: &str, relation: &str) -> bool {
    let key = relation_key(relation);
    impact
        .iter()
        .filter(|planned| planned.stage == stage)
        .flat_map(|planned| &planned.locks)
        .any(|lock| lock.new && relation_key(&lock.relation) == key)
}

impl Plan {
    /// Every stage's lock impact, in the order the stages run.
    pub fn lock_impact(&self, dag: &Dag, catalog: &dyn TransformCatalog) -> Vec<StageLockImpact> {
        self.lock_impact_knowing(dag, catalog, AnalysisContext::new())
    }

    /// [`Plan::lock_impact`] starting from what `known` says of the target (its column
    /// types, read by `planrun plan`), so that what offline analysis can only flag is
    /// decided.
    pub fn lock_impact_knowing(
        &self,
        dag: &Dag,
        catalog: &dyn TransformCatalog,
        mut context: AnalysisContext,
    ) -> Vec<StageLockImpact> {
        dag.order()
            .iter()
            .map(|&index| stage_impact(self, &self.stages[index], catalog, &mut context))
            .collect()
    }
}

fn stage_impact(
    plan: &Plan,
    stage: &Stage,
    catalog: &dyn TransformCatalog,
    context: &mut AnalysisContext,
) -> StageLockImpact {
    let lock_timeout = stage.timeouts.or(&plan.timeouts).lock_timeout.is_some();
    context.begin_stage(stage.transaction, lock_timeout);
    let mut impact = StageLockImpact {
        stage: stage.id.clone(),
        transaction: stage.transaction,
        locks: Vec::new(),
        findings: Vec::new(),
        over_budget: Vec::new(),
    };
    for lock in &stage.locks {
        let new = context.is_new(&lock.table);
        impact.lock(&lock.table, lock.mode, new, "stage");
    }
    for step in &stage.steps {
        if step.after_commit.is_some() && context.in_transaction() {
            // The stage has committed: its NOT VALID keys are validated in a later
            // transaction, as VALIDATE CONSTRAINT is meant to run.
            context.end_stage();
            context.begin_stage(true, lock_timeout);
        }
        match &step.kind {
            StepKind::Transform { name, params, .. } => {
                for lock in catalog.locks(name, params) {
                    let new = context.is_new(&lock.table);
                    impact.lock(&lock.table, lock.mode, new, name);
                    declared_lock_timeout(&mut impact, stage, step, &lock, new, context);
                    if lock.mode >= LockMode::RowExclusive {
                        context.note_written(&lock.table);
                    }
                }
            }
            StepKind::Sql { sql } => {
                let place = format!("inline SQL of step `{}`", step.name);
                let sql = crate::sql_rules::expanded_sql(sql, &plan.variables);
                impact.sql(stage, step, &sql, &place, context);
            }
            StepKind::SqlFile { path, resolved, .. } => {
                if let Ok(sql) = std::fs::read_to_string(resolved) {
                    let sql = crate::sql_rules::expanded_sql(&sql, &plan.variables);
                    impact.sql(stage, step, &sql, path, context);
                }
            }
        }
    }
    context.end_stage();
    let strongest = stage
        .lock_budget
        .as_ref()
        .or(plan.lock_budget.as_ref())
        .and_then(|budget| budget.strongest);
    if let Some(allowed) = strongest {
        impact.over_budget = impact
            .locks
            .iter()
            .filter(|lock| !lock.new && lock.mode > allowed)
            .map(|lock| {
                format!(
                    "{} on {} is stronger than the lock budget's {allowed}",
                    lock.mode, lock.relation
                )
            })
            .collect();
    }
    impact
}

/// A transform's declared lock on a live table, taken with no `lock_timeout`.
fn declared_lock_timeout(
    impact: &mut StageLockImpact,
    stage: &Stage,
    step: &Step,
    lock: &crate::locks::TableLock,
    new: bool,
    context: &mut AnalysisContext,
) {
    if context.lock_timeout() || new || !lock.mode.blocks_writes() {
        return;
    }
    if context.first_missing_lock_timeout() {
        let rule = Rule::RequireLockTimeout;
        impact.findings.push(StageFinding {
            rule,
            relation: Some(lock.table.clone()),
            detail: format!(
                "{} declares {} on `{}` with no lock_timeout",
                lock.declared_by, lock.mode, lock.table
            ),
            place: format!("step `{}`", step.name),
            allowed: allowed(stage, Some(step), rule.id()).map(str::to_owned),
        });
    }
}

impl StageLockImpact {
    fn lock(&mut self, relation: &str, mode: LockMode, new: bool, by: &str) -> &mut StageLock {
        let key = relation_key(relation);
        let position = match self
            .locks
            .iter()
            .position(|held| relation_key(&held.relation) == key)
        {
            Some(position) => {
                let held = &mut self.locks[position];
                held.mode = held.mode.combine(mode);
                // In a transaction the first lock is held to the commit: what the stage
                // writes into a new table meanwhile no one else sees, so it stays new.
                if !self.transaction {
                    held.new &= new;
                }
                position
            }
            None => {
                self.locks.push(StageLock {
                    relation: relation.to_owned(),
                    mode,
                    new,
                    taken_by: Vec::new(),
                    rewrites: false,
                    scans: false,
                });
                self.locks.len() - 1
            }
        };
        let held = &mut self.locks[position];
        if !held.taken_by.iter().any(|taken| taken == by) {
            held.taken_by.push(by.to_owned());
        }
        held
    }

    /// The locks and findings of one SQL text (parse errors are `check`'s to report).
    fn sql(
        &mut self,
        stage: &Stage,
        step: &Step,
        sql: &str,
        name: &str,
        context: &mut AnalysisContext,
    ) {
        let Ok(statements) = analyze_script(sql, context) else {
            return;
        };
        for statement in statements {
            let place = format!("{name} line {}", statement.line);
            let rewrites = &statement.impact.rewrites;
            let scans = &statement.impact.scans;
            for lock in &statement.impact.locks {
                let held = self.lock(&lock.relation, lock.mode, lock.new, &place);
                held.rewrites |= rewrites.contains(&lock.relation);
                held.scans |= scans.contains(&lock.relation);
            }
            for finding in statement.impact.findings {
                self.findings.push(StageFinding {
                    allowed: allowed(stage, Some(step), finding.rule.id()).map(str::to_owned),
                    rule: finding.rule,
                    relation: finding.relation,
                    detail: finding.detail,
                    place: place.clone(),
                });
            }
        }
    }
}
