//! Structural checks over a plan whose shape is valid (ids, dependencies, cycles,
//! optional stages, captures) and environment checks (SQL files on disk, transforms
//! in the registry). Each returns every problem it finds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::dag::Dag;
use crate::model::{Plan, Span, StepKind, TransformCatalog};
use crate::problem::{PlanErrors, PlanProblem, ProblemKind};
use crate::suggest::closest;

pub(crate) fn structure(plan: &Plan) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, stage) in plan.stages.iter().enumerate() {
        if let Some(&first) = first_seen.get(stage.id.as_str()) {
            problems.push(
                PlanProblem::new(
                    ProblemKind::DuplicateId,
                    format!("stage id `{}` is used twice", stage.id),
                )
                .label(stage.id_span.clone(), "second use")
                .label(plan.stages[first].id_span.clone(), "first defined here")
                .help("give every stage a unique id"),
            );
        } else {
            first_seen.insert(&stage.id, index);
        }
    }

    for stage in &plan.stages {
        for checks in [
            &stage.preconditions,
            &stage.verify,
            &stage.revert.preconditions,
            &stage.revert.verify,
        ] {
            let mut seen: BTreeMap<&str, &Span> = BTreeMap::new();
            for check in checks {
                if let Some(first) = seen.insert(&check.name, &check.span) {
                    problems.push(
                        PlanProblem::new(
                            ProblemKind::DuplicateCheck,
                            format!(
                                "stage `{}` has two checks named `{}`",
                                stage.id, check.name
                            ),
                        )
                        .label(check.span.clone(), "second check")
                        .label(first.clone(), "first check")
                        .help("name each precondition and verification of a stage uniquely: reports, the ledger and drift tell them apart by name"),
                    );
                }
            }
        }
        if let (false, Some(lock)) = (stage.transaction, stage.locks.first()) {
            problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidValue,
                    format!("stage `{}` declares locks but transaction = false", stage.id),
                )
                .label(lock.span.clone().unwrap_or(stage.id_span.clone()), "this lock")
                .help("a lock is held until its transaction ends: a stage outside a transaction holds none; remove transaction = false or the locks"),
            );
        }
        let placed = stage
            .verify
            .iter()
            .map(|check| (check, &stage.steps))
            .chain(
                stage
                    .revert
                    .verify
                    .iter()
                    .map(|check| (check, &stage.revert.steps)),
            );
        for (check, steps) in placed {
            let Some((step, span)) = &check.after_step else {
                continue;
            };
            if !steps.iter().any(|s| &s.name == step) {
                let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!(
                            "`after_step = \"{step}\"` names no step of stage `{}`",
                            stage.id
                        ),
                    )
                    .label(span.clone(), "no such step")
                    .help(match closest(step, names.iter().copied()) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("the stage's steps: {}", names.join(", ")),
                    }),
                );
            }
        }
        problems.extend(batched_revert_problems(stage));
        let batched: Vec<&Span> = stage
            .steps
            .iter()
            .filter_map(|step| match &step.kind {
                StepKind::Transform {
                    params,
                    params_span,
                    ..
                } if params.get("mode").and_then(toml::Value::as_str) == Some("batched") => {
                    Some(params_span)
                }
                _ => None,
            })
            .collect();
        if let (Some(first), false) = (batched.first(), stage.transaction) {
            problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidParams,
                    format!(
                        "stage `{}` has a batched step but transaction = false",
                        stage.id
                    ),
                )
                .label((*first).clone(), "mode = \"batched\"")
                .help("each batch is a transaction: remove transaction = false, or run the step unbatched"),
            );
        }
        for extra in batched.iter().skip(1) {
            problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidParams,
                    format!("stage `{}` has more than one batched step", stage.id),
                )
                .label((*extra).clone(), "another batched step")
                .label(batched[0].clone(), "the first")
                .help("split the stage: a stage may have only one batched step"),
            );
        }
    }

    let ids: Vec<&str> = plan.stages.iter().map(|stage| stage.id.as_str()).collect();
    let positions = plan.stage_positions();
    for stage in &plan.stages {
        for (dependency, span) in &stage.depends_on {
            match positions
                .get(dependency.as_str())
                .map(|&at| &plan.stages[at])
            {
                None => {
                    let help =
                        match closest(dependency, ids.iter().copied().filter(|id| *id != stage.id))
                        {
                            Some(id) => format!("did you mean `{id}`?"),
                            None => format!("stages in this plan: {}", ids.join(", ")),
                        };
                    problems.push(
                        PlanProblem::new(
                            ProblemKind::UnknownDependency,
                            format!("stage `{}` depends on `{dependency}`, which is not a stage in this plan", stage.id),
                        )
                        .label(span.clone(), "no such stage")
                        .help(help),
                    );
                }
                Some(target) if target.optional && !stage.optional => problems.push(
                    PlanProblem::new(
                        ProblemKind::RequiredDependsOnOptional,
                        format!(
                            "required stage `{}` depends on optional stage `{dependency}`",
                            stage.id
                        ),
                    )
                    .label(span.clone(), "optional dependency")
                    .label(stage.id_span.clone(), "required stage")
                    .help(format!(
                        "mark `{}` optional too, or make `{dependency}` required",
                        stage.id
                    )),
                ),
                Some(_) => {}
            }
        }
    }

    if let Err(cycles) = Dag::build(plan) {
        for cycle in cycles {
            problems.push(cycle_problem(plan, &cycle));
        }
    }
    problems.extend(capture_problems(plan, &positions));
    problems
}

