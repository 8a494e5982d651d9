//! The JSON documents whose bodies the command line assembles itself (`planrun.check`,
//! `planrun.transforms`, `planrun.error`, a command line clap refused included), and
//! [`json_schemas`]: every document planrun prints with its JSON Schema, as
//! `docs/schemas/` holds them.

use planrun_contract::{format, Document, Envelope, Format, OutcomeCode};
use planrun_engine::rehearse::RehearsalReport;
use planrun_engine::{
    FleetPlan, FleetRehearsal, FleetReport, FleetStatus, ResetReport, RunBody, StatusReport,
};
use planrun_plan::{
    Dag, JsonGraph, LabelInfo, Plan, PlanErrors, ProblemKind, StageLockImpact, StepKind, TableLock,
};
use planrun_transform::Registry;
use schemars::{JsonSchema, Schema};
use serde::Serialize;

/// Every document planrun prints, with its schema; `docs/schemas/<name>.schema.json`
/// holds each, and `tests/json_contract.rs` fails when one differs.
pub fn json_schemas() -> Vec<(&'static Format, Schema)> {
    use planrun_contract::document_schema as schema;
    vec![
        (&format::APPLY, schema::<Document<RunBody>>(&format::APPLY)),
        (&format::PLAN, schema::<Document<RunBody>>(&format::PLAN)),
        (
            &format::VERIFY,
            schema::<Document<RunBody>>(&format::VERIFY),
        ),
        (
            &format::REVERT,
            schema::<Document<RunBody>>(&format::REVERT),
        ),
        (
            &format::STATUS,
            schema::<Document<StatusReport>>(&format::STATUS),
        ),
        (
            &format::RESET,
            schema::<Document<ResetReport>>(&format::RESET),
        ),
        (
            &format::REHEARSAL,
            schema::<RehearsalReport>(&format::REHEARSAL),
        ),
        (
            &format::CHECK,
            schema::<Document<CheckReport>>(&format::CHECK),
        ),
        (
            &format::TRANSFORMS,
            schema::<Document<TransformList>>(&format::TRANSFORMS),
        ),
        (
            &format::GRAPH,
            schema::<Document<JsonGraph<'static>>>(&format::GRAPH),
        ),
        (
            &format::ERROR,
            schema::<Document<ErrorBody>>(&format::ERROR),
        ),
        (
            &format::FLEET_APPLY,
            schema::<Document<FleetReport>>(&format::FLEET_APPLY),
        ),
        (
            &format::FLEET_STATUS,
            schema::<Document<FleetStatus>>(&format::FLEET_STATUS),
        ),
        (
            &format::FLEET_PLAN,
            schema::<Document<FleetPlan>>(&format::FLEET_PLAN),
        ),
        (
            &format::FLEET_REHEARSAL,
            schema::<Document<FleetRehearsal>>(&format::FLEET_REHEARSAL),
        ),
    ]
}

