//! The prepared plan: everything derivable from the plan computed once, when a
//! `Runner` is made, so that no command looks a stage up by its position and resolves
//! it again. Per stage: its definition and checksum (and the forms older planruns
//! recorded), the lock-analysis findings its `allow` accepts, its batched step, and
//! its timeouts, lock budget, retry schedule and locks resolved stage over plan.

use planrun_plan::{
    merge_locks, Dag, LockBudget, LockRetries, Plan, Stage, StepKind, TableLock, Timeouts,
};
use planrun_sql::{analyze_script, expand_psql, AnalysisContext};
use planrun_transform::{batch_settings, transform_params, BatchSettings, Registry, SourceTable};

use crate::checksum::{self, Definition, StageDefinition};
use crate::error::EngineError;

/// A plan ready to run: validated, ordered, each stage prepared.
pub(crate) struct PreparedPlan<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) registry: &'a Registry,
    pub(crate) dag: Dag,
    /// The plan's `setup_sql_file`, read once.
    pub(crate) setup_sql: Option<String>,
    /// In plan order (a stage's `position`).
    pub(crate) stages: Vec<PreparedStage<'a>>,
}

/// One stage with everything the plan says about it resolved.
pub(crate) struct PreparedStage<'a> {
    pub(crate) stage: &'a Stage,
    /// Its position in the plan file.
    pub(crate) position: usize,
    /// Its definition, SQL fingerprinted by tokens.
    pub(crate) definition: StageDefinition,
    pub(crate) checksum: String,
    /// The definitions and checksums older planruns recorded for it
    /// (`checksum::former_definitions`); the first is today's checksum with throttles.
    pub(crate) former_definitions: Vec<StageDefinition>,
    pub(crate) former_checksums: Vec<String>,
    /// The lock-analysis findings its `allow` accepts, with their reasons: recorded in
    /// the ledger with each result, so that who accepted what stays known.
    pub(crate) accepted_findings: serde_json::Value,
    pub(crate) batched: Option<BatchedStep>,
    /// The stage's timeouts, falling back to the plan's.
    pub(crate) timeouts: Timeouts,
    /// The stage's lock budget, or the plan's.
    pub(crate) lock_budget: Option<&'a LockBudget>,
    /// The stage's retry schedule, the plan's, or the default.
    pub(crate) lock_retries: LockRetries,
    /// Its own locks and its transforms', one per table.
    pub(crate) all_locks: Vec<TableLock>,
}

/// The batched step of a stage: its position, settings and the transform's sources.
pub(crate) struct BatchedStep {
    pub position: usize,
    pub settings: BatchSettings,
    pub sources: Vec<SourceTable>,
}

impl<'a> PreparedPlan<'a> {
    /// Prepares `plan` (already loaded with [`Plan::load_checked`]).
    pub(crate) fn new(
        plan: &'a Plan,
        registry: &'a Registry,
    ) -> Result<PreparedPlan<'a>, EngineError> {
        let dag = Dag::build(plan)
            .map_err(|_| EngineError::Selection("the plan has a dependency cycle".into()))?;
        let setup_sql = match &plan.setup_sql_file {
            Some((_, _, resolved)) => Some(checksum::read_sql_file(resolved)?),
            None => None,
        };
        let findings = accepted_findings(plan, &dag, registry);
        let stages = plan
            .stages
            .iter()
            .zip(findings)
            .enumerate()
            .map(|(position, (stage, accepted_findings))| {
                PreparedStage::new(plan, registry, stage, position, accepted_findings)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreparedPlan {
            plan,
            registry,
            dag,
            setup_sql,
            stages,
        })
    }