/// Which stages depend on which, directly or not, asked only of the stages whose
/// captures other stages read: one walk per such stage, remembered, so that the
/// capture check costs (stages + dependencies) times the capturing stages, where a
/// walk per reading stage, each lookup a scan, made a chain cubic. Defined on a plan
/// with a cycle too, so that a cycle does not hide the plan's capture problems.
struct Dependents {
    direct: Vec<Vec<usize>>,
    reached_from: HashMap<usize, Vec<bool>>,
}

impl Dependents {
    fn new(plan: &Plan, positions: &HashMap<&str, usize>) -> Dependents {
        let mut direct = vec![Vec::new(); plan.stages.len()];
        for (index, stage) in plan.stages.iter().enumerate() {
            for (dependency, _) in &stage.depends_on {
                if let Some(&at) = positions.get(dependency.as_str()) {
                    direct[at].push(index);
                }
            }
        }
        Dependents {
            direct,
            reached_from: HashMap::new(),
        }
    }

    /// Whether `stage` depends on `on`, directly or not (a stage on itself only
    /// through a cycle, which is reported apart).
    fn depends(&mut self, stage: usize, on: usize) -> bool {
        let direct = &self.direct;
        let reached = self.reached_from.entry(on).or_insert_with(|| {
            let mut seen = vec![false; direct.len()];
            let mut queue = vec![on];
            while let Some(current) = queue.pop() {
                for &next in &direct[current] {
                    if !seen[next] {
                        seen[next] = true;
                        queue.push(next);
                    }
                }
            }
            seen
        });
        stage != on && reached[stage]
    }
}

fn cycle_problem(plan: &Plan, cycle: &[usize]) -> PlanProblem {
    let names: Vec<&str> = cycle.iter().map(|&i| plan.stages[i].id.as_str()).collect();
    let mut path = names.join(" -> ");
    path.push_str(" -> ");
    path.push_str(names[0]);
    let mut problem = PlanProblem::new(
        ProblemKind::Cycle,
        format!("dependency cycle: {path}"),
    )
    .help("a stage cannot depend on itself, directly or through others: remove one of these depends_on entries");
    for (position, &stage) in cycle.iter().enumerate() {
        let next = cycle[(position + 1) % cycle.len()];
        let next_id = &plan.stages[next].id;
        let span = plan.stages[stage]
            .depends_on
            .iter()
            .find(|(dependency, _)| dependency == next_id)
            .map(|(_, span)| span.clone())
            .unwrap_or_else(|| plan.stages[stage].id_span.clone());
        let closing = position + 1 == cycle.len();
        let text = if closing {
            format!(
                "`{}` depends on `{next_id}`: this closes the cycle",
                plan.stages[stage].id
            )
        } else {
            format!("`{}` depends on `{next_id}`", plan.stages[stage].id)
        };
        problem = problem.label(span, text);
    }
    problem
}