/// The body of `planrun.check`: what the text summary says, as fields.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct CheckReport {
    pub plan: String,
    pub plan_file: String,
    pub description: Option<String>,
    pub counts: CheckCounts,
    /// The stages in the order `apply` runs them.
    pub order: Vec<CheckedStage>,
    /// Per stage in order, the locks and lock-impact findings of the offline analysis
    /// (`docs/lock-analysis.md`).
    pub lock_impact: Vec<StageLockImpact>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct CheckCounts {
    pub stages: usize,
    pub optional_stages: usize,
    /// Levels of the graph: stages of one level depend only on earlier levels.
    pub levels: usize,
    pub steps: usize,
    pub sql_steps: usize,
    pub transform_steps: usize,
    pub preconditions: usize,
    pub skip_rules: usize,
    /// Captured names (a capture query may capture several).
    pub captures: usize,
    pub verifications: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct CheckedStage {
    pub id: String,
    pub optional: bool,
    /// 0-based level in the graph.
    pub level: usize,
    /// The locks taken at the stage's start and held to its commit: its own and its
    /// transforms' declarations, merged.
    pub locks: Vec<TableLock>,
    /// Whether `planrun revert` can undo it (it declares `[[stage.revert]]` steps).
    pub reversible: bool,
    /// Why it cannot, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreversible_because: Option<String>,
}

impl CheckReport {
    /// The summary of a plan that passed every offline check.
    pub(crate) fn new(plan: &Plan, dag: &Dag, registry: &Registry) -> CheckReport {
        let stages = &plan.stages;
        let steps: Vec<_> = stages.iter().flat_map(|stage| &stage.steps).collect();
        let transform_steps = steps
            .iter()
            .filter(|step| matches!(step.kind, StepKind::Transform { .. }))
            .count();
        let count = |f: fn(&planrun_plan::Stage) -> usize| stages.iter().map(f).sum::<usize>();
        let levels = dag.levels();
        CheckReport {
            plan: plan.name.clone(),
            plan_file: plan.path.display().to_string(),
            description: plan.description.clone(),
            counts: CheckCounts {
                stages: stages.len(),
                optional_stages: stages.iter().filter(|stage| stage.optional).count(),
                levels: levels.len(),
                steps: steps.len(),
                sql_steps: steps.len() - transform_steps,
                transform_steps,
                preconditions: count(|s| s.preconditions.len()),
                skip_rules: count(|s| s.skip_if.len()),
                captures: count(|s| s.captures.iter().map(|c| c.names.len()).sum()),
                verifications: count(|s| s.verify.len()),
            },
            order: dag
                .order()
                .iter()
                .map(|&index| CheckedStage {
                    id: stages[index].id.clone(),
                    optional: stages[index].optional,
                    level: dag.level(index),
                    locks: stages[index].all_locks(registry),
                    reversible: irreversible(&stages[index]).is_none(),
                    irreversible_because: irreversible(&stages[index]),
                })
                .collect(),
            lock_impact: plan.lock_impact(dag, registry),
        }
    }
}

/// Why `stage` cannot be reverted; `None` when it can.
pub(crate) fn irreversible(stage: &planrun_plan::Stage) -> Option<String> {
    match stage.reversibility() {
        planrun_plan::Reversibility::Declared => None,
        planrun_plan::Reversibility::Irreversible(why) => Some(why),
    }
}

/// The body of `planrun.transforms`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct TransformList {
    /// The native transforms a plan can name with `transform = "..."`; empty in a
    /// binary built without any.
    pub transforms: Vec<TransformInfo>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct TransformInfo {
    pub name: String,
    pub version: String,
    pub summary: String,
    /// Whether it can run in batches (`mode = "batched"`, `docs/transforms.md`).
    pub batched: bool,
}

impl TransformList {
    pub(crate) fn new(registry: &Registry) -> TransformList {
        TransformList {
            transforms: registry
                .iter()
                .map(|transform| TransformInfo {
                    name: transform.name().to_owned(),
                    version: transform.version().to_owned(),
                    summary: transform.summary().to_owned(),
                    batched: transform.supports_batches(),
                })
                .collect(),
        }
    }
}

/// The body of `planrun.error`: why a command has no report to print.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ErrorBody {
    /// The command: `apply`, `plan`, `check`, ...
    pub command: String,
    /// The plan's name, `null` when it could not be read.
    pub plan: Option<String>,
    /// What went wrong, passwords redacted; stderr says it too.
    pub error: String,
    /// An invalid plan's problems, each as `planrun check` shows it (omitted when
    /// none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemReport>,
}

/// One problem in a plan.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ProblemReport {
    pub kind: ProblemKind,
    /// The diagnostic code, e.g. `plan::cycle`.
    pub code: String,
    pub message: String,
    pub help: Option<String>,
    /// Where in the plan file, 1-based.
    pub labels: Vec<LabelInfo>,
}

impl ErrorBody {
    pub(crate) fn new(command: &str, plan: Option<&str>, error: String) -> ErrorBody {
        ErrorBody {
            command: command.to_owned(),
            plan: plan.map(str::to_owned),
            error,
            problems: Vec::new(),
        }
    }

    /// The error of `command` on the invalid plan `errors` describes.
    pub(crate) fn invalid_plan(command: &str, errors: &PlanErrors) -> ErrorBody {
        ErrorBody {
            problems: errors
                .problems
                .iter()
                .map(|problem| ProblemReport {
                    kind: problem.kind,
                    code: problem.kind.code().to_owned(),
                    message: problem.message.clone(),
                    help: problem.help.clone(),
                    labels: errors.label_positions(problem),
                })
                .collect(),
            ..ErrorBody::new(command, None, errors.to_string())
        }
    }

    /// The document: `planrun.error`, its outcome the failure `exit_code` names.
    pub(crate) fn document(self, exit_code: i32) -> Document<ErrorBody> {
        Document::new(
            Envelope::generated_now(&format::ERROR, OutcomeCode::of_failure(exit_code)),
            self,
        )
    }
}

/// With `--format json` (or `--format=json`) among `args`, the `planrun.error`
/// document of a command line clap refused (an unknown option, `--lock-wait soon`),
/// exit 2, on stdout: a script that asked for JSON gets a document whatever it got
/// wrong. Its `command` is the first word that names one, else `planrun`; clap's
/// message, which may quote any argument, has its passwords hidden.
pub(crate) fn usage_error(args: &[std::ffi::OsString], error: &clap::Error) {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|arg| arg.to_str()).collect();
    let json = words.windows(2).any(|pair| pair == ["--format", "json"])
        || words.contains(&"--format=json");
    if !json {
        return;
    }
    let commands = <crate::args::Cli as clap::CommandFactory>::command();
    let command = words
        .iter()
        .find(|word| commands.find_subcommand(word).is_some())
        .copied()
        .unwrap_or("planrun");
    let message = error.render().to_string();
    let message = message.trim().trim_start_matches("error: ");
    crate::commands::print_json(
        &ErrorBody::new(command, None, planrun_engine::redact(message))
            .document(planrun_engine::exit_codes::USAGE),
    );
}