    /// The plan checksum: its stages' checksums in order, throttles included. Unlike
    /// a stage's, it names the plan exactly as written: a rehearsal is evidence for
    /// the batch sizes and pauses it ran with, so retuning them asks for a new one
    /// (`rehearsal_gate.rs`), and a rehearsal recorded before throttles left the stage
    /// checksums still counts.
    pub(crate) fn plan_checksum(&self) -> String {
        let mut all: Definition = Definition::new();
        for stage in &self.stages {
            all.insert(stage.id().to_owned(), stage.former_checksums[0].clone());
        }
        if let Some(setup) = &self.setup_sql {
            all.insert("(setup)".into(), setup.clone());
        }
        checksum::checksum(&all)
    }

    /// The stage with this id.
    pub(crate) fn stage(&self, id: &str) -> Option<&PreparedStage<'a>> {
        self.plan
            .stage_position(id)
            .map(|position| &self.stages[position])
    }

    /// The stages in run (DAG) order.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = &PreparedStage<'a>> {
        self.dag
            .order()
            .iter()
            .map(|&position| &self.stages[position])
    }
}

impl<'a> PreparedStage<'a> {
    fn new(
        plan: &'a Plan,
        registry: &Registry,
        stage: &'a Stage,
        position: usize,
        accepted_findings: serde_json::Value,
    ) -> Result<PreparedStage<'a>, EngineError> {
        let definition = checksum::definition(stage, registry)?;
        let former_definitions = checksum::former_definitions(stage, registry)?;
        Ok(PreparedStage {
            stage,
            position,
            checksum: checksum::checksum(&definition.entries),
            former_checksums: former_definitions
                .iter()
                .map(|former| checksum::checksum(&former.entries))
                .collect(),
            definition,
            former_definitions,
            accepted_findings,
            batched: batched_step(stage, registry)?,
            timeouts: stage.timeouts.or(&plan.timeouts),
            lock_budget: plan.lock_budget_of(stage),
            lock_retries: stage
                .lock_retries
                .clone()
                .or_else(|| plan.lock_retries.clone())
                .unwrap_or_default(),
            all_locks: stage.all_locks(registry),
        })
    }

    /// The revert view of a stage (`Stage::revert_view`), prepared to run as its
    /// revert: the same resolved timeouts, retries and budget, its own steps' SQL read
    /// and locks merged. Its checksum names the revert's definition, not the stage's.
    pub(crate) fn revert_of(
        plan: &'a Plan,
        registry: &Registry,
        view: &'a Stage,
        position: usize,
    ) -> Result<PreparedStage<'a>, EngineError> {
        let mut prepared = PreparedStage::new(
            plan,
            registry,
            view,
            position,
            serde_json::Value::Array(Vec::new()),
        )?;
        // A revert precondition that guards against a loss (no note the `DROP TABLE`
        // would take with it) holds only while nobody can write what it read: so the
        // locks the revert's SQL will take, on tables that exist before it, are taken
        // with the stage's, before its checks, not statement by statement after them.
        let sql_locks = revert_sql_locks(plan, view)?;
        prepared.all_locks = merge_locks(
            std::mem::take(&mut prepared.all_locks)
                .into_iter()
                .chain(sql_locks),
        );
        Ok(prepared)
    }

    pub(crate) fn id(&self) -> &'a str {
        &self.stage.id
    }

    /// Whether `recorded`, a checksum the ledger holds for this stage, is its
    /// definition: today's, or the same definition as an older planrun recorded it
    /// (so an upgrade shows no drift).
    pub(crate) fn matches_recorded(&self, recorded: &str) -> bool {
        recorded == self.checksum
            || self
                .former_checksums
                .iter()
                .any(|former| former == recorded)
    }
}