/// A revert runs whole, in one transaction: a batched revert step is refused.
fn batched_revert_problems(stage: &crate::model::Stage) -> Vec<PlanProblem> {
    stage
        .revert
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            StepKind::Transform {
                params,
                params_span,
                ..
            } if params.get("mode").and_then(toml::Value::as_str) == Some("batched") => Some(
                PlanProblem::new(
                    ProblemKind::InvalidValue,
                    format!("a revert step of stage `{}` cannot run batched", stage.id),
                )
                .label(params_span.clone(), "mode = \"batched\"")
                .help("a revert runs in one transaction per stage: remove `mode`"),
            ),
            _ => None,
        })
        .collect()
}

fn capture_problems(plan: &Plan, positions: &HashMap<&str, usize>) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let mut dependents = Dependents::new(plan, positions);
    let mut defined_in: BTreeMap<&str, (usize, &Span)> = BTreeMap::new();
    // A revert's captures are plan-wide names too, but only its own verifications
    // read them.
    let mut revert_defined: BTreeMap<&str, (usize, &Span)> = BTreeMap::new();
    for (index, stage) in plan.stages.iter().enumerate() {
        let forward = stage.captures.iter().map(|capture| (capture, false));
        let revert = stage.revert.captures.iter().map(|capture| (capture, true));
        for (capture, in_revert) in forward.chain(revert) {
            for (name, span) in &capture.names {
                let first = defined_in
                    .get(name.as_str())
                    .or_else(|| revert_defined.get(name.as_str()))
                    .map(|(_, span)| (*span).clone());
                if let Some(first_span) = first {
                    problems.push(
                        PlanProblem::new(
                            ProblemKind::DuplicateCapture,
                            format!("capture `{name}` is defined twice"),
                        )
                        .label(span.clone(), "defined again here")
                        .label(first_span, "first defined here")
                        .help("capture names are plan-wide: give each a unique name"),
                    );
                } else if in_revert {
                    revert_defined.insert(name, (index, span));
                } else {
                    defined_in.insert(name, (index, span));
                }
            }
        }
    }
    for (index, stage) in plan.stages.iter().enumerate() {
        let mut reported = BTreeSet::new();
        // Skip rules and preconditions run before the stage's own captures are taken;
        // verifications after.
        let uses = stage
            .skip_if
            .iter()
            .map(|rule| (&rule.expect, &rule.expect_span, false))
            .chain(
                stage
                    .preconditions
                    .iter()
                    .map(|check| (&check.expect, &check.expect_span, false)),
            )
            .chain(
                stage
                    .verify
                    .iter()
                    .chain(&stage.revert.preconditions)
                    .map(|check| (&check.expect, &check.expect_span, true)),
            )
            .chain(
                stage
                    .revert
                    .verify
                    .iter()
                    .map(|check| (&check.expect, &check.expect_span, true)),
            )
            .flat_map(|(expect, span, after_captures)| {
                expect
                    .captures()
                    .map(move |name| (name, span, after_captures))
                    .collect::<Vec<_>>()
            })
            .chain(
                stage
                    .captures
                    .iter()
                    .filter_map(|c| c.expr.as_ref())
                    .flat_map(|(expr, span)| {
                        expr.captures()
                            .into_iter()
                            .map(move |name| (name, span, true))
                    }),
            );
        for (name, span, after_captures) in uses {
            // A revert's capture is read by its verifications (it is not in
            // `defined_in`, so no forward check of the stage can read it).
            let own_revert_capture = revert_defined
                .get(name)
                .is_some_and(|&(at, _)| at == index && after_captures);
            let visible = own_revert_capture
                || defined_in.get(name).is_some_and(|&(at, _)| {
                    (at == index && after_captures) || dependents.depends(index, at)
                });
            if visible || !reported.insert(name.to_owned()) {
                continue;
            }
            let help = match defined_in.get(name) {
                Some(&(at, _)) if at == index => format!(
                    "`{name}` is captured by this stage after its skip rules and preconditions run, \
                     so only its verifications can read it: capture it in a stage `{}` depends on",
                    stage.id
                ),
                Some(&(at, _)) => format!(
                    "`{name}` is captured by stage `{}`, which `{}` does not depend on: add it to depends_on",
                    plan.stages[at].id, stage.id
                ),
                None => {
                    let known: Vec<&str> = defined_in.keys().copied().collect();
                    match closest(name, known.iter().copied()) {
                        Some(near) => format!("did you mean `{{{near}}}`?"),
                        None => "define it with [[stage.capture]] in this stage or one it depends on".into(),
                    }
                }
            };
            problems.push(
                PlanProblem::new(
                    ProblemKind::UndefinedCapture,
                    format!(
                        "capture `{name}` is used in stage `{}` before any stage defines it",
                        stage.id
                    ),
                )
                .label(span.clone(), format!("reads {{{name}}}"))
                .help(help),
            );
        }
    }
    problems
}

