//! Which verifications of a batched stage run per key at its cutover, and which
//! cannot and run whole under its locks, for `planrun check` to say. The engine's
//! side is `planrun-engine/src/online/per_key.rs`.

use crate::model::{Plan, Stage, StepKind};

/// A batched stage's verifications that run whole under the cutover's locks: placed
/// after its batched step without a per-key form (`per_key_sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeAtCutover {
    pub stage: String,
    /// The name of the batched step.
    pub step: String,
    pub checks: Vec<String>,
}

impl Plan {
    /// For each batched stage, the verifications its cutover runs whole; stages whose
    /// every such check has a per-key form are left out.
    pub fn whole_at_cutover(&self) -> Vec<WholeAtCutover> {
        self.stages.iter().filter_map(whole_at_cutover).collect()
    }
}

fn whole_at_cutover(stage: &Stage) -> Option<WholeAtCutover> {
    let step = stage.steps.iter().find(|step| {
        matches!(&step.kind, StepKind::Transform { params, .. }
            if params.get("mode").and_then(|mode| mode.as_str()) == Some("batched"))
    })?;
    let checks: Vec<String> = stage
        .verify
        .iter()
        .filter(|check| {
            check.per_key.is_none()
                && check
                    .after_step
                    .as_ref()
                    .is_some_and(|(after, _)| *after == step.name)
        })
        .map(|check| check.name.clone())
        .collect();
    (!checks.is_empty()).then(|| WholeAtCutover {
        stage: stage.id.clone(),
        step: step.name.clone(),
        checks,
    })
}