/// The stage's batched step, if it has one; an error when the stage cannot be batched.
fn batched_step(stage: &Stage, registry: &Registry) -> Result<Option<BatchedStep>, EngineError> {
    let mut found: Option<BatchedStep> = None;
    for (position, step) in stage.steps.iter().enumerate() {
        let StepKind::Transform { params, .. } = &step.kind else {
            continue;
        };
        let Some(settings) =
            batch_settings(params).map_err(|reason| not_batchable(&stage.id, &reason))?
        else {
            continue;
        };
        if found.is_some() {
            return Err(not_batchable(
                &stage.id,
                "a stage may have only one batched step",
            ));
        }
        if !stage.transaction {
            return Err(not_batchable(
                &stage.id,
                "a batched step needs transaction = true: each batch is a transaction",
            ));
        }
        found = Some(BatchedStep {
            position,
            settings,
            sources: Vec::new(),
        });
    }
    if let Some(batched) = &mut found {
        let StepKind::Transform { name, params, .. } = &stage.steps[batched.position].kind else {
            unreachable!("only transform steps are batched");
        };
        if let Some(transform) = registry.get(name) {
            batched.sources = transform.sources(&transform_params(params));
            if batched.sources.is_empty() {
                return Err(not_batchable(
                    &stage.id,
                    &format!("transform `{name}` declares no source tables, so the application's changes during the stage could not be captured"),
                ));
            }
        }
    }
    Ok(found)
}

fn not_batchable(stage: &str, reason: &str) -> EngineError {
    EngineError::Selection(format!("stage `{stage}` cannot run batched: {reason}"))
}

/// Per stage (in plan order), the findings of the lock analysis that its `allow`
/// accepts: `[{rule, reason, relation, place}]`.
fn accepted_findings(plan: &Plan, dag: &Dag, registry: &Registry) -> Vec<serde_json::Value> {
    let impact = plan.lock_impact(dag, registry);
    plan.stages
        .iter()
        .map(|stage| {
            let accepted: Vec<serde_json::Value> = impact
                .iter()
                .filter(|planned| planned.stage == stage.id)
                .flat_map(|planned| &planned.findings)
                .filter_map(|finding| {
                    let reason = finding.allowed.as_ref()?;
                    Some(serde_json::json!({
                        "rule": finding.rule.id(),
                        "reason": reason,
                        "relation": finding.relation,
                        "place": finding.place,
                    }))
                })
                .collect();
            serde_json::Value::Array(accepted)
        })
        .collect()
}

/// A prepared stage reads as the plan's stage it was prepared from; its own fields
/// (`timeouts`, `lock_budget`, `lock_retries`) are the resolved ones.
impl std::ops::Deref for PreparedStage<'_> {
    type Target = Stage;
    fn deref(&self) -> &Stage {
        self.stage
    }
}

/// Who asked for a lock [`revert_sql_locks`] found: the revert's own SQL, read by the
/// lock analysis, not the plan; `stage_locks.rs` takes it only where `LOCK TABLE` can
/// (an index or a sequence the SQL names is locked by its statement, under its table's).
pub(crate) const REVERT_SQL: &str = "revert SQL";

/// The table locks the SQL steps of a revert view take as they run, on tables they
/// did not create (as `planrun-sql`'s lock analysis reads the statements, the plan's
/// variables expanded). A statement the analysis cannot read adds none: the locks the
/// stage declares still hold.
fn revert_sql_locks(plan: &Plan, view: &Stage) -> Result<Vec<TableLock>, EngineError> {
    let mut context = AnalysisContext::new();
    let mut locks = Vec::new();
    for step in &view.steps {
        let text = match &step.kind {
            StepKind::Sql { sql } => sql.clone(),
            StepKind::SqlFile { resolved, .. } => checksum::read_sql_file(resolved)?,
            StepKind::Transform { .. } => continue,
        };
        let Ok(script) = expand_psql(&text, &plan.variables) else {
            continue;
        };
        let Ok(statements) = analyze_script(&script.sql, &mut context) else {
            continue;
        };
        locks.extend(
            statements
                .into_iter()
                .flat_map(|statement| statement.impact.locks)
                .filter(|lock| !lock.new)
                .map(|lock| TableLock {
                    table: lock.relation,
                    mode: lock.mode,
                    declared_by: REVERT_SQL.to_owned(),
                    span: None,
                }),
        );
    }
    Ok(locks)
}