impl Plan {
    /// Checks what lies outside the plan file: every SQL file exists and every
    /// transform is registered with acceptable params.
    pub fn check_environment(&self, catalog: &dyn TransformCatalog) -> Result<(), PlanErrors> {
        let problems = self.environment_problems(catalog);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanErrors::new(
                self.path.display().to_string(),
                Arc::clone(&self.source),
                problems,
            ))
        }
    }

    pub(crate) fn environment_problems(&self, catalog: &dyn TransformCatalog) -> Vec<PlanProblem> {
        let mut problems = Vec::new();
        let names = catalog.names();
        if let Some((file, span, resolved)) = &self.setup_sql_file {
            if !resolved.is_file() {
                problems.push(
                    PlanProblem::new(
                        ProblemKind::MissingSqlFile,
                        format!("setup SQL file `{file}` does not exist"),
                    )
                    .label(span.clone(), format!("looked for {}", resolved.display()))
                    .help("paths are relative to the directory of the plan file"),
                );
            }
        }
        let confinement = crate::confine::confinement_problems(self);
        let confined = confinement.is_empty();
        problems.extend(confinement);
        if let (Some((file, span, resolved)), true) = (&self.setup_sql_file, confined) {
            if let Err(problem) =
                crate::sql_rules::read_sql_file(resolved, file, span, " (setup_sql_file)")
            {
                problems.push(problem);
            }
        }
        let revert_views: Vec<crate::model::Stage> = self
            .stages
            .iter()
            .flat_map(|s| [s.revert_view(), s.rehearse_writes_view()])
            .flatten()
            .collect();
        for stage in self.stages.iter().chain(&revert_views) {
            // A file outside the plan's directory is not read, not even to parse it.
            if confined {
                problems.extend(crate::sql_rules::stage_sql_problems(stage, &self.variables));
                problems.extend(crate::after_commit::after_commit_problems(
                    stage,
                    &self.variables,
                ));
            }
            for step in &stage.steps {
                match &step.kind {
                    StepKind::Sql { .. } => {}
                    StepKind::SqlFile {
                        path,
                        path_span,
                        resolved,
                    } => {
                        if !resolved.is_file() {
                            problems.push(
                                PlanProblem::new(
                                    ProblemKind::MissingSqlFile,
                                    format!(
                                        "SQL file `{path}` of stage `{}` does not exist",
                                        stage.id
                                    ),
                                )
                                .label(
                                    path_span.clone(),
                                    format!("looked for {}", resolved.display()),
                                )
                                .help("paths are relative to the directory of the plan file"),
                            );
                        }
                    }
                    StepKind::Transform {
                        name,
                        name_span,
                        params,
                        params_span,
                    } => {
                        if !names.iter().any(|known| known == name) {
                            let help = match closest(name, names.iter().map(String::as_str)) {
                                Some(near) => format!(
                                    "did you mean `{near}`? `planrun transforms` lists them all"
                                ),
                                None => {
                                    "`planrun transforms` lists the registered transforms".into()
                                }
                            };
                            problems.push(
                                PlanProblem::new(
                                    ProblemKind::UnknownTransform,
                                    format!(
                                        "transform `{name}` of stage `{}` is not registered",
                                        stage.id
                                    ),
                                )
                                .label(name_span.clone(), "unknown transform")
                                .help(help),
                            );
                            continue;
                        }
                        for (key, message) in catalog.check_params(name, params) {
                            let subject = if key.is_empty() {
                                String::new()
                            } else {
                                format!(" `{key}`")
                            };
                            problems.push(
                                PlanProblem::new(
                                    ProblemKind::InvalidParams,
                                    format!("param{subject} of transform `{name}` in stage `{}`: {message}", stage.id),
                                )
                                .label(params_span.clone(), "params given here"),
                            );
                        }
                    }
                }
            }
        }
        problems
    }
}
